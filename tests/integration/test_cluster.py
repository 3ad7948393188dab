"""Several `hookyard serve` processes sharing one PostgreSQL database.

1. Two ingest nodes and three workers deliver 20,000 events while workers are SIGKILLed and
   restarted: every event arrives, none is left behind, the destination's concurrency holds
   across processes, and each customer's events arrive in order.
2. One provider delivery posted to both ingest nodes at the same moment is stored once.
3. PostgreSQL stops and starts again under load: ingest answers 503 meanwhile, loses no acked
   event, and everything resumes by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import random
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from hookyard.tokens import read_token_file
from tests.conftest import (
    GITHUB_SECRET,
    POSTGRES_URL,
    Received,
    Receiver,
    ServeProcess,
    query_database,
    start_serve,
    write_config,
)

pytestmark = [pytest.mark.postgres_only, pytest.mark.slow]

CONCURRENCY = 8  # the destination's, across every process


def cluster_config(receiver_url: str) -> str:
    """A signed source and an open one, both to one destination that keeps each customer's
    events in order; a short lease, so that what a killed worker held comes back within
    seconds."""
    return f"""
        [server]
        listen = "127.0.0.1:0"

        [worker]
        lease = "3s"  # longer than the destinations' timeout
        poll_interval = "200ms"

        [egress]
        allow = ["127.0.0.0/8"]

        [sources.github]
        verify = "github"
        secrets = ["{GITHUB_SECRET}"]

        [sources.open]
        verify = "none"

        [destinations.ordered]
        url = "{receiver_url}/ordered"
        timeout = "1s"
        retry_schedule = ["0", "100ms", "200ms", "500ms", "1s", "1s", "1s", "1s", "1s", "1s"]
        jitter = 0
        concurrency = {CONCURRENCY}
        ordering = "field:customer"

        [[routes]]
        source = "github"
        destination = "ordered"

        [[routes]]
        source = "open"
        destination = "ordered"
    """


def signed(body: bytes, delivery: str) -> dict[str, str]:
    digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "x-hub-signature-256": f"sha256={digest}",
        "x-github-delivery": delivery,
        "x-github-event": "push",
        "content-type": "application/json",
    }


async def eventually(
    check: Callable[[], Awaitable[bool]], what: Callable[[], str], timeout: float = 30.0
) -> None:
    """Poll `check` until it holds; `timeout` bounds a hang, it is no performance threshold."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(what())
        await asyncio.sleep(0.2)


def api_client(url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=30.0
    )


def http_client(url: str, connections: int = 16) -> httpx.AsyncClient:
    """A client that drops idle connections before the server does (uvicorn after 5 s), so that
    no request races the server closing the connection it reuses."""
    limits = httpx.Limits(
        max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=1.0
    )
    return httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits)


async def serve(
    config: Path, processes: list[ServeProcess], *args: str, tries: int = 1
) -> ServeProcess:
    """Start `hookyard serve`; with `tries`, start it again if it exits during start-up, as a
    supervisor would (it does when the database drops its connection meanwhile, which other
    test runs sharing this PostgreSQL server do: each test's teardown terminates every
    `hookyard` connection on the server)."""
    for attempt in range(tries):
        try:
            process = await asyncio.to_thread(start_serve, config, *args)
        except AssertionError as exc:
            if "exited" not in str(exc) or attempt == tries - 1:
                raise
            continue
        processes.append(process)
        return process
    raise AssertionError("unreachable")


def unfinished(base_dir: Path) -> dict[str, int]:
    """Deliveries not succeeded, by status."""
    rows = query_database(
        base_dir, "SELECT status, count(*) FROM deliveries WHERE status != 'succeeded' GROUP BY 1"
    )
    return {status: int(count) for status, count in rows}


