"""Delivery benchmark: how fast Hookyard empties a queue into a local sink, next to a raw
aiohttp loop posting the same bodies to the same sink, and the end-to-end latency (ingest
answer to sink receipt) under a fixed-rate open-loop load. The PostgreSQL block reuses the
drain (drain()): the same queue emptied by 1, 2 and 3 worker processes sharing a PostgreSQL
schema, next to the SQLite drain.

The sink is nginx answering 200 (see common.start_sink). The client loops run in this process
on uvloop with aiohttp, the event loop and client library `hookyard serve` uses. Run it through
bench/run (`bench/run --only delivery`, `--only postgres`), which calls run() and report()
(drain() and report_drains()) from ingest.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import uvloop
from common import (
    BIN,
    Database,
    build_body,
    cpu_seconds,
    free_port,
    postgres_cpu,
    postgres_cpu_since,
    start,
    start_sink,
    stop,
)

CONCURRENCY = 64  # the destination's `concurrency`, and the raw loop's requests in flight
FILL_CONCURRENCY = 256  # requests in flight filling a paused queue (untimed; bigger group commits)
MAX_IN_FLIGHT = 256
DRAIN_TARGET = 0.70  # hookyard drain >= this share of the raw loop
P50_TARGET_MS = 5.0
P99_TARGET_MS = 25.0
RATE_SHORTFALL = 0.05  # flag an open loop that sent more than 5% below its rate
POLL_S = 0.1
LOAD_LIMIT_S = 300  # no client loop, fill or drain runs longer than this
SETTLE_LIMIT_S = 30  # after the open loop: wait at most this long for its deliveries
REQUEST_TIMEOUT_S = 30  # per request, as Hookyard's default destination timeout
LOG_FORMAT = "$msec $http_webhook_id"
SUCCEEDED = "SELECT count(*) FROM deliveries WHERE status='succeeded'"
BANNER = ("Hookyard listening on", "Generated an admin token")


@dataclass
class DeliveryResult:
    queued: int
    rate: int
    open_loop_s: float
    sink: str = ""
    # drain
    ceiling_s: float = 0.0
    ceiling_per_s: float = 0.0
    fill_s: float = 0.0  # pre-filling the paused queue (not a measured figure)
    drain_s: float | None = None  # resume until every delivery succeeded, polled every 100 ms
    drain_db_s: float | None = None  # resume until the last delivery's updated_at
    drain_per_s: float | None = None
    drain_cpu_s: float | None = None  # CPU time hookyard's process used while draining
    vs_ceiling: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)  # deliveries by status afterwards
    attempts: int = 0
    # open loop
    sent: int = 0
    acked: int = 0  # 200 answers carrying an event id
    matched: int = 0  # acked events found in the sink's access log
    achieved_rate: float = 0.0
    max_send_lag_ms: float = 0.0  # worst lateness of a send behind its schedule
    min_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class Drain:
    """One drain of a pre-filled queue into the sink (see drain())."""

    label: str
    backend: str  # "SQLite" or "PostgreSQL"
    workers: int  # `--roles worker` processes; 0: one process with every role fills and drains
    queued: int
    fill_s: float = 0.0  # pre-filling the paused queue (not a measured figure)
    drain_s: float | None = None  # resume until every delivery succeeded, polled every 100 ms
    drain_db_s: float | None = None  # resume until the last delivery's updated_at
    drain_per_s: float | None = None
    drain_cpu_s: float | None = None  # CPU time the delivering Hookyard processes used meanwhile
    db_cpu_s: float | None = None  # CPU time of the machine's postgres processes meanwhile
    statuses: dict[str, int] = field(default_factory=dict)  # deliveries by status afterwards
    attempts: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class Ack:
    """One open-loop send: when it went out, when its 200 arrived, the event id it got."""

    sent_at: float
    arrived_at: float | None = None
    event_id: str | None = None
    failure: str | None = None


# --- clients ----------------------------------------------------------------------------------


def client_session() -> aiohttp.ClientSession:
    """A session set up like Hookyard's sender's (deliver/http.py)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Content-Type"),
    )


def hookyard_like_headers(count: int) -> list[dict[str, str]]:
    """What Hookyard sends an unsigned destination, so the raw loop's requests are the same
    size: user-agent, content-type, webhook-id (evt_ + 26 characters), webhook-timestamp."""
    now = str(int(time.time()))
    return [
        {
            "user-agent": "Hookyard/0.1.0",
            "content-type": "application/json",
            "webhook-id": "evt_" + uuid.uuid4().hex[:26].upper(),
            "webhook-timestamp": now,
        }
        for _ in range(count)
    ]


