"""Event-list benchmark: the API's event queries on a database of a million events.

The database is built directly with sqlite3 from the real schema (bench data: 5 sources, 20
event types, 30 days, 1 KB JSON payloads, about one delivery per event) and cached under
bench/results/ keyed by VERSION, so reruns skip building. Each query runs on a fresh read-only
connection, as the API's readers are, and is reported as a multiple of a primary-key lookup
timed in the same run, with SQLite's plan; a filtered query that scans events (or deliveries)
is flagged. The console's events page is then timed over HTTP next to the API's list call
(console_rows). Run it through bench/run (`bench/run --only query`), which calls run() and
report() from ingest.py.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, cast

import httpx
from common import RESULTS

from hookyard.app import HookyardApp
from hookyard.config import load_config
from hookyard.ids import id_floor
from hookyard.models import EventFilter
from hookyard.runtime import Service
from hookyard.store import queries
from hookyard.store.db import SQLITE
from hookyard.store.migrate import SCHEMA_VERSION, reference_schema
from hookyard.store.sqlite import PRAGMAS, connect
from hookyard.tokens import read_token_file

VERSION = f"q3-s{SCHEMA_VERSION}"  # change when the generated data changes
INDEXED_FIELDS = ["data.customer"]
EVENTS = 1_000_000
START = 1_760_000_000.0  # received_at runs from here over DAYS days
DAYS = 30
SOURCES = ("stripe", "github", "shopify", "twilio", "slack")
DESTINATIONS = {  # each source routes to one destination
    "stripe": "billing", "shopify": "billing", "github": "ci",
    "twilio": "alerts", "slack": "alerts",
}  # fmt: skip
NOUNS = ("invoice", "charge", "customer", "order", "subscription")
VERBS = ("created", "paid", "failed", "updated")
TYPES = tuple(f"{noun}.{verb}" for noun in NOUNS for verb in VERBS)  # 20 types
CUSTOMERS = 10_000  # about 100 events each
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # hookyard.ids's Crockford base32
BATCH = 20_000
BUDGET_S = 10.0  # per query: stop early (after at least 3 runs) once this much time has gone
BASELINE_LOOKUPS = 1_000
SCANS = ("SCAN e", "SCAN d")
SLOW = 1_000  # also flag a query taking this many primary-key lookups or more
INSERT_EVENT = (  # columns named: the schema may grow columns the bench leaves NULL
    "INSERT INTO events (id, source, origin, request_id, received_at, provider_event_id,"
    " event_type, dedup_key, content_type, payload, payload_size) VALUES "
)
INSERT_DELIVERY = (
    "INSERT INTO deliveries (id, event_id, destination, status, attempts, next_attempt_at,"
    " created_at, updated_at, last_status_code, last_error) VALUES "
)


@dataclass
class Row:
    label: str
    rows: int  # rows the call returned (or the count)
    runs: int
    median_ms: float
    max_ms: float
    plan: str
    scan: bool  # a filtered query that scans events or deliveries (SCAN e / SCAN d)
    hint: str  # the index it would need


@dataclass
class ConsoleRow:
    label: str
    rows: int  # events the page listed
    runs: int
    console_ms: float  # median, GET /console/events?...
    api_ms: float  # median, GET /api/v1/events?... with the same filters, in the same run

    @property
    def ratio(self) -> float:
        return self.console_ms / self.api_ms


@dataclass
class QueryResult:
    events: int
    db: str
    db_bytes: int
    build_s: float | None  # None: the cached database was used
    baseline_ms: float = 0.0  # median primary-key lookup of one event
    rows: list[Row] = field(default_factory=list)
    console: list[ConsoleRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the run itself went wrong
    findings: list[str] = field(default_factory=list)  # queries worth an index: reported only


# --- the database -----------------------------------------------------------------------------


def make_id(prefix: str, at: float, rng: random.Random) -> str:
    """Like hookyard.ids.new_id, at time `at`: id_floor's 10 time characters, 16 random ones."""
    return id_floor(prefix, at)[:-16] + "".join(rng.choices(ALPHABET, k=16))