@dataclass
class InFlight:
    """A receiver behaviour that counts the requests it is answering at once, per path, and
    keeps a snapshot of those in flight whenever there are more than `limit`."""

    pause: float
    limit: int
    now: dict[str, dict[int, Received]] = field(default_factory=dict)
    peak: Counter[str] = field(default_factory=Counter)
    over: list[tuple[float, list[Received]]] = field(default_factory=list)

    async def __call__(self, item: Received) -> int:
        current = self.now.setdefault(item.path, {})
        current[id(item)] = item
        self.peak[item.path] = max(self.peak[item.path], len(current))
        if len(current) > self.limit:
            self.over.append((time.time(), list(current.values())))
        try:
            await asyncio.sleep(self.pause)
        finally:
            del current[id(item)]
        return 204

    def explain(self, base_dir: Path) -> str:
        """The first time the limit was exceeded: what was in flight, and what the database
        recorded of those deliveries' attempts."""
        if not self.over:
            return "never over the limit"
        at, items = self.over[0]
        lines = [f"{len(items)} in flight at {at:.3f}:"]
        for item in items:
            event_id = item.headers.get("webhook-id", "")
            attempts = query_database(
                base_dir,
                "SELECT number, started_at, duration_ms, status_code, error FROM attempts"
                " WHERE event_id = ? ORDER BY started_at",
                (event_id,),
            )
            shown = [
                f"#{n} {started - at:+.3f}s {duration:.0f}ms {code} {error or ''}".strip()
                for n, started, duration, code, error in attempts
            ]
            lines.append(f"  {event_id} arrived {item.at - at:+.3f}s; attempts: {shown}")
        return "\n".join(lines)


def first_arrivals(received: list[Received]) -> list[Received]:
    """Each event's first delivery, in arrival order (later ones are redeliveries)."""
    seen: set[str] = set()
    firsts = []
    for item in received:
        event_id = item.headers.get("webhook-id", "")
        if event_id not in seen:
            seen.add(event_id)
            firsts.append(item)
    return firsts


# -- 1. Two ingest nodes, three workers killed at random: all delivered, in order, capped --------

EVENTS = 20_000
CUSTOMERS = 50
POSTING = 32  # requests in flight at once
KILLS = 5  # at least