async def post_many(
    url: str, bodies: Sequence[bytes], headers: Sequence[dict[str, str]], concurrency: int
) -> tuple[float, Counter[str]]:
    """Post every body with `concurrency` requests in flight; (seconds, answers by status)."""
    answers: Counter[str] = Counter()
    order = iter(range(len(bodies)))  # shared: each worker takes the next index
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in order:
            try:
                async with session.post(
                    url, data=bodies[i], headers=headers[i], allow_redirects=False, timeout=timeout
                ) as response:
                    await response.read()
                    answers[str(response.status)] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                answers[type(exc).__name__] += 1

    async with client_session() as session:
        started = time.perf_counter()
        workers = [worker(session) for _ in range(concurrency)]
        try:
            await asyncio.wait_for(asyncio.gather(*workers), LOAD_LIMIT_S)
        except TimeoutError:
            answers[f"unanswered after {LOAD_LIMIT_S} s"] = len(bodies) - sum(answers.values())
        return time.perf_counter() - started, answers


async def open_loop(url: str, bodies: Sequence[bytes], rate: int) -> tuple[list[Ack], float]:
    """Send body i at t0 + i/rate whatever the answers do (fire-and-forget tasks); wait for
    the answers at most REQUEST_TIMEOUT_S after the last send. Returns the acks and the
    worst lateness of a send behind its schedule, in seconds."""
    acks = [Ack(0.0) for _ in bodies]
    headers = {"content-type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    tasks: set[asyncio.Task[None]] = set()

    async def send(session: aiohttp.ClientSession, i: int) -> None:
        ack = acks[i]
        ack.sent_at = time.time()
        try:
            async with session.post(url, data=bodies[i], headers=headers, timeout=timeout) as r:
                arrived = time.time()
                body = await r.read()
            if r.status != 200:
                ack.failure = f"HTTP {r.status}"
                return
            ack.arrived_at, ack.event_id = arrived, json.loads(body)["id"]
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            ack.failure = type(exc).__name__

    lag = 0.0
    async with client_session() as session:
        t0 = time.perf_counter() + 0.05
        for i in range(len(bodies)):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lag = max(lag, time.perf_counter() - due)
            task = asyncio.create_task(send(session, i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(set(tasks), timeout=REQUEST_TIMEOUT_S + 5)
        for task in list(tasks):  # bounded: whatever has not answered by now is abandoned
            task.cancel()
    for ack in acks:
        if ack.sent_at and ack.arrived_at is None and ack.failure is None:
            ack.failure = "no answer"
    return acks, lag


# --- hookyard ---------------------------------------------------------------------------------


def write_config(work: Path, sink_port: int) -> Path:
    """One config for every process of a run (listen address, database and roles are given on
    the command line)."""
    config = work / "hookyard.toml"
    config.write_text(
        '[egress]\nallow = ["127.0.0.0/8"]\n'
        '\n[sources.bench]\nverify = "none"\n'
        f'\n[destinations.sink]\nurl = "http://127.0.0.1:{sink_port}/"\n'
        f"concurrency = {CONCURRENCY}\n"
        f"\n[worker]\nmax_in_flight = {MAX_IN_FLIGHT}\n"
        '\n[[routes]]\nsource = "bench"\ndestination = "sink"\n'
    )
    return config


def start_hookyard(
    work: Path,
    sink_port: int,
    database: Database,
    roles: str | None = None,
    log: str = "server.log",
) -> tuple[subprocess.Popen[bytes], int]:
    """`hookyard serve` on a free port with the run's config (written by the first call);
    `roles` None: all three."""
    port = free_port()
    config = work / "hookyard.toml"
    if not config.exists():
        write_config(work, sink_port)
    argv = [str(BIN / "hookyard"), "serve", "--config", str(config)]
    argv += ["--listen", f"127.0.0.1:{port}", "--database", database.url]
    if roles is not None:
        argv += ["--roles", roles]
    return start(argv, work, {}, port, work / log), port


def admin(port: int, work: Path, action: str) -> None:
    """POST /api/v1/destinations/sink/<action> with the token the server wrote on first start."""
    token = (work / "hookyard.token").read_text().strip()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/destinations/sink/{action}",
        data=b"",
        method="POST",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def wait_succeeded(db: Database, target: int, since: float, limit_s: float) -> tuple[int, float]:
    """Poll (read-only, every POLL_S) until `target` deliveries succeeded or `limit_s` passed
    since the monotonic time `since`; returns (succeeded, seconds since `since`)."""
    while True:
        done = db.value(SUCCEEDED)
        elapsed = time.monotonic() - since
        if done >= target or elapsed > limit_s:
            return done, elapsed
        time.sleep(POLL_S)


def statuses(db: Database) -> dict[str, int]:
    rows = db.rows("SELECT status, count(*) FROM deliveries GROUP BY status")
    return {str(status): int(count) for status, count in rows}


def last_update(db: Database) -> float:
    return float(db.rows("SELECT max(updated_at) FROM deliveries")[0][0] or 0)


def server_problems(work: Path, label: str, logs: Sequence[str] = ("server.log",)) -> list[str]:
    """Anything Hookyard printed beyond its banner and INFO lines (tracebacks, warnings...)."""
    problems = []
    for log in logs:
        if not (work / log).exists():  # a process never started (an earlier one failed)
            continue
        lines = (work / log).read_text(errors="replace").splitlines()
        unexpected = [
            line
            for line in lines
            if line.strip() and not line.startswith(BANNER) and " INFO " not in line
        ]
        if unexpected:
            where = "" if log == "server.log" else f" ({log})"
            problems.append(
                f"{label} server output{where}:\n    " + "\n    ".join(unexpected[-30:])
            )
    return problems


# --- phases -----------------------------------------------------------------------------------


def not_all_ok(what: str, answers: Counter[str], expected: int) -> list[str]:
    if answers.get("200", 0) == expected:
        return []
    return [f"{what}: {answers.get('200', 0):,} of {expected:,} answered 200 ({dict(answers)})"]


def measure_ceiling(result: DeliveryResult, scratch: Path, bodies: Sequence[bytes]) -> None:
    """The raw aiohttp loop: every body to a fresh sink, CONCURRENCY requests in flight."""
    work = scratch / "delivery-ceiling"
    work.mkdir()
    sink, sink_port, result.sink = start_sink(work)
    try:
        url = f"http://127.0.0.1:{sink_port}/"
        headers = hookyard_like_headers(len(bodies))
        elapsed, answers = uvloop.run(post_many(url, bodies, headers, CONCURRENCY))
    finally:
        stop(sink)
    result.ceiling_s = elapsed
    result.ceiling_per_s = answers.get("200", 0) / elapsed
    result.problems += not_all_ok("raw aiohttp loop", answers, len(bodies))


def measure_drain(result: DeliveryResult, scratch: Path, bodies: Sequence[bytes]) -> None:
    """The delivery block's drain: one SQLite process with every role."""
    work = scratch / "delivery-drain"
    done = drain(work, Database.sqlite(work / "bench.db"), bodies, label="drain")
    result.fill_s, result.drain_s, result.drain_db_s = done.fill_s, done.drain_s, done.drain_db_s
    result.drain_per_s, result.drain_cpu_s = done.drain_per_s, done.drain_cpu_s
    result.statuses, result.attempts = done.statuses, done.attempts
    result.problems += done.problems


def drain(
    work: Path, db: Database, bodies: Sequence[bytes], workers: int = 0, label: str = ""
) -> Drain:
    """Fill the queue of a paused destination, resume it, time until every delivery succeeded.

    workers=0: one `hookyard serve` with every role takes the fill, the pause and resume calls
    and the deliveries (SQLite allows one process). workers=N: one `--roles ingest,api` process
    takes the fill and the calls; N `--roles worker` processes, started once the queue is full
    (so they see it paused), deliver."""
    label = label or (
        f"{db.backend}, {workers} worker process{'es' if workers > 1 else ''}"
        if workers
        else f"{db.backend}, 1 process"
    )
    result = Drain(label, db.backend, workers, len(bodies))
    work.mkdir()
    sink, sink_port, _ = start_sink(work)
    servers: list[subprocess.Popen[bytes]] = []
    logs = ["server.log"] + [f"worker-{i + 1}.log" for i in range(workers)]
    try:
        front, port = start_hookyard(work, sink_port, db, "ingest,api" if workers else None)
        servers.append(front)
        admin(port, work, "pause")
        headers = [{"content-type": "application/json"}] * len(bodies)
        url = f"http://127.0.0.1:{port}/in/bench"
        result.fill_s, answers = uvloop.run(post_many(url, bodies, headers, FILL_CONCURRENCY))
        result.problems += not_all_ok(f"{label}: filling the queue", answers, len(bodies))
        queued = db.value("SELECT count(*) FROM deliveries")
        early = db.value(SUCCEEDED)
        if queued != len(bodies) or early:
            result.problems.append(
                f"{label}: before resume: {queued:,} deliveries queued (expected "
                f"{len(bodies):,}), {early:,} already succeeded (expected 0: the destination "
                "was paused)"
            )
        for log in logs[1:]:
            servers.append(start_hookyard(work, sink_port, db, "worker", log)[0])
        delivering = servers[1:] or servers
        cpu_before = sum(cpu_seconds(server.pid) for server in delivering)
        db_cpu_before = postgres_cpu() if workers else {}
        resumed_at, since = time.time(), time.monotonic()
        admin(port, work, "resume")
        done, elapsed = wait_succeeded(db, queued, since, LOAD_LIMIT_S)
        result.drain_cpu_s = sum(cpu_seconds(server.pid) for server in delivering) - cpu_before
        if workers:
            result.db_cpu_s = postgres_cpu_since(db_cpu_before)
        result.drain_s = elapsed
        result.drain_per_s = done / elapsed
        result.drain_db_s = last_update(db) - resumed_at
        result.statuses = statuses(db)
        result.attempts = db.value("SELECT count(*) FROM attempts")
        if done < queued:
            result.problems.append(
                f"{label}: only {done:,} of {queued:,} deliveries succeeded within "
                f"{LOAD_LIMIT_S} s of resume ({result.statuses})"
            )
        if result.attempts != done:
            result.problems.append(f"{label}: {result.attempts:,} attempts for {done:,} deliveries")
    except Exception as exc:  # a server that failed ends this drain, not the run
        result.problems.append(f"{label}: failed: {exc}")
    finally:
        for server in reversed(servers):
            stop(server)
        stop(sink)
        db.close()
    result.problems += server_problems(work, label, logs)
    return result


def measure_latency(result: DeliveryResult, scratch: Path, bodies: Sequence[bytes]) -> None:
    """The open loop into an active destination; joins ingest answers with the sink's log."""
    work = scratch / "delivery-latency"
    work.mkdir()
    sink, sink_port, kind = start_sink(work, LOG_FORMAT)
    server = None
    try:
        server, port = start_hookyard(work, sink_port, Database.sqlite(work / "bench.db"))
        url = f"http://127.0.0.1:{port}/in/bench"
        acks, lag = uvloop.run(open_loop(url, bodies, result.rate))
        acked = sum(1 for ack in acks if ack.event_id is not None)
        db = Database.sqlite(work / "bench.db")
        done, _ = wait_succeeded(db, acked, time.monotonic(), SETTLE_LIMIT_S)
        if done < acked:
            result.problems.append(
                f"open loop: {done:,} of {acked:,} deliveries succeeded {SETTLE_LIMIT_S} s after it"
            )
    finally:
        if server is not None:
            stop(server)
        stop(sink)
    result.problems += server_problems(work, "open loop")
    if kind != "nginx":
        result.problems.append("open loop: no nginx, so no sink log to match deliveries against")
        return
    summarise_latency(result, acks, sink_receipts(work / "sink-access.log"), lag)


def sink_receipts(log: Path) -> dict[str, float]:
    """webhook-id -> when nginx logged the request ($msec), first receipt only."""
    received: dict[str, float] = {}
    for line in log.read_text().splitlines():
        msec, _, webhook_id = line.partition(" ")
        if webhook_id and webhook_id != "-":
            received.setdefault(webhook_id, float(msec))
    return received


def percentile(ordered: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summarise_latency(
    result: DeliveryResult, acks: Sequence[Ack], received: dict[str, float], lag: float
) -> None:
    sent = sorted(ack.sent_at for ack in acks if ack.sent_at)
    result.sent = len(sent)
    result.max_send_lag_ms = lag * 1000
    if len(sent) > 1:
        result.achieved_rate = (len(sent) - 1) / (sent[-1] - sent[0])
    if result.achieved_rate < (1 - RATE_SHORTFALL) * result.rate:
        result.problems.append(
            f"open loop: sent {result.achieved_rate:,.0f} events/s, more than "
            f"{RATE_SHORTFALL:.0%} short of {result.rate:,} (worst send "
            f"{result.max_send_lag_ms:,.0f} ms behind schedule)"
        )
    failures = Counter(ack.failure for ack in acks if ack.failure)
    if failures:
        result.problems.append(f"open loop: ingest answers other than 200: {dict(failures)}")
    latencies = sorted(
        (received[ack.event_id] - ack.arrived_at) * 1000
        for ack in acks
        if ack.event_id is not None and ack.arrived_at is not None and ack.event_id in received
    )
    result.acked = sum(1 for ack in acks if ack.event_id is not None)
    result.matched = len(latencies)
    if result.matched < len(acks):
        result.problems.append(
            f"open loop: {result.matched:,} of {len(acks):,} events matched in the sink log "
            f"({result.acked:,} acknowledged)"
        )
    if latencies:
        result.min_ms = latencies[0]
        result.p50_ms = percentile(latencies, 0.50)
        result.p99_ms = percentile(latencies, 0.99)
        result.max_ms = latencies[-1]


def run(queued: int, rate: int, seconds: float, scratch: Path) -> DeliveryResult:
    """All three measurements, each with fresh servers and directories under `scratch`."""
    result = DeliveryResult(queued, rate, seconds)
    count = round(rate * seconds)
    print(f"building {max(queued, count):,} bodies ...", file=sys.stderr)
    bodies = [build_body(seq, str(uuid.uuid4())) for seq in range(max(queued, count))]
    print("measuring raw aiohttp loop (delivery ceiling) ...", file=sys.stderr)
    measure_ceiling(result, scratch, bodies[:queued])
    print(f"measuring hookyard drain of {queued:,} queued deliveries ...", file=sys.stderr)
    measure_drain(result, scratch, bodies[:queued])
    if result.ceiling_per_s and result.drain_per_s:
        result.vs_ceiling = result.drain_per_s / result.ceiling_per_s
    print(
        f"measuring end-to-end latency at {rate:,} events/s for {seconds:g} s ...", file=sys.stderr
    )
    measure_latency(result, scratch, bodies[:count])
    return result


# --- report -----------------------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def report(result: DeliveryResult) -> None:
    print(
        f"delivery, 1 KB JSON to {result.sink}, {CONCURRENCY} concurrent, {result.queued:,} queued"
    )
    print(f"{'':26}{'deliveries/s':>14}{'vs raw aiohttp':>17}")
    print(f"{'raw aiohttp loop (ceiling)':26}{result.ceiling_per_s:>14,.0f}{1:>17.2f}")
    if result.drain_per_s is not None and result.vs_ceiling is not None:
        met = verdict(result.vs_ceiling >= DRAIN_TARGET)
        print(
            f"{'hookyard drain':26}{result.drain_per_s:>14,.0f}{result.vs_ceiling:>17.2f}"
            f"   target >= {DRAIN_TARGET:.2f}: {met}"
        )
        if result.drain_s is not None and result.drain_cpu_s is not None:
            print(
                f"  (drain {result.drain_s:.1f} s from resume, polled every {POLL_S:g} s; "
                f"hookyard used {result.drain_cpu_s / result.drain_s:.0%} of a core)"
            )
    head = f"end-to-end at {result.rate:,} events/s open loop, {result.open_loop_s:g} s"
    matched = f"({result.matched:,} of {result.sent:,} matched)"
    if result.p50_ms is None or result.p99_ms is None or result.max_ms is None:
        print(f"{head}: no latencies {matched}")
    else:
        print(
            f"{head}: p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
            f"max {result.max_ms:.0f} ms {matched}"
        )
        print(
            f"targets: p50 <= {P50_TARGET_MS:g} ms {verdict(result.p50_ms <= P50_TARGET_MS)}; "
            f"p99 <= {P99_TARGET_MS:g} ms {verdict(result.p99_ms <= P99_TARGET_MS)}"
        )
    for problem in result.problems:
        print(f"!!! delivery: {problem}")


def report_drains(drains: Sequence[Drain]) -> None:
    """The PostgreSQL block's drain table: deliveries/s, and their ratio to the first row's."""
    if not drains:
        return
    base = drains[0]
    print(
        f"delivery drain, 1 KB JSON to nginx, {CONCURRENCY} concurrent (in all), "
        f"{base.queued:,} queued"
    )
    print(f"{'':30}{'deliveries/s':>14}{'vs SQLite':>11}   CPU while draining (100% = a core)")
    for d in drains:
        if d.drain_per_s is None or d.drain_s is None:
            print(f"{d.label:30}{'-':>14}{'-':>11}")
            continue
        vs = f"{d.drain_per_s / base.drain_per_s:.2f}" if base.drain_per_s else "-"
        cpu = f"hookyard {(d.drain_cpu_s or 0) / d.drain_s:.0%}"
        if d.db_cpu_s is not None:
            cpu += f", postgres {d.db_cpu_s / d.drain_s:.0%}"
        print(f"{d.label:30}{d.drain_per_s:>14,.0f}{vs:>11}   {cpu} ({d.drain_s:.1f} s)")
    for d in drains:
        for problem in d.problems:
            print(f"!!! postgres block drain: {problem}")