def generate(count: int) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """(event row, delivery row) in received order, the same for every build."""
    rng = random.Random(7)
    step = DAYS * 86400 / count
    for i in range(count):
        at = START + (i + rng.random()) * step
        source = rng.choice(SOURCES)
        kind = rng.choice(TYPES)
        provider_id = f"evt_{rng.getrandbits(96):024x}"
        roll = rng.random()
        status = "dead" if roll < 0.01 else "pending" if roll < 0.03 else "succeeded"
        head = (
            f'{{"id":"{provider_id}","type":"{kind}","created":{int(at)},"livemode":true,'
            f'"data":{{"status":"{kind.split(".")[1]}","customer":"cus_{rng.randrange(CUSTOMERS)}",'
            f'"amount":{rng.randrange(100, 100_000)},"currency":"usd","description":"'
        )
        payload = (head + "x" * (1024 - len(head) - 3) + '"}}').encode()
        event_id = make_id("evt", at, rng)
        event = (
            event_id, source, "webhook", make_id("req", at, rng), at, provider_id, kind,
            provider_id, "application/json", payload, len(payload),
        )  # fmt: skip
        done = at + 0.05
        delivery = (
            make_id("dlv", at, rng), event_id, DESTINATIONS[source], status,
            {"dead": 8, "pending": 0}.get(status, 1), done if status == "pending" else at,
            at, done, {"dead": 503, "pending": None}.get(status, 200),
            "HTTP 503" if status == "dead" else None,
        )  # fmt: skip
        yield event, delivery


def build(path: Path, count: int) -> float:
    """Write the database to `path`; returns the seconds it took."""
    started = time.monotonic()
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    conn = connect(tmp)
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # as the store, before the first table
    for pragma in PRAGMAS:
        conn.execute(pragma)
    conn.execute("PRAGMA synchronous=OFF")  # building only: a crash here just means a rebuild
    conn.executescript(reference_schema("sqlite"))
    rows = generate(count)
    conn.execute("BEGIN")
    while batch := list(islice(rows, BATCH)):
        queries.insert_rows(conn, INSERT_EVENT, [event for event, _ in batch])
        queries.insert_rows(conn, INSERT_DELIVERY, [delivery for _, delivery in batch])
    conn.execute("COMMIT")
    # As `[server] indexed_fields = ["data.customer"]` would; data.status stays unindexed.
    queries.sync_field_indexes(conn, [INDEXED_FIELDS])
    queries.analyze(conn, [None])  # as `hookyard serve`'s maintenance does
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for stale in ("-wal", "-shm"):  # a reader's leftovers from an older build under this name
        path.with_name(path.name + stale).unlink(missing_ok=True)
    tmp.rename(path)
    return time.monotonic() - started


def database(count: int) -> tuple[Path, float | None]:
    path = RESULTS / f"query-{VERSION}-{count}.sqlite"
    if path.exists():
        return path, None
    print(f"building {count:,} events into {path.name} (cached for reruns) ...", file=sys.stderr)
    return path, build(path, count)


# --- measuring --------------------------------------------------------------------------------


def reader(path: Path) -> sqlite3.Connection:
    """A fresh connection as SqliteStore._reader opens it."""
    conn = connect(f"file:{path}?mode=ro", uri=True)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class Captured(Exception):
    """Raised by Capture.execute with the statement a query function would run."""


class Capture:
    dialect = SQLITE

    def execute(self, sql: str, params: Any = ()) -> None:
        raise Captured(sql, params)


def plan(conn: sqlite3.Connection, call: Callable[[sqlite3.Connection], Any]) -> str:
    """EXPLAIN QUERY PLAN of the statement `call` runs, on one short line."""
    try:
        call(cast(sqlite3.Connection, Capture()))
    except Captured as captured:
        sql, params = captured.args
    else:
        raise RuntimeError("the query function ran no statement")
    details = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
    shown = [d for d in details if d.startswith(("SCAN e", "SEARCH e", "SCAN d", "SEARCH d"))]
    text = "; ".join(shown).replace("sqlite_autoindex_events_1", "pk")
    return text.replace("sqlite_autoindex_deliveries_1", "pk").replace("USING ", "")


def timed(
    path: Path, call: Callable[[sqlite3.Connection], Any], runs: int
) -> tuple[list[float], int]:
    """Seconds per call on one fresh connection (the first run included), and rows returned."""
    conn = reader(path)
    try:
        times: list[float] = []
        started = time.perf_counter()
        while len(times) < runs and (len(times) < 3 or time.perf_counter() - started < BUDGET_S):
            t0 = time.perf_counter()
            answer = call(conn)
            times.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return times, answer if isinstance(answer, int) else len(answer)


def baseline(path: Path) -> float:
    """Median seconds of a primary-key lookup of one event (distinct random events)."""
    conn = reader(path)
    try:
        count = conn.execute("SELECT max(rowid) FROM events").fetchone()[0]
        picks = random.Random(3).sample(range(1, count + 1), BASELINE_LOOKUPS)
        marks = ",".join("?" * len(picks))
        ids = [i for (i,) in conn.execute(f"SELECT id FROM events WHERE rowid IN ({marks})", picks)]
        sql = f"SELECT {', '.join(queries.EVENT_COLUMNS)} FROM events WHERE id = ?"
        times = []
        for event_id in ids:
            t0 = time.perf_counter()
            conn.execute(sql, (event_id,)).fetchone()
            times.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return statistics.median(times)


