"""Property-based tests of the whole REST API against its own OpenAPI document (schemathesis).

A real `hookyard serve` subprocess on loopback, seeded with events, deliveries (succeeded and
dead), a published event, spare tokens and a rejected request; schemathesis loads the schema from
the live /api/openapi.json and, for every operation, sends generated requests (valid ones, then
invalid ones) with the admin token. Each response must not be a 5xx, must match the schema of its
documented status code, and that status must be documented.

Path parameters are drawn either as generated or from the ids and names that exist, so the
success paths (an event's detail and payload, a delivery retry, a token revocation, a destination
pause) are reached, not only the 404s; the admin token's own id is never drawn, so it stays valid.
Bounded and deterministic: derandomized Hypothesis, 25 examples per operation and mode.

Each operation is one pytest case driving `operation.as_strategy()` with Hypothesis directly:
schemathesis' own pytest integration (`schemathesis.pytest.from_fixture`) sets `Node._nodeid`,
which pytest 9.2 no longer has.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from hookyard.tokens import read_token_file
from tests.conftest import (
    CLIENT_TIMEOUT,
    DEADLINE,
    ServeProcess,
    basic_config,
    start_serve,
    write_config,
)

pytestmark = pytest.mark.slow

# NDJSON (events/import) is text: send generated strings as UTF-8, like text/plain.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")

MAX_EXAMPLES = 25
SEED = 20240601

EXTRA = """
[destinations.dead]
url = "http://127.0.0.1:9/gone"
timeout = "1s"
retry_schedule = ["0"]
jitter = 0

[[routes]]
source = "open"
destination = "dead"

[sources.orders]
kind = "api"

[destinations.laptop]
relay = true

[[routes]]
source = "orders"
destination = "laptop"

[sources.catalog]
kind = "poll"
[sources.catalog.api]
url = "http://127.0.0.1:9/items"
object_url = "http://127.0.0.1:9/items/{id}"

[[routes]]
source = "orders"
destination = "app"
"""


class _Accept(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver_url() -> Iterator[str]:
    """A plain threaded receiver: the `app` destination's deliveries succeed."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    server.shutdown()
    server.server_close()
    thread.join(5)


@dataclass
class Served:
    url: str
    token: str
    known: dict[str, list[str]] = field(default_factory=dict)  # path parameter -> values
    export: str = ""  # GET events/export of the seeded events (NDJSON)


def _seed(url: str, token: str) -> tuple[str, dict[str, list[str]]]:
    auth = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT) as client:
        for n in range(3):
            sent = client.post(
                "/in/open",
                json={"type": "order.paid", "n": n, "customer": {"id": f"c{n}"}},
            )
            assert sent.status_code < 300, sent.text
        published = client.post(
            "/api/v1/sources/orders/events",
            content=b'{"order": 1}',
            headers={
                **auth,
                "content-type": "application/json",
                "hookyard-event-type": "order.created",
                "idempotency-key": "seed-1",
            },
        )
        assert published.status_code == 201, published.text
        rejected = client.post("/in/github", content=b"{}", headers={"x-hub-signature-256": "x"})
        assert rejected.status_code >= 400
        spare = []
        for name in ("spare-1", "spare-2", "spare-3"):
            made = client.post("/api/v1/tokens", json={"name": name, "scope": "read"}, headers=auth)
            assert made.status_code == 201, made.text
            spare.append(made.json()["id"])

        # Wait until every delivery settled: 4 to `app` succeed, 3 to `dead` die.
        deadline = time.monotonic() + DEADLINE
        while True:
            rows = client.get("/api/v1/deliveries", params={"limit": 100}, headers=auth).json()
            # The relay destination's delivery waits for a client: pending.
            statuses = [row["status"] for row in rows["data"] if row["destination"] != "laptop"]
            if len(statuses) >= 7 and set(statuses) <= {"succeeded", "dead"}:
                break
            assert time.monotonic() < deadline, f"deliveries did not settle: {rows}"
            time.sleep(0.1)
        events = client.get("/api/v1/events", params={"limit": 100}, headers=auth).json()
        export = client.get("/api/v1/events/export", headers=auth)
        assert export.status_code == 200, export.text
    return export.text, {
        "event_id": [row["id"] for row in events["data"]],
        "delivery_id": [row["id"] for row in rows["data"]],
        "token_id": spare,
        "source": ["orders", "open", "github"],
        "name": ["app", "dead", "catalog", "orders", "laptop"],
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, receiver_url: str) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("openapi")
    config = write_config(directory, basic_config(receiver_url) + EXTRA)
    process: ServeProcess = start_serve(config)
    try:
        token = read_token_file(directory / "hookyard.token")
        assert token, process.log()
        export, known = _seed(process.url, token)
        yield Served(process.url, token, known, export)
    finally:
        process.stop()


# Documented free-form inputs that random strings rarely hit: times ("ISO 8601 or unix seconds")
# and JSON payload paths (`field.<dotted.path>`, the `fields` of a bulk replay).
TIME_KEYS = st.sampled_from(["since", "until"])
TIMES = st.sampled_from(
    [
        "1700000000",
        "1700000000.5",
        "-1",
        "1e20",
        "nan",
        "inf",
        "-inf",
        "1e400",
        "2024-01-01T00:00:00Z",
        "0001-01-01T00:00:00",
        "9999-12-31T23:59:59+14:00",
        "2024-02-30",
    ]
)
FIELD_PATHS = st.sampled_from(["customer.id", "n", "", ".", "a..b", "a[", "a[0]", "$", "'", '"'])