@pytest.mark.timeout(300)
async def test_cluster_delivers_everything_in_order_within_concurrency_while_workers_die(
    tmp_path: Path, receiver: Receiver, serve_processes: list[ServeProcess]
) -> None:
    rng = random.Random(20_000)
    inflight = InFlight(pause=0.003, limit=CONCURRENCY)
    receiver.behaviour = inflight
    config = write_config(tmp_path, cluster_config(receiver.url))
    ingest = [await serve(config, serve_processes, "--roles", "ingest,api") for _ in range(2)]
    workers = [await serve(config, serve_processes, "--roles", "worker") for _ in range(3)]
    started = time.monotonic()

    clients = [http_client(n.url, POSTING) for n in ingest]
    gate = asyncio.Semaphore(POSTING)
    acked: dict[str, tuple[str, int]] = {}  # event id -> (customer, sequence number)
    refused: list[str] = []  # 503 answers, sent again
    dropped: list[str] = []  # requests that got no answer at all (sent again too)
    duplicates: list[tuple[str, int]] = []  # retries the first attempt had stored after all
    kills = 0
    posting_done = asyncio.Event()

    async def post_customer(number: int) -> None:
        """One customer's events one after another (each acked before the next is sent), each
        to either ingest node: the order they were acked in is the order to deliver them in.
        Signed GitHub deliveries, so that sending one again after a 503 cannot store it twice
        (the commit of a refused request may have happened after all)."""
        customer = f"cus_{number:02d}"
        pick = random.Random(f"{rng.random()}-{number}")
        for seq in range(1, EVENTS // CUSTOMERS + 1):
            body = orjson.dumps({"customer": customer, "seq": seq, "pad": "x" * pick.randrange(64)})
            headers = signed(body, str(uuid.UUID(int=pick.getrandbits(128))))
            retried = False
            while True:
                try:
                    async with gate:
                        response = await pick.choice(clients).post(
                            "/in/github", content=body, headers=headers
                        )
                except httpx.TransportError as exc:
                    dropped.append(repr(exc))
                else:
                    if response.status_code != 503:
                        break
                    refused.append(response.text)
                retried = True
                await asyncio.sleep(0.05)
            assert response.status_code == 200, response.text
            answer = response.json()
            if answer["duplicate"]:
                assert retried, answer  # a first attempt is never a duplicate
                duplicates.append((customer, seq))
            acked[answer["id"]] = (customer, seq)

    async def chaos() -> None:
        """While events pour in, SIGKILL a random worker now and then and start it again."""
        nonlocal kills
        while not posting_done.is_set() or kills < KILLS:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(posting_done.wait(), rng.uniform(2.0, 6.0))
            index = rng.randrange(len(workers))
            await asyncio.to_thread(workers[index].kill)
            kills += 1
            await asyncio.sleep(rng.uniform(0.1, 1.0))
            workers[index] = await serve(config, serve_processes, "--roles", "worker", tries=3)

    async def post_all() -> None:
        try:
            await asyncio.gather(*(post_customer(n) for n in range(CUSTOMERS)))
        finally:
            posting_done.set()

    async def progress() -> None:  # TEMP
        while True:
            await asyncio.sleep(5)
            print(
                f"t={time.monotonic() - started:.0f} acked={len(acked)} recv={len(receiver.received)} kills={kills} refused={len(refused)} peak={dict(inflight.peak)}",
                flush=True,
            )

    prog = asyncio.create_task(progress())
    try:
        async with asyncio.TaskGroup() as group:  # a failure in one cancels the other
            group.create_task(chaos())
            group.create_task(post_all())
    finally:
        for http in clients:
            await http.aclose()
    posted = time.monotonic()
    assert len(acked) == EVENTS
    assert kills >= KILLS
    assert not dropped, f"ingest nodes dropped {len(dropped)} requests: {dropped[:3]}"

    def undelivered() -> set[str]:
        return set(acked) - set(receiver.ids())

    async def all_delivered() -> bool:
        return not undelivered()

    await eventually(
        all_delivered,
        lambda: f"{len(undelivered())} of {EVENTS} acked events never delivered",
        timeout=120.0,
    )
    delivered = time.monotonic()

    async def nothing_left() -> bool:
        return not await asyncio.to_thread(unfinished, tmp_path)

    await eventually(
        nothing_left, lambda: f"deliveries left unfinished: {unfinished(tmp_path)}", timeout=30.0
    )
    stored = query_database(tmp_path, "SELECT count(*), count(DISTINCT event_id) FROM deliveries")
    assert stored == [(EVENTS, EVENTS)]  # one event per delivery id, one delivery per event

    # The destination's concurrency held across the three workers.
    assert inflight.peak["/hooks/ordered"] <= CONCURRENCY, inflight.explain(tmp_path)

    # Each customer's events first arrived in the order they were acked.
    order: dict[str, list[int]] = {}
    for item in first_arrivals(receiver.received):
        customer, seq = acked[item.headers["webhook-id"]]
        order.setdefault(customer, []).append(seq)
    wrong = {c: seqs for c, seqs in order.items() if seqs != sorted(seqs)}
    assert not wrong, {
        c: [(a, b) for a, b in itertools.pairwise(s) if a > b] for c, s in wrong.items()
    }
    redelivered = len(receiver.received) - EVENTS
    prog.cancel()
    print(
        f"posted {EVENTS} in {posted - started:.1f}s, all delivered after "
        f"{delivered - started:.1f}s; {redelivered} redeliveries; peak in flight "
        f"{inflight.peak['/hooks/ordered']}; {kills} kills; {len(refused)} refused "
        f"({len(duplicates)} stored after all)"
    )


# -- 2. One provider delivery posted to both ingest nodes at once: stored once ------------------


@pytest.mark.timeout(120)
async def test_one_delivery_posted_to_both_ingest_nodes_at_once_is_stored_once(
    tmp_path: Path, receiver: Receiver, serve_processes: list[ServeProcess]
) -> None:
    config = write_config(tmp_path, cluster_config(receiver.url))
    nodes = [await serve(config, serve_processes, "--roles", "ingest,api") for _ in range(2)]
    await serve(config, serve_processes, "--roles", "worker")
    token = read_token_file(tmp_path / "hookyard.token")
    assert token
    clients = [http_client(node.url, 64) for node in nodes]
    stored: dict[str, str] = {}  # X-GitHub-Delivery -> event id

    async def to_both(number: int) -> None:
        body = orjson.dumps({"ref": "refs/heads/main", "n": number, "customer": f"c{number % 7}"})
        delivery = str(uuid.uuid4())
        headers = signed(body, delivery)
        responses = await asyncio.gather(
            *(http.post("/in/github", content=body, headers=headers) for http in clients)
        )
        assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
        answers = [r.json() for r in responses]
        assert answers[0]["id"] == answers[1]["id"], answers
        assert sorted(a["duplicate"] for a in answers) == [False, True], answers
        stored[delivery] = answers[0]["id"]

    try:
        for http in clients:  # open the connections first: the pairs then leave together
            assert (await http.get("/healthz")).status_code == 200
        for number in range(50):  # one pair at a time
            await to_both(number)
        await asyncio.gather(*(to_both(number) for number in range(50, 100)))  # all at once
    finally:
        for http in clients:
            await http.aclose()

    # GitHub events carry no event id: the delivery id is their dedup key (with the body's hash).
    rows = query_database(tmp_path, "SELECT dedup_key, id FROM events WHERE source = 'github'")
    assert sorted(rows) == sorted((f"delivery:{d}", event_id) for d, event_id in stored.items())
    async with api_client(nodes[1].url, token) as api:
        listed = await api.get("/api/v1/events", params={"source": "github", "limit": 1000})
        assert listed.status_code == 200, listed.text
        assert sorted(e["id"] for e in listed.json()["data"]) == sorted(stored.values())

    # One event, one delivery: the worker sends each once.
    await receiver.wait_for(len(stored), timeout=30.0)
    await asyncio.sleep(1.0)  # room for any wrongful second delivery to show up
    assert sorted(receiver.ids()) == sorted(stored.values())
    assert query_database(tmp_path, "SELECT count(*) FROM deliveries") == [(len(stored),)]


# -- 3. PostgreSQL stops and starts under load --------------------------------------------------

PG_VERSION = (
    max(p.name for p in Path("/etc/postgresql").iterdir())
    if Path("/etc/postgresql").is_dir()
    else "15"
)


def pg_ctl(action: str, *args: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main", action, *args],
        check=True,
        capture_output=True,
        timeout=60,
    )


def postgres_accepts() -> bool:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def ensure_postgres_running(timeout: float = 60.0) -> None:
    """Start PostgreSQL if it is not running, and wait until it accepts connections."""
    if postgres_accepts():
        return
    subprocess.run(  # no check: "already running" (it was still starting up) is fine
        ["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main", "start"],
        capture_output=True,
        timeout=60,
    )
    deadline = time.monotonic() + timeout
    while not postgres_accepts():
        if time.monotonic() > deadline:
            raise AssertionError("PostgreSQL did not come back")
        time.sleep(0.2)


@dataclass
class Answer:
    sent: float  # time.monotonic()
    answered: float
    status: int | None  # None: no answer at all
    detail: str = ""


class Poster:
    """Distinct events posted by a few concurrent clients until `stop` is set; every answer is
    kept with its timing, and each 200's event id with the body it acknowledged."""

    def __init__(self, url: str, clients: int) -> None:
        self.clients = [http_client(url, 1) for _ in range(clients)]
        self.answers: list[Answer] = []
        self.acked: dict[str, bytes] = {}
        self.stop = asyncio.Event()

    async def run(self) -> None:
        try:
            await asyncio.gather(*(self._post(i, c) for i, c in enumerate(self.clients)))
        finally:
            for http in self.clients:
                await http.aclose()

    async def _post(self, index: int, http: httpx.AsyncClient) -> None:
        number = 0
        while not self.stop.is_set():
            number += 1
            body = orjson.dumps({"client": index, "n": number, "nonce": uuid.uuid4().hex})
            sent = time.monotonic()
            try:
                response = await http.post(
                    "/in/open", content=body, headers={"content-type": "application/json"}
                )
            except httpx.TransportError as exc:
                self.answers.append(Answer(sent, time.monotonic(), None, repr(exc)))
                await asyncio.sleep(0.05)
                continue
            answer = Answer(sent, time.monotonic(), response.status_code, response.text[:200])
            self.answers.append(answer)
            if response.status_code == 200:
                self.acked[response.json()["id"]] = body
            await asyncio.sleep(0.01)


async def all_event_ids(api: httpx.AsyncClient) -> set[str]:
    ids: set[str] = set()
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = await api.get("/api/v1/events", params=params)
        assert page.status_code == 200, page.text
        ids.update(e["id"] for e in page.json()["data"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return ids


@pytest.mark.timeout(180)
async def test_postgres_restart_under_load_refuses_meanwhile_and_recovers_alone(
    tmp_path: Path, receiver: Receiver, serve_processes: list[ServeProcess]
) -> None:
    assert await asyncio.to_thread(postgres_accepts)
    config = write_config(tmp_path, cluster_config(receiver.url))
    node = await serve(config, serve_processes)  # ingest, api and worker
    token = read_token_file(tmp_path / "hookyard.token")
    assert token
    poster = Poster(node.url, clients=4)
    posting = asyncio.create_task(poster.run())
    try:

        async def acked() -> bool:
            return len(poster.acked) >= 50

        await eventually(acked, lambda: f"no acks before the restart: {poster.answers[-5:]}")
        await asyncio.sleep(0.5)
        try:
            await asyncio.to_thread(pg_ctl, "stop", "-m", "fast")
            down = time.monotonic()  # stopped: every request sent from now on finds it down
            await asyncio.sleep(2.0)
            back = time.monotonic()
            await asyncio.to_thread(pg_ctl, "start")
        finally:
            await asyncio.to_thread(ensure_postgres_running)
        up = time.monotonic()

        def first_ok_after_restart() -> Answer | None:
            return next((a for a in poster.answers if a.sent >= up and a.status == 200), None)

        async def resumed() -> bool:
            return first_ok_after_restart() is not None

        await eventually(
            resumed, lambda: f"ingest never recovered: {poster.answers[-5:]}", timeout=20.0
        )
        await asyncio.sleep(1.0)  # and keeps going
    finally:
        poster.stop.set()
        await posting
        await asyncio.to_thread(ensure_postgres_running)

    answers = poster.answers
    assert not [a for a in answers if a.status is None], "ingest dropped connections"
    assert {a.status for a in answers} <= {200, 503}, [a for a in answers if a.status != 200]
    outage = [a for a in answers if a.sent >= down and a.answered <= back]
    assert outage, "no request was answered while PostgreSQL was down"
    assert {a.status for a in outage} == {503}, [a for a in outage if a.status != 503]
    recovered = first_ok_after_restart()
    assert recovered is not None

    # Every acked event is stored and gets delivered, and nothing is left behind.
    async with api_client(node.url, token) as api:
        stored = await all_event_ids(api)
    lost = set(poster.acked) - stored
    assert not lost, f"{len(lost)} of {len(poster.acked)} acked events lost"

    def undelivered() -> set[str]:
        return set(poster.acked) - set(receiver.ids())

    async def all_delivered() -> bool:
        return not undelivered()

    await eventually(
        all_delivered,
        lambda: f"{len(undelivered())} of {len(poster.acked)} acked events never delivered",
    )

    async def nothing_left() -> bool:
        return not await asyncio.to_thread(unfinished, tmp_path)

    await eventually(nothing_left, lambda: f"deliveries left unfinished: {unfinished(tmp_path)}")
    print(
        f"{len(poster.acked)} acked, {len(outage)} answered 503 while down; first 200 "
        f"{recovered.answered - up:.2f}s after PostgreSQL was back"
    )