def cursor_at(path: Path, filters: EventFilter, page: int) -> str:
    """The cursor a client holds after reading `page` - 1 pages of 50."""
    conn = reader(path)
    try:
        cursor = None
        for _ in range(page - 1):
            rows = queries.list_events(conn, filters, cursor=cursor, limit=50)
            cursor = rows[-1]["id"] if rows else cursor  # a small database runs out early
    finally:
        conn.close()
    assert cursor is not None
    return cursor


def cases(path: Path) -> list[tuple[str, Callable[[sqlite3.Connection], Any], str]]:
    """(label, call, the index a scan would need)."""
    conn = reader(path)
    try:  # a provider event id from the middle of the range
        (middle,) = conn.execute(
            "SELECT provider_event_id FROM events WHERE rowid = (SELECT max(rowid) / 2 FROM events)"
        ).fetchone()
    finally:
        conn.close()
    day = START + 15 * 86400
    dead = EventFilter(status="dead")
    deep = {name: cursor_at(path, f, 100) for name, f in (("all", EventFilter()), ("dead", dead))}

    def page(f: EventFilter, cursor: str | None = None) -> Callable[[sqlite3.Connection], Any]:
        return lambda c: queries.list_events(c, f, cursor=cursor, limit=51, order="desc")

    customer = (("data.customer", "cus_123"),)
    on_status = "deliveries (status, event_id)"
    on_customer = "events (json_extract(payload, '$.data.customer'))"
    return [
        ("no filter", page(EventFilter()), ""),
        ("source", page(EventFilter(source="stripe")), "events (source, id)"),
        (
            "source + 1-day window",
            page(EventFilter(source="stripe", since=day, until=day + 86400)),
            "events (source, id)",
        ),
        ("type invoice.*", page(EventFilter(type="invoice.*")), "events (event_type, id)"),
        ("status dead", page(dead), on_status),
        (
            "destination ci",
            page(EventFilter(destination="ci")),
            "deliveries (destination, event_id)",
        ),
        (
            "provider_event_id",
            page(EventFilter(provider_event_id=middle)),
            "events (provider_event_id)",
        ),
        ("field data.customer (indexed)", page(EventFilter(fields=customer)), on_customer),
        (
            "field data.status (not indexed)",
            page(EventFilter(fields=(("data.status", "refunded"),))),
            "[server] indexed_fields",
        ),
        (
            "source + field data.customer (indexed)",
            page(EventFilter(source="stripe", fields=customer)),
            on_customer,
        ),
        ("page 100 by cursor", page(EventFilter(), deep["all"]), ""),
        ("page 100 by cursor, dead", page(dead, deep["dead"]), on_status),
        (
            "count_events source",
            lambda c: queries.count_events(c, EventFilter(source="stripe")),
            "events (source, id)",
        ),
        ("count_events status dead", lambda c: queries.count_events(c, dead), on_status),
        (
            "list_deliveries dead",
            lambda c: queries.list_deliveries(c, status="dead", limit=51),
            "deliveries (status, id)",
        ),
    ]


# --- the console next to the API --------------------------------------------------------------

CONSOLE_RATIO = 3.0  # flag a console page slower than this many times the API call
CONSOLE_CONFIG = """
[server]
listen = "127.0.0.1:0"
database = "sqlite:///hookyard.db"
roles = ["api"]
indexed_fields = ["data.customer"]

[retention]  # the bench's events are old: keep them
events = "forever"
payloads = "forever"
attempts = "forever"
"""


def console_config(directory: Path) -> Path:
    """A config serving the bench database: its sources (no verification) and destinations."""
    parts = [CONSOLE_CONFIG]
    for source in SOURCES:
        parts.append(f'[sources.{source}]\nverify = "none"\n')
    for destination in sorted(set(DESTINATIONS.values())):
        parts.append(f'[destinations.{destination}]\nurl = "http://127.0.0.1:9/{destination}"\n')
    for source, destination in DESTINATIONS.items():
        parts.append(f'[[routes]]\nsource = "{source}"\ndestination = "{destination}"\n')
    path = directory / "hookyard.toml"
    path.write_text("\n".join(parts))
    return path