OPERATIONS = [
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/events/export"),
    ("POST", "/api/v1/events/import"),
    ("GET", "/api/v1/events/{event_id}"),
    ("GET", "/api/v1/events/{event_id}/raw"),
    ("POST", "/api/v1/events/replay"),
    ("POST", "/api/v1/events/{event_id}/replay"),
    ("GET", "/api/v1/deliveries"),
    ("GET", "/api/v1/attempts"),
    ("POST", "/api/v1/deliveries/{delivery_id}/retry"),
    ("POST", "/api/v1/sources/{source}/events"),
    ("GET", "/api/v1/tokens"),
    ("POST", "/api/v1/tokens"),
    ("DELETE", "/api/v1/tokens/{token_id}"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/rejected"),
    ("GET", "/api/v1/sources"),
    ("GET", "/api/v1/destinations"),
    ("POST", "/api/v1/destinations/{name}/pause"),
    ("POST", "/api/v1/destinations/{name}/resume"),
    ("POST", "/api/v1/destinations/{name}/enable"),
    ("POST", "/api/v1/destinations/{name}/retry-dead"),
    ("GET", "/api/v1/sources/{name}"),
    ("POST", "/api/v1/sources/{name}/poll"),
    ("POST", "/api/v1/sources/{name}/reconcile"),
    ("POST", "/api/v1/sources/{name}/backfill"),
    ("GET", "/api/v1/sources/{name}/backfill"),
    ("DELETE", "/api/v1/sources/{name}/backfill"),
    ("GET", "/api/v1/events/{event_id}/current"),
    ("GET", "/api/v1/retention"),
    ("POST", "/api/v1/retention/sweep"),
    ("POST", "/api/v1/destinations/{name}/lease"),
    ("GET", "/api/v1/destinations/{name}/stream"),
    ("POST", "/api/v1/destinations/{name}/results"),
]


@pytest.fixture(scope="module")
def http_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def api_schema(served: Served) -> Any:
    config = schemathesis.Config.from_dict(
        {"seed": SEED, "base-url": served.url, "request-timeout": CLIENT_TIMEOUT}
    )
    schema = schemathesis.openapi.from_url(f"{served.url}/api/openapi.json", config=config)

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
        """Keep the generated values, or swap in ids and names that exist."""
        existing = {
            name: st.sampled_from(served.known[name])
            for name in path_parameters or {}
            if served.known.get(name)
        }
        if not existing:
            return st.just(path_parameters)
        return st.one_of(
            st.just(path_parameters),
            st.fixed_dictionaries(existing).map(lambda found: {**path_parameters, **found}),
        )

    @schema.hook
    def flatmap_query(context: Any, query: dict[str, Any] | None) -> Any:
        """Also the documented free-form values: times and `field.<path>` filters."""
        query = query or {}
        names = {p.name for p in context.operation.query}
        choices = [st.just(query)]
        if "since" in names:
            choices.append(st.builds(lambda k, v: {**query, k: v}, TIME_KEYS, TIMES))
        if context.operation.path in ("/api/v1/events", "/api/v1/events/export"):
            choices.append(st.builds(lambda k: {**query, f"field.{k}": "c1"}, FIELD_PATHS))
        return st.one_of(choices)

    @schema.hook
    def flatmap_body(context: Any, body: Any) -> Any:
        """events/import: also a real export (its events are all skipped); events/replay: also
        the documented free-form values in its filters."""
        path = context.operation.path
        if path == "/api/v1/events/import":
            return st.one_of(st.just(body), st.just(served.export))
        if path == "/api/v1/events/replay" and isinstance(body, dict):
            return st.one_of(
                st.just(body),
                st.builds(lambda k, v: {**body, k: v}, TIME_KEYS, TIMES),
                st.builds(lambda k: {**body, "fields": {k: "c1"}}, FIELD_PATHS),
            )
        return st.just(body)

    return schema


def _describe(exc: BaseException) -> str:
    return "\n".join([f"{type(exc).__name__}: {exc}", *getattr(exc, "__notes__", [])])


def test_every_operation_is_tested(api_schema: Any) -> None:
    documented = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert documented == set(OPERATIONS)


# An event stream never ends by itself; test_relay.py checks its answers instead.
ENDLESS = {("GET", "/api/v1/destinations/{name}/stream")}


@pytest.mark.parametrize(("method", "path"), [op for op in OPERATIONS if op not in ENDLESS])
def test_operation_matches_its_openapi_document(
    method: str, path: str, served: Served, api_schema: Any, http_session: requests.Session
) -> None:
    operation = api_schema[path][method]
    auth = {"Authorization": f"Bearer {served.token}"}
    problems = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(
                session=http_session,
                headers=auth,
                checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
            )

        try:
            check()
        except Unsatisfiable:
            # Nothing to negate: every parameter is a free string and there is no body.
            if mode is not GenerationMode.NEGATIVE:
                raise
        except (Exception, BaseExceptionGroup) as exc:
            problems.append(f"--- {mode.value} ---\n{_describe(exc)}")
    assert not problems, f"{method} {path}\n" + "\n".join(problems)
