"""Ingest benchmark: Hookyard next to a bare ASGI ceiling and a hand-written receiver.

Every request is a distinct, validly signed 1 KB GitHub-style event, pre-built into a file that
wrk walks (walk.lua); each server runs alone in one process on the same uvicorn + uvloop +
httptools stack with a fresh directory and database; each figure is reported as a ratio to the
baselines measured in the same run, because machines are noisy. The flood phase measures the
same valid load with and without a second wrk (flood.lua) sending a fixed rate of badly signed
requests to another source. The delivery phase (delivery.py) measures the worker: a queue drain
next to a raw aiohttp loop, and end-to-end latency under an open-loop load. The query phase
(query.py) times the event list's queries on a million-event database. The PostgreSQL block
measures ingest with one and two processes sharing a PostgreSQL schema, and queue drains with
1, 2 and 3 worker processes, each next to the same on SQLite. Run it through bench/run.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import brokers
import delivery
import polling
import query as event_queries
import relay  # not `query`: common.query is imported below
import soak
from common import (
    BENCH,
    BIN,
    BODY_SIZE,
    RESULTS,
    ROOT,
    UVICORN_FLAGS,
    Database,
    build_body,
    free_port,
    machine,
    postgres_schema,
    query,
    start,
    start_sink,
    stop,
)

SECRET = "bench-secret"
TARGET_SECRET = "another-secret"  # the flooded source's; the flood never signs with it
WARMUP_S = 1
DRAIN_TIMEOUT_S = 120
LABELS = {
    "bare": "bare ASGI (ceiling)",
    "handwritten": "hand-written FastAPI",
    "hookyard": "hookyard",
    "hookyard-route": "hookyard + 1 route",
    "flood-alone": "valid ingest alone",
    "flood": "valid ingest + flood",
    "pg-sqlite": "SQLite, 1 process",
    "pg-1": "PostgreSQL, 1 process",
    "pg-2": "PostgreSQL, 2 processes",
}
PHASES = [
    "bare", "handwritten", "hookyard", "flood", "hookyard-route", "delivery", "query", "postgres",
    "polling", "relay", "brokers", "soak",
]  # fmt: skip
DEFAULT_PHASES = [p for p in PHASES if p != "soak"]  # a soak runs 30 minutes: only when asked
# Phases that are not (only) wrk against one server.
NOT_WRK = ("delivery", "query", "postgres", "polling", "relay", "brokers", "soak")
FLOOD_NAMES = {"flood": ["flood-alone", "flood"]}  # the flood phase runs two servers
QUEUED = 50_000  # deliveries the delivery drain empties (delivery.py)
QUICK_QUEUED = 10_000
QUERY_RUNS = 20  # timed runs per event query (query.py)
QUICK_QUERY_RUNS = 5
BANNER = ("Hookyard listening on", "Generated an admin token")
TARGETS = {"vs_bare": 0.5, "vs_handwritten": 3.0, "p99_ms": 15.0}
FLOOD_RATE = 5_000  # bad requests/s on the second source
FLOOD_CONNECTIONS = 100  # enough to hold the rate while each answer takes up to 20 ms
FLOOD_TARGET = 0.80  # valid ingest under the flood keeps at least this share of its rate alone
SAMPLES_PER_S = 20  # hookyard's default rejected_samples_per_second
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"  # each server run: a fresh schema in it
POSTGRES_INGEST = {"pg-1": 1, "pg-2": 2}  # ingest processes sharing one schema
POSTGRES_WORKERS = (1, 2, 3)  # worker processes draining one schema's queue
POSTGRES_TARGET = 15_000  # events/s ingest on PostgreSQL, the target (this 2-core box)


@dataclass
class Result:
    name: str
    requests: int = 0  # responses in the measured window, any status
    ok: int = 0  # 2xx responses
    duration_s: float = 0.0
    events_per_s: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)  # wrk's counts, non-zero only
    wraps: int = 0  # times wrk ran out of distinct requests and started over
    acked: int = 0  # 2xx over warm-up and measured window
    committed: int | None = None  # rows in the database afterwards
    drain_s: float | None = None  # route figure: load end until every delivery succeeded
    delivered_per_s: float | None = None
    flood: dict[str, float] | None = None  # flood.lua's figures, for the flooded run
    rejected_kept: int | None = None  # rows the API returned for source `target` afterwards
    rejected_error: str | None = None  # why the API call failed, when it did
    processes: int = 1  # servers sharing the database, each loaded by its own wrk
    parts: list[dict[str, int]] = field(default_factory=list)  # each wrk's figures, if several
    problems: list[str] = field(default_factory=list)


# --- the pre-signed requests ------------------------------------------------------------------


def build_request(seq: int) -> bytes:
    delivery = str(uuid.uuid4())
    body = build_body(seq, delivery)
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    head = (
        "POST /in/bench HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        "User-Agent: GitHub-Hookshot/bench\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "X-GitHub-Event: push\r\n"
        f"X-GitHub-Delivery: {delivery}\r\n"
        f"X-Hub-Signature-256: sha256={signature}\r\n"
        "\r\n"
    )
    return head.encode() + body


def write_requests(path: Path, count: int) -> int:
    """Write `count` raw requests back to back; all have the same length, which is returned,
    so the Lua side can seek to any slice and split the file without parsing it."""
    record = len(build_request(0))
    with path.open("wb") as out:
        batch: list[bytes] = []
        for seq in range(count):
            raw = build_request(seq)
            assert len(raw) == record, "requests must all have the same length"
            batch.append(raw)
            if len(batch) == 10_000:
                out.write(b"".join(batch))
                batch.clear()
        out.write(b"".join(batch))
    return record


@dataclass
class Pool:
    path: Path
    record: int
    warmup: tuple[int, int]  # (first, count): each phase walks its own slice, so no repeats
    measured: tuple[int, int]
    probe: int  # spare requests (from here to the end) check each server's answer before loading


# --- servers ----------------------------------------------------------------------------------


def hookyard_config(work: Path, sink_port: int | None, target: bool) -> Path:
    config = work / "hookyard.toml"
    text = f'[sources.bench]\nverify = "github"\nsecrets = ["{SECRET}"]\n'
    if target:
        text += f'\n[sources.target]\nverify = "github"\nsecrets = ["{TARGET_SECRET}"]\n'
    if sink_port is not None:
        text += (
            '\n[egress]\nallow = ["127.0.0.0/8"]\n'  # the sink is on this machine
            f'\n[destinations.sink]\nurl = "http://127.0.0.1:{sink_port}/"\n'
            '\n[[routes]]\nsource = "bench"\ndestination = "sink"\n'
        )
    config.write_text(text)
    return config


def server_argv(
    name: str, work: Path, port: int, sink_port: int | None
) -> tuple[list[str], dict[str, str]]:
    if name == "bare":
        module, env = "bare_app:app", {}
    elif name == "handwritten":
        module = "handwritten_app:app"
        env = {"HANDWRITTEN_DB": str(work / "handwritten.db"), "BENCH_SECRET": SECRET}
    else:
        config = hookyard_config(work, sink_port, target=name.startswith("flood"))
        argv = [str(BIN / "hookyard"), "serve", "--config", str(config)]
        argv += ["--listen", f"127.0.0.1:{port}", "--database", f"sqlite:///{work}/bench.db"]
        return argv, {}
    argv = [str(BIN / "uvicorn"), module, "--app-dir", str(BENCH), *UVICORN_FLAGS]
    return [*argv, "--port", str(port)], env


def database(name: str, work: Path) -> Path | None:
    return {"handwritten": work / "handwritten.db", "bare": None}.get(name, work / "bench.db")


def probe(port: int, pool: Pool, spare: int = 0) -> str | None:
    """Send one spare request (servers sharing a database each get their own); return a
    description of the answer unless it is a 2xx."""
    with pool.path.open("rb") as file:
        file.seek((pool.probe + spare) * pool.record)
        raw = file.read(pool.record)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        answer = sock.recv(65536).decode("latin-1")
    status = answer.split(" ", 2)[1] if answer.startswith("HTTP/") else "?"
    return None if status.startswith("2") else answer.strip()


# --- load -------------------------------------------------------------------------------------


def wrk(
    port: int, pool: Pool, part: tuple[int, int], seconds: float, connections: int
) -> dict[str, int]:
    argv = [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency",
        "-s", str(BENCH / "walk.lua"), f"http://127.0.0.1:{port}/in/bench",
        "--", str(pool.path), str(pool.record), str(part[0]), str(part[1]),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    for line in done.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            return dict(json.loads(line[len("WRK_JSON ") :]))
    raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def wrk_each(
    ports: list[int], pool: Pool, part: tuple[int, int], seconds: float, connections: int
) -> list[dict[str, int]]:
    """One wrk per server, all at once: each -t1 with its share of the connections and its own
    share of the slice (servers sharing a database must not see each other's requests, or
    they would be duplicates)."""
    n = len(ports)
    shares = [(part[0] + i * part[1] // n, part[1] // n) for i in range(n)]
    with ThreadPoolExecutor(n) as pool_of_threads:
        runs = [
            pool_of_threads.submit(wrk, port, pool, share, seconds, connections // n)
            for port, share in zip(ports, shares, strict=True)
        ]
        return [run.result() for run in runs]


def combine(parts: list[dict[str, int]]) -> dict[str, int]:
    """Several wrks' figures as one: counts summed, the longest duration, the worst latencies.
    (measure_shared() then replaces the rate with the sum of each wrk's own.)"""
    if len(parts) == 1:
        return parts[0]
    worst = ("duration_us", "p50_us", "p90_us", "p99_us", "max_us", "mean_us")
    return {
        key: max(p[key] for p in parts) if key in worst else sum(p[key] for p in parts)
        for key in parts[0]
    }


def start_flood(port: int, limit_s: float) -> subprocess.Popen[str]:
    """The second wrk: FLOOD_RATE badly signed requests/s to /in/target until stop_flood()
    (or, at the latest, after limit_s)."""
    argv = [
        "wrk", "-t1", f"-c{FLOOD_CONNECTIONS}", f"-d{limit_s:g}s", "--timeout", "10s",
        "-s", str(BENCH / "flood.lua"), f"http://127.0.0.1:{port}/in/target",
        "--", str(FLOOD_RATE), str(BODY_SIZE),
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_flood(proc: subprocess.Popen[str]) -> dict[str, float]:
    proc.send_signal(signal.SIGINT)  # wrk stops, then runs flood.lua's done()
    out, err = proc.communicate(timeout=60)
    for line in out.splitlines():
        if line.startswith("FLOOD_JSON "):
            return dict(json.loads(line[len("FLOOD_JSON ") :]))
    raise RuntimeError(f"flood wrk failed ({proc.returncode}):\n{out}\n{err}")


def rejected_kept(port: int, work: Path) -> int:
    """Rows the rejected log returns for source `target`, read through the API with the admin
    token the server wrote beside its config on first start."""
    token = (work / "hookyard.token").read_text().strip()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/rejected?limit=1000",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        page = json.load(answer)
    return sum(1 for row in page["data"] if row["source"] == "target")


def measure(name: str, pool: Pool, args: argparse.Namespace, scratch: Path) -> Result:
    work = scratch / name  # a fresh directory and database per server
    work.mkdir()
    result = Result(name)
    sink = None
    if name == "hookyard-route":
        sink, sink_port, sink_kind = start_sink(work)
        result.problems.append(f"(info) sink: {sink_kind}")
    else:
        sink_port = None
    port = free_port()
    argv, env = server_argv(name, work, port, sink_port)
    server = start(argv, work, env, port, work / "server.log")
    flood = None
    try:
        answer = probe(port, pool)
        if answer is not None:
            raise RuntimeError(f"{name} refused a signed request:\n{answer}")
        if name == "flood":  # from before the warm-up until the measured run ends
            flood = start_flood(port, WARMUP_S + args.duration + 60)
        warm = wrk(port, pool, pool.warmup, WARMUP_S, args.connections)
        db = database(name, work)
        delivered_before = 0
        if name == "hookyard-route" and db is not None:
            delivered_before = query(db, "SELECT count(*) FROM deliveries WHERE status='succeeded'")
        started = time.monotonic()
        run = wrk(port, pool, pool.measured, args.duration, args.connections)
        if name == "hookyard-route" and db is not None:
            drain(result, db, started, delivered_before)
        if flood is not None:
            result.flood = stop_flood(flood)
            check_flood(result, result.flood, port, work)
    finally:
        if flood is not None and flood.poll() is None:
            flood.kill()
            flood.wait()
        stop(server)
        if sink is not None:
            stop(sink)
    summarise(result, warm, run)
    result.acked += 1  # the probe
    db = database(name, work)
    if db is not None:
        result.committed = query(db, "SELECT count(*) FROM events")
        # Up to one request per connection may commit without its answer reaching wrk.
        if not result.acked <= result.committed <= result.acked + 2 * args.connections:
            result.problems.append(
                f"{result.committed} events committed but {result.acked} acknowledged"
            )
    result.problems += server_output(work, ["server.log"])
    return result


def server_output(work: Path, logs: list[str]) -> list[str]:
    """Anything the servers printed beyond their start-up banner and INFO lines ("database
    schema created ...") is worth a look (tracebacks, warnings...)."""
    problems = []
    for log in logs:
        lines = (work / log).read_text(errors="replace").splitlines()
        unexpected = [
            line
            for line in lines
            if line.strip() and not line.startswith(BANNER) and " INFO " not in line
        ]
        if unexpected:
            where = "" if log == "server.log" else f" ({log})"
            problems.append(f"server output{where}:\n    " + "\n    ".join(unexpected[-30:]))
    return problems


def measure_shared(
    name: str, pool: Pool, args: argparse.Namespace, scratch: Path, db: Database
) -> Result:
    """POSTGRES_INGEST[name] `hookyard serve --roles ingest,api` sharing the database `db`
    (a fresh PostgreSQL schema), each on its own port with its own wrk, all loaded at once."""
    work = scratch / name
    work.mkdir()
    result = Result(name, processes=POSTGRES_INGEST[name])
    config = hookyard_config(work, None, target=False)
    logs = [f"server-{i + 1}.log" for i in range(result.processes)]
    servers: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        for log in logs:  # one after the other: the first creates the schema's tables
            port = free_port()
            argv = [str(BIN / "hookyard"), "serve", "--config", str(config)]
            argv += ["--listen", f"127.0.0.1:{port}", "--database", db.url]
            argv += ["--roles", "ingest,api"]
            servers.append(start(argv, work, {}, port, work / log))
            ports.append(port)
        for spare, port in enumerate(ports):
            answer = probe(port, pool, spare)
            if answer is not None:
                raise RuntimeError(f"{name} refused a signed request:\n{answer}")
        warm = combine(wrk_each(ports, pool, pool.warmup, WARMUP_S, args.connections))
        result.parts = wrk_each(ports, pool, pool.measured, args.duration, args.connections)
    finally:
        for server in servers:
            stop(server)
    summarise(result, warm, combine(result.parts))
    # The rate is each wrk's 2xx over its own window, summed.
    result.events_per_s = sum(
        (part["requests"] - part["status_errors"]) / (part["duration_us"] / 1e6)
        for part in result.parts
    )
    result.acked += result.processes  # the probes
    try:
        result.committed = db.value("SELECT count(*) FROM events")
    finally:
        db.close()
    if not result.acked <= result.committed <= result.acked + 2 * args.connections:
        result.problems.append(
            f"{result.committed} events committed but {result.acked} acknowledged"
        )
    result.problems += server_output(work, logs)
    return result


def check_flood(result: Result, stats: dict[str, float], port: int, work: Path) -> None:
    """The flood was what it claims (rate, all 401); the rejected log stayed bounded."""
    if abs(stats["rate"] - FLOOD_RATE) > 0.05 * FLOOD_RATE:
        result.problems.append(
            f"FLOOD RATE OFF: {stats['rate']:,.0f} bad requests/s achieved, not {FLOOD_RATE:,}"
        )
    errors = {k: stats[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")}
    if stats["status_other"] or any(errors.values()):
        result.problems.append(
            f"flood answers not all 401: {stats['status_other']} others (last "
            f"{stats['last_other_status']}), wrk errors {errors}"
        )
    time.sleep(1)  # the rejected log flushes every 0.5 s
    try:
        result.rejected_kept = rejected_kept(port, work)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        result.rejected_error = repr(exc)
        return
    bound = SAMPLES_PER_S * (stats["duration_us"] / 1e6 + 2)
    if result.rejected_kept > bound:
        result.problems.append(
            f"rejected log kept {result.rejected_kept} rows, more than {SAMPLES_PER_S}/s allows"
        )


def drain(result: Result, db: Path, started: float, before: int) -> None:
    """Wait (bounded) until every delivery has succeeded; record how long it took."""
    load_end = time.monotonic()
    deadline = load_end + DRAIN_TIMEOUT_S
    while True:
        total = query(db, "SELECT count(*) FROM deliveries")
        succeeded = query(db, "SELECT count(*) FROM deliveries WHERE status='succeeded'")
        now = time.monotonic()
        if succeeded >= total or now > deadline:
            break
        time.sleep(0.1)
    if succeeded < total:
        result.problems.append(
            f"only {succeeded} of {total} deliveries succeeded {DRAIN_TIMEOUT_S} s after the load"
        )
    result.drain_s = now - load_end
    result.delivered_per_s = (succeeded - before) / (now - started)


def summarise(result: Result, warm: dict[str, int], run: dict[str, int]) -> None:
    result.requests = run["requests"]
    result.ok = run["requests"] - run["status_errors"]
    result.duration_s = run["duration_us"] / 1e6
    result.events_per_s = result.ok / result.duration_s
    for key in ("p50", "p90", "p99", "max"):
        setattr(result, f"{key}_ms", run[f"{key}_us"] / 1000)
    result.acked = result.ok + warm["requests"] - warm["status_errors"]
    result.wraps = run["wraps"] + warm["wraps"]
    for phase, counts in (("warm-up", warm), ("run", run)):
        for key in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"):
            if counts[key]:
                result.errors[f"{phase} {key}"] = counts[key]
    if result.errors:
        result.problems.append(f"ERRORS: {result.errors}")
    if result.wraps:
        # Only Hookyard treats a repeat as a duplicate; to the baselines it is one more request.
        info = "(info) " if result.name in ("bare", "handwritten") else ""
        result.problems.append(
            f"{info}WRAPPED {result.wraps}x: ran out of distinct requests, so some were repeats "
            "(raise --pool-rate)"
        )


# --- report -----------------------------------------------------------------------------------


def ratio(value: float, base: Result | None) -> str:
    return f"{value / base.events_per_s:.2f}" if base and base.events_per_s else "-"


def flood_summary(results: dict[str, Result]) -> dict[str, object] | None:
    alone, flooded = results.get("flood-alone"), results.get("flood")
    if alone is None or flooded is None or flooded.flood is None:
        return None
    vs_alone = flooded.events_per_s / alone.events_per_s if alone.events_per_s else 0.0
    return {
        "bad_rate_target": FLOOD_RATE,
        "bad_rate_achieved": flooded.flood["rate"],
        "bad_all_401": flooded.flood["status_401"] == flooded.flood["requests"],
        "alone_events_per_s": alone.events_per_s,
        "flooded_events_per_s": flooded.events_per_s,
        "vs_alone": vs_alone,
        "target_vs_alone": FLOOD_TARGET,
        "met": vs_alone >= FLOOD_TARGET,
        "rejections": flooded.flood["status_401"],
        "rejected_kept": flooded.rejected_kept,
        "rejected_error": flooded.rejected_error,
    }


def report_flood(results: dict[str, Result], args: argparse.Namespace) -> None:
    summary = flood_summary(results)
    if summary is None:
        return
    stats = results["flood"].flood or {}
    print(
        f"rejected flood: {FLOOD_RATE:,} bad requests/s on another source, "
        f"{args.connections} connections valid load, {args.duration:g} s"
    )
    print(f"{'':24}{'events/s':>9}{'p50':>10}{'p99':>10}{'vs alone':>11}")
    answers = "all 401" if summary["bad_all_401"] else f"{stats['status_401']:,.0f} were 401"
    for name, note in (
        ("flood-alone", ""),
        ("flood", f"   (flood: {stats['rate']:,.0f} req/s achieved, {answers})"),
    ):
        r = results[name]
        print(
            f"{LABELS[name]:24}{r.events_per_s:>9,.0f}{r.p50_ms:>7.1f} ms{r.p99_ms:>7.1f} ms"
            f"{ratio(r.events_per_s, results['flood-alone']):>11}{note}"
        )
    print(f"target: >= {FLOOD_TARGET:.2f} of alone: {'met' if summary['met'] else 'MISSED'}")
    if summary["rejected_kept"] is None:
        print(f"rejected log: could not read it through the API: {summary['rejected_error']}")
    else:
        print(
            f"rejected log: {summary['rejected_kept']:,} rows kept of "
            f"{summary['rejections']:,} rejections"
        )


@dataclass
class PostgresBlock:
    ingest: dict[str, Result] = field(default_factory=dict)  # pg-sqlite (the baseline), pg-1, pg-2
    drains: list[delivery.Drain] = field(default_factory=list)  # SQLite first, the baseline
    problems: list[str] = field(default_factory=list)  # the block's own (PostgreSQL unreachable)


def run_postgres(pool: Pool, args: argparse.Namespace, scratch: Path) -> PostgresBlock:
    """Ingest on SQLite, then on one and two processes sharing a fresh PostgreSQL schema; then
    the queue drains (delivery.drain): SQLite, then PostgreSQL with 1, 2, 3 worker processes.
    Between steps (none of the block's servers running), it counts other Hookyard processes'
    connections to the PostgreSQL server."""
    block = PostgresBlock()
    try:
        with postgres_schema(args.postgres_url):  # reachable, and we may create schemas
            pass
    except Exception as exc:  # psycopg missing, server down, no rights: skip, say why
        block.problems.append(f"PostgreSQL at {args.postgres_url} unusable, block skipped: {exc}")
        return block
    others = [neighbours(args.postgres_url)]
    # A server that fails (a traceback at start, a refused request) ends its row, not the run:
    # the other rows' and blocks' figures are still reported.
    for name in ("pg-sqlite", *POSTGRES_INGEST):
        print(f"measuring hookyard, {LABELS[name]} ...", file=sys.stderr)
        try:
            if name == "pg-sqlite":
                block.ingest[name] = measure(name, pool, args, scratch)
            else:
                with postgres_schema(args.postgres_url) as db:
                    block.ingest[name] = measure_shared(name, pool, args, scratch, db)
        except Exception as exc:
            block.problems.append(f"{LABELS[name]} failed: {exc}")
        others.append(neighbours(args.postgres_url))
    print(f"building {args.queued:,} bodies ...", file=sys.stderr)
    bodies = [build_body(seq, str(uuid.uuid4())) for seq in range(args.queued)]
    for workers in (0, *POSTGRES_WORKERS):  # 0: the SQLite drain, one process
        label = "SQLite" if not workers else f"PostgreSQL, {workers} worker process(es)"
        print(f"measuring {label} drain of {args.queued:,} deliveries ...", file=sys.stderr)
        work = scratch / f"pg-drain-{workers}"
        try:
            if not workers:
                db = Database.sqlite(work / "bench.db")
                block.drains.append(delivery.drain(work, db, bodies))
            else:
                with postgres_schema(args.postgres_url) as db:
                    block.drains.append(delivery.drain(work, db, bodies, workers))
        except Exception as exc:  # drain() reports its own; this is the schema's set-up
            block.problems.append(f"{label} drain failed: {exc}")
        others.append(neighbours(args.postgres_url))
    if any(count for count, _ in others):
        seen = ", ".join(str(count) if count >= 0 else "?" for count, _ in others)
        block.problems.append(
            "other Hookyard processes were connected to the PostgreSQL server between this "
            f"block's steps ({seen} connections): they shared the machine with these figures, "
            "and a test suite's clean-up may have ended this block's connections"
        )
    if len({started for _, started in others}) > 1:
        block.problems.append(
            "the PostgreSQL server restarted during the block (its start time changed "
            "between steps): someone else restarted it"
        )
    return block


def neighbours(url: str) -> tuple[int, str]:
    """How many connections Hookyard processes hold on the PostgreSQL server (between the
    block's steps, when none of its own servers runs, they are all someone else's: a test
    suite, say), and when the server started; (-1, "?") if that cannot be read."""
    import psycopg

    sql = (
        "SELECT count(*), pg_postmaster_start_time()::text FROM pg_stat_activity"
        " WHERE application_name LIKE 'hookyard %'"
    )
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            count, started = conn.execute(sql).fetchone()
            return int(count), str(started)
    except psycopg.Error:
        return -1, "?"


def postgres_summary(block: PostgresBlock | None) -> dict[str, object] | None:
    if block is None:
        return None
    base = block.ingest.get("pg-sqlite")
    best = max(
        (r.events_per_s for name, r in block.ingest.items() if name != "pg-sqlite"), default=None
    )
    return {
        "ingest": {name: asdict(r) for name, r in block.ingest.items()},
        "ingest_vs_sqlite": {
            name: r.events_per_s / base.events_per_s
            for name, r in block.ingest.items()
            if base is not None and base.events_per_s
        },
        "target_events_per_s": POSTGRES_TARGET,
        "best_postgres_events_per_s": best,
        "target_met": best is not None and best >= POSTGRES_TARGET,
        "drains": [asdict(d) for d in block.drains],
        "problems": block.problems,
    }


def report_postgres(block: PostgresBlock, args: argparse.Namespace) -> None:
    for problem in block.problems:
        print(f"!!! postgres block: {problem}")
    if block.ingest:
        print(
            f"postgres block: ingest, 1 KB signed JSON, {args.connections} connections in all, "
            f"{args.duration:g} s each"
        )
        print(f"{'':26}{'events/s':>9}{'p50':>10}{'p99':>10}{'vs SQLite':>11}")
    base = block.ingest.get("pg-sqlite")
    for name, r in block.ingest.items():
        note = ""
        if name != "pg-sqlite":
            met = "met" if r.events_per_s >= POSTGRES_TARGET else "MISSED"
            note = f"   target >= {POSTGRES_TARGET:,}: {met}"
        print(
            f"{LABELS[name]:26}{r.events_per_s:>9,.0f}{r.p50_ms:>7.1f} ms{r.p99_ms:>7.1f} ms"
            f"{ratio(r.events_per_s, base):>11}{note}"
        )
    shared = [r for r in block.ingest.values() if r.processes > 1]
    for r in shared:
        rates = " + ".join(
            f"{(p['requests'] - p['status_errors']) / (p['duration_us'] / 1e6):,.0f}"
            for p in r.parts
        )
        print(
            f"  ({LABELS[r.name]}: one wrk -t1 -c{args.connections // r.processes} each, "
            f"{rates} events/s summed; p50/p99 the worse wrk's)"
        )
    if block.ingest:
        print("  (SQLite: one process, every role; PostgreSQL: --roles ingest,api, fresh schema)")
    delivery.report_drains(block.drains)
    for name, r in block.ingest.items():
        for problem in r.problems:
            loud = not problem.startswith("(info)")
            print(f"{'!!! ' if loud else ''}{LABELS[name]}: {problem}")


def report(
    results: dict[str, Result],
    args: argparse.Namespace,
    info: dict[str, str],
    delivered: delivery.DeliveryResult | None,
    queried: event_queries.QueryResult | None,
    postgres: PostgresBlock | None,
    polled: polling.PollingResult | None = None,
    relayed: relay.RelayResult | None = None,
    soaked: soak.SoakResult | None = None,
    brokered: brokers.BrokersResult | None = None,
) -> None:
    table = {name: r for name, r in results.items() if not name.startswith("flood")}
    if table:
        print(
            f"ingest, 1 KB signed JSON, {args.connections} connections, {args.duration:g} s each, "
            "1 process"
        )
        print(f"{'':24}{'events/s':>9}{'p50':>10}{'p99':>10}{'vs bare':>10}{'vs hand-written':>17}")
    bare, hand = results.get("bare"), results.get("handwritten")
    for name, r in table.items():
        print(
            f"{LABELS[name]:24}{r.events_per_s:>9,.0f}{r.p50_ms:>7.1f} ms{r.p99_ms:>7.1f} ms"
            f"{ratio(r.events_per_s, bare):>10}{ratio(r.events_per_s, hand):>17}"
        )
    route = results.get("hookyard-route")
    if route is not None and route.drain_s is not None:
        print(
            f"  route figure: deliveries to the sink finished {route.drain_s:.1f} s after the load "
            f"stopped; {route.delivered_per_s:,.0f} deliveries/s over the run"
        )
    ours = results.get("hookyard")
    if ours is not None and bare is not None and hand is not None:
        rate = ours.events_per_s
        checks = [
            ("vs bare", rate / bare.events_per_s, ">=", TARGETS["vs_bare"]),
            ("vs hand-written", rate / hand.events_per_s, ">=", TARGETS["vs_handwritten"]),
            ("p99 ms", ours.p99_ms, "<=", TARGETS["p99_ms"]),
        ]
        print(
            "targets: "
            + "; ".join(
                f"{label} {value:.2f} (target {op} {target:g}) "
                + ("ok" if (value >= target if op == ">=" else value <= target) else "MISSED")
                for label, value, op, target in checks
            )
        )
    report_flood(results, args)
    if delivered is not None:
        delivery.report(delivered)
    if queried is not None:
        event_queries.report(queried)
    if postgres is not None:
        report_postgres(postgres, args)
    if polled is not None:
        polling.report(polled)
    if relayed is not None:
        relay.report(relayed)
    if soaked is not None:
        soak.report(soaked)
    if brokered is not None:
        brokers.report(brokered)
    print(
        f"machine: {info['nproc']} cores, {info['cpu']}, Python {info['python']}, "
        f"Linux {info['kernel']}, {info['wrk']}"
    )
    print(f"command: {os.environ.get('BENCH_COMMAND', ' '.join(sys.argv))}")
    for name, r in results.items():
        for problem in r.problems:
            loud = not problem.startswith("(info)")
            print(f"{'!!! ' if loud else ''}{LABELS[name]}: {problem}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--duration", type=float, default=10,
        help="seconds per ingest server, and of the delivery open loop",
    )  # fmt: skip
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--quick", action="store_true",
        help=f"3 s runs, {QUICK_QUEUED:,} queued deliveries, {QUICK_QUERY_RUNS} runs per query",
    )  # fmt: skip
    parser.add_argument("--only", action="append", choices=PHASES, help="repeatable")
    parser.add_argument(
        "--pool-rate", type=int, default=40_000,
        help="requests/s the distinct-request pool is sized for (default 40000)",
    )  # fmt: skip
    parser.add_argument(
        "--queued", type=int, default=None,
        help=f"deliveries the delivery drain empties (default {QUEUED:,})",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=int, default=1_000,
        help="events/s of the delivery open loop (default 1000)",
    )  # fmt: skip
    parser.add_argument(
        "--postgres-url", default=POSTGRES_URL,
        help=f"PostgreSQL database of the postgres block, a fresh schema per server run "
        f"(default {POSTGRES_URL})",
    )  # fmt: skip
    parser.add_argument(
        "--events", type=int, default=event_queries.EVENTS,
        help=f"events in the query phase's database (default {event_queries.EVENTS:,})",
    )  # fmt: skip
    soak.add_arguments(parser)
    args = parser.parse_args()
    if args.quick:
        args.duration = 3
    if args.queued is None:
        args.queued = QUICK_QUEUED if args.quick else QUEUED
    return args


def build_pool(args: argparse.Namespace, scratch: Path) -> Pool:
    """The pre-signed requests every wrk-driven phase walks (the same slices for each server;
    servers sharing a database split them)."""
    warm_n = WARMUP_S * args.pool_rate
    run_n = math.ceil(args.duration * args.pool_rate)
    spares = max(POSTGRES_INGEST.values())  # a probe per server sharing a database
    print(f"generating {warm_n + run_n + spares:,} signed requests ...", file=sys.stderr)
    path = scratch / "requests.bin"
    record = write_requests(path, warm_n + run_n + spares)
    return Pool(path, record, (0, warm_n), (warm_n, run_n), warm_n + run_n)


def run_ingest(
    names: list[str], pool: Pool, args: argparse.Namespace, scratch: Path
) -> dict[str, Result]:
    """The wrk-driven phases against one server each."""
    results: dict[str, Result] = {}
    for name in names:
        print(f"measuring {LABELS[name]} ...", file=sys.stderr)
        results[name] = measure(name, pool, args, scratch)
    return results


def main() -> int:
    args = parse_args()
    phases = args.only or DEFAULT_PHASES
    names = [n for p in phases if p not in NOT_WRK for n in FLOOD_NAMES.get(p, [p])]

    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    scratch = RESULTS / f".scratch-{stamp}"
    scratch.mkdir()
    delivered = queried = postgres = polled = relayed = soaked = brokered = None
    try:
        pool = build_pool(args, scratch) if names or "postgres" in phases else None
        results = run_ingest(names, pool, args, scratch) if pool is not None else {}
        if "delivery" in phases:
            delivered = delivery.run(args.queued, args.rate, args.duration, scratch)
        if "query" in phases:
            queried = event_queries.run(args.events, QUICK_QUERY_RUNS if args.quick else QUERY_RUNS)
        if "postgres" in phases and pool is not None:
            postgres = run_postgres(pool, args, scratch)
        if "polling" in phases:
            polled = polling.run(polling.ITEMS // 10 if args.quick else polling.ITEMS)
        if "relay" in phases:
            relayed = relay.run(relay.QUEUED // 4 if args.quick else relay.QUEUED)
        if "brokers" in phases:
            brokered = brokers.run(brokers.QUEUED // 4 if args.quick else brokers.QUEUED)
        if "soak" in phases:
            soaked = soak.run_from(args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    info = machine()
    report(results, args, info, delivered, queried, postgres, polled, relayed, soaked, brokered)
    out = RESULTS / f"{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "command": os.environ.get("BENCH_COMMAND", " ".join(sys.argv)),
                "machine": info,
                "connections": args.connections,
                "duration_s": args.duration,
                "body_bytes": BODY_SIZE,
                "results": {name: asdict(r) for name, r in results.items()},
                "flood": flood_summary(results),
                "delivery": asdict(delivered) if delivered is not None else None,
                "query": asdict(queried) if queried is not None else None,
                "postgres": postgres_summary(postgres),
                "polling": asdict(polled) if polled is not None else None,
                "relay": asdict(relayed) if relayed is not None else None,
                "soak": asdict(soaked) if soaked is not None else None,
                "brokers": asdict(brokered) if brokered is not None else None,
            },
            indent=2,
        )
    )
    print(f"results: {out.relative_to(ROOT)}")
    loud = [p for r in results.values() for p in r.problems if not p.startswith("(info)")]
    if delivered is not None:
        loud += delivered.problems
    if queried is not None:
        loud += queried.problems
    if polled is not None:
        loud += polled.problems
    if relayed is not None:
        loud += relayed.problems
    if soaked is not None:
        loud += soaked.problems
    if brokered is not None:
        loud += brokered.problems
    if postgres is not None:
        loud += postgres.problems + [p for d in postgres.drains for p in d.problems]
        loud += [
            p for r in postgres.ingest.values() for p in r.problems if not p.startswith("(info)")
        ]
    return 1 if loud else 0


if __name__ == "__main__":
    sys.exit(main())