async def _console_pages(directory: Path, runs: int) -> list[ConsoleRow]:
    settings, base_dir = load_config(console_config(directory))
    service = Service(settings, base_dir)
    state = await service.start()
    try:
        token = read_token_file(base_dir / settings.server.token_file) or ""
        transport = httpx.ASGITransport(app=HookyardApp(state))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            login = await client.post("/console/login", data={"token": token})
            assert login.status_code == 303, login.text
            api = {"authorization": f"Bearer {token}"}
            cases = [
                ("events, first page", {}),
                ("events, source + type", {"source": "stripe", "type": "invoice.*"}),
                ("events, destination ci", {"destination": "ci"}),
            ]
            rows = []
            for label, params in cases:
                page_ms, listed = await _timed_get(client, "/console/events", params, {}, runs)
                api_ms, _ = await _timed_get(
                    client, "/api/v1/events", {**params, "limit": 50}, api, runs
                )
                rows.append(ConsoleRow(label, listed, runs, page_ms, api_ms))
            return rows
    finally:
        await service.stop()


async def _timed_get(
    client: httpx.AsyncClient,
    path: str,
    params: dict[str, Any],
    headers: dict[str, str],
    runs: int,
) -> tuple[float, int]:
    """Median milliseconds of `runs` GETs (after one untimed warm-up), and the events listed."""
    answer = await client.get(path, params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        answer = await client.get(path, params=params, headers=headers)
        times.append(time.perf_counter() - t0)
    listed = (
        answer.text.count('href="/console/events/evt_')
        if path.startswith("/console")
        else len(answer.json()["data"])
    )
    return statistics.median(times) * 1000, listed


def console_rows(path: Path, runs: int) -> list[ConsoleRow]:
    """The console's events page next to the API's list call, through the real app (in
    process, httpx's ASGI transport: no sockets, so the difference is the pages' own work), on
    a copy of the database: serving it writes (the admin token, maintenance)."""
    scratch = RESULTS / f".console-{time.monotonic_ns()}"
    scratch.mkdir(parents=True)
    try:
        shutil.copyfile(path, scratch / "hookyard.db")
        return asyncio.run(_console_pages(scratch, runs))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(count: int, runs: int) -> QueryResult:
    path, build_s = database(count)
    result = QueryResult(count, path.name, path.stat().st_size, build_s)
    print(f"measuring event queries on {count:,} events ...", file=sys.stderr)
    result.baseline_ms = baseline(path) * 1000
    conn = reader(path)
    try:
        for label, call, hint in cases(path):
            summary = plan(conn, call)
            scan = label not in ("no filter", "page 100 by cursor") and summary.startswith(SCANS)
            times, returned = timed(path, call, runs)
            result.rows.append(
                Row(
                    label,
                    returned,
                    len(times),
                    statistics.median(times) * 1000,
                    max(times) * 1000,
                    summary,
                    scan,
                    hint,
                )
            )
    finally:
        conn.close()
    print("timing the console's events page next to the API ...", file=sys.stderr)
    result.console = console_rows(path, runs)
    for c in result.console:
        if c.ratio > CONSOLE_RATIO:
            result.problems.append(f"console {c.label}: {c.ratio:.1f} x the API call")
    for r in result.rows:
        times = r.median_ms / result.baseline_ms
        if r.scan or times >= SLOW:
            what = "full SCAN" if r.scan else f"slow, {times:,.0f} x PK"
            result.findings.append(
                f"{r.label}: {what} ({r.median_ms:,.1f} ms median); index to try: {r.hint}"
            )
    return result


# --- report -----------------------------------------------------------------------------------


def report(result: QueryResult) -> None:
    built = "cached" if result.build_s is None else f"built in {result.build_s:.0f} s"
    print(
        f"event queries, {result.events:,} events ({result.db_bytes / 1e9:.1f} GB, {built}), "
        "fresh read-only connection per query, first page of 50 (limit 51)"
    )
    print(
        f"baseline: primary-key lookup of one event, median {result.baseline_ms * 1000:.0f} µs "
        f"({BASELINE_LOOKUPS:,} lookups)"
    )
    print(f"{'query':30}{'rows':>8}{'runs':>5}{'median ms':>11}{'max ms':>9}{'x PK':>9}  plan")
    for r in result.rows:
        print(
            f"{('scan ' if r.scan else '') + r.label:30}{r.rows:>8,}{r.runs:>5}{r.median_ms:>11.2f}"
            f"{r.max_ms:>9.2f}{r.median_ms / result.baseline_ms:>9,.0f}  {r.plan[:70]}"
        )
    for finding in result.findings:
        print(f"note: {finding}")
    print("console next to the API, same filters, first page of 50, median of each")
    print(f"{'page':30}{'rows':>8}{'runs':>5}{'console ms':>12}{'API ms':>9}{'ratio':>7}")
    for c in result.console:
        print(
            f"{c.label:30}{c.rows:>8}{c.runs:>5}{c.console_ms:>12.2f}{c.api_ms:>9.2f}"
            f"{c.ratio:>7.2f}"
        )
    for problem in result.problems:
        print(f"!!! query: {problem}")
