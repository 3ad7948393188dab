"""Soak benchmark: a steady load for a long time with short retention, to show that the disk
and the memory stay flat once the first retention period has passed, and that sweeps do not
slow ingest down.

One `hookyard serve` (SQLite, or PostgreSQL with `--soak-backend postgresql`: a fresh schema,
events partitioned by a third of the retention) with one source routed to a sink (nginx when
installed), and `[retention]` of a few minutes for everything, swept every `--soak-interval`
seconds. An open-
loop generator posts distinct 1 KB JSON events at `--soak-rate` per second (default 1,000) for
`--soak-minutes` (default 30). Every `--soak-sample` seconds it records the database's size on
disk (file and WAL), the server's resident memory, and ingest latency; at the end it prints them
over time, and as ratios: the end of the run against the first sample after the first retention
period, and ingest latency while a sweep ran against the latency between sweeps.

Run it through bench/run (`bench/run --only soak --soak-minutes 5`); `python bench/soak.py`
runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import uvloop
from common import BIN, Database, build_body, free_port, postgres_schema, start, start_sink, stop

from hookyard.store.retention import POSTGRES_SIZE_SQL

MINUTES = 30.0
RATE = 1000
RETENTION_S = 180
INTERVAL_S = 30
SAMPLE_S = 30.0
MAX_IN_FLIGHT = 512  # beyond this the server is not keeping up: counted, not queued
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"  # the run gets a schema of its own


@dataclass
class Sample:
    at_s: float  # since the load began
    sent_per_s: float
    p50_ms: float
    p99_ms: float
    database_mb: float  # file + WAL
    rss_mb: float
    stored_events: int


@dataclass
class SoakResult:
    minutes: float
    rate: int
    retention_s: int
    interval_s: int
    backend: str = "SQLite"
    samples: list[Sample] = field(default_factory=list)
    sweeps: list[tuple[float, float, dict[str, int]]] = field(default_factory=list)
    p99_sweeping_ms: float = 0.0
    p99_between_ms: float = 0.0
    failed: int = 0
    behind: int = 0
    problems: list[str] = field(default_factory=list)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _database_mb(database: Database) -> float:
    if database.path is not None:
        files = [database.path, database.path.with_name(database.path.name + "-wal")]
        return sum(f.stat().st_size for f in files if f.exists()) / 1e6
    return database.value(POSTGRES_SIZE_SQL) / 1e6


def _p(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _load(
    url: str, result: SoakResult, seconds: float, latencies: list[tuple[float, float]]
) -> None:
    """Post at `result.rate` per second, open loop, 10 ms ticks; (send time, seconds) each."""
    in_flight = 0
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    timeout = aiohttp.ClientTimeout(total=30)
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post(seq: int) -> None:
            nonlocal in_flight
            in_flight += 1
            sent = time.monotonic()
            try:
                async with session.post(url, data=build_body(seq, f"soak-{seq}")) as response:
                    await response.read()
                    if response.status != 200:
                        result.failed += 1
                    else:
                        latencies.append((sent, time.monotonic() - sent))
            except (aiohttp.ClientError, TimeoutError):
                result.failed += 1
            finally:
                in_flight -= 1

        started = time.monotonic()
        seq = 0
        tick = 0.01
        while (now := time.monotonic()) - started < seconds:
            due = int((now - started) * result.rate)
            while seq < due:
                if in_flight >= MAX_IN_FLIGHT:
                    result.behind += due - seq
                    seq = due
                    break
                task = asyncio.create_task(post(seq))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                seq += 1
            await asyncio.sleep(tick)
        if tasks:
            await asyncio.wait(tasks, timeout=30)


async def _sample(
    db: Database,
    pid: int,
    every: float,
    seconds: float,
    latencies: list[tuple[float, float]],
    result: SoakResult,
) -> None:
    started = time.monotonic()
    taken = 0
    while time.monotonic() - started < seconds:
        await asyncio.sleep(every)
        window = [lat for sent, lat in latencies[taken:]]
        count = len(latencies) - taken
        taken = len(latencies)
        usage = db.rows("SELECT usage FROM sweeps ORDER BY id DESC LIMIT 1")
        stored = 0
        if usage and usage[0][0]:
            stored = sum(s["events"] for s in json.loads(str(usage[0][0]))["sources"].values())
        sample = Sample(
            at_s=round(time.monotonic() - started, 1),
            sent_per_s=count / every,
            p50_ms=_p(window, 0.5) * 1000,
            p99_ms=_p(window, 0.99) * 1000,
            database_mb=_database_mb(db),
            rss_mb=_rss_mb(pid),
            stored_events=stored,
        )
        result.samples.append(sample)
        print(
            f"soak: {sample.at_s:>6.0f} s  {sample.sent_per_s:>6.0f}/s"
            f"  p99 {sample.p99_ms:>6.1f} ms  db {sample.database_mb:>7.1f} MB"
            f"  rss {sample.rss_mb:>6.1f} MB"
            f"  stored {sample.stored_events:,}",
            file=sys.stderr,
        )


def run(
    minutes: float = MINUTES,
    rate: int = RATE,
    retention_s: int = RETENTION_S,
    interval_s: int = INTERVAL_S,
    sample_s: float = SAMPLE_S,
    backend: str = "sqlite",
    postgres_url: str = POSTGRES_URL,
) -> SoakResult:
    result = SoakResult(minutes, rate, retention_s, interval_s)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hookyard-bench-soak-")))
        if backend == "postgresql":
            db = stack.enter_context(postgres_schema(postgres_url))
        else:
            db = Database.sqlite(work / "hookyard.db")
        result.backend = db.backend
        sink, sink_port, _ = start_sink(work)
        ages = f'"{retention_s}s"'
        (work / "hookyard.toml").write_text(
            f'[server]\ndatabase = "{db.url}"\n'
            '\n[sources.bench]\nverify = "none"\n'
            f'\n[destinations.sink]\nurl = "http://127.0.0.1:{sink_port}/"\n'
            '\n[egress]\nallow = ["127.0.0.0/8"]\n'
            f"\n[retention]\nevents = {ages}\npayloads = {ages}\nattempts = {ages}\n"
            f'rejected = {ages}\ninterval = "{interval_s}s"\n'
            f'partition_span = "{max(1, retention_s // 3)}s"\n'
            '\n[[routes]]\nsource = "bench"\ndestination = "sink"\n'
        )
        port = free_port()
        argv = [str(BIN / "hookyard"), "serve", "--config", str(work / "hookyard.toml")]
        argv += ["--listen", f"127.0.0.1:{port}"]
        server = start(argv, work, {}, port, work / "server.log")
        latencies: list[tuple[float, float]] = []
        try:
            seconds = minutes * 60
            origin = time.monotonic()
            wall = time.time()

            async def both() -> None:
                await asyncio.gather(
                    _load(f"http://127.0.0.1:{port}/in/bench", result, seconds, latencies),
                    _sample(db, server.pid, sample_s, seconds, latencies, result),
                )

            uvloop.run(both())
            for started, finished, removed in db.rows(
                "SELECT started_at, finished_at, removed FROM sweeps ORDER BY id"
            ):
                begin = float(started) - wall + origin  # on the monotonic clock of `latencies`
                end = float(finished) - wall + origin
                result.sweeps.append((begin - origin, end - begin, json.loads(str(removed))))
        finally:
            stop(server)
            stop(sink)
            db.close()  # before the schema is dropped
        spans = [(origin + at, origin + at + length) for at, length, _ in result.sweeps]
        during = [lat for sent, lat in latencies if any(a <= sent <= b for a, b in spans)]
        between = [lat for sent, lat in latencies if not any(a <= sent <= b for a, b in spans)]
        result.p99_sweeping_ms = _p(during, 0.99) * 1000
        result.p99_between_ms = _p(between, 0.99) * 1000
        if result.failed:
            result.problems.append(f"{result.failed:,} requests failed")
        if result.behind:
            result.problems.append(f"{result.behind:,} requests not sent: the server fell behind")
    return result


def report(result: SoakResult) -> None:
    print(
        f"soak: {result.minutes:g} min at {result.rate:,} events/s (1 KB JSON, {result.backend}), "
        f"retention "
        f"{result.retention_s} s for events, payloads, attempts and rejected, a sweep every "
        f"{result.interval_s} s"
    )
    print(
        f"{'t (s)':>7}{'sent/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'db MB':>9}{'rss MB':>8}"
        f"{'stored':>10}"
    )
    for s in result.samples:
        print(
            f"{s.at_s:>7.0f}{s.sent_per_s:>8.0f}{s.p50_ms:>8.1f}{s.p99_ms:>8.1f}"
            f"{s.database_mb:>9.1f}{s.rss_mb:>8.1f}{s.stored_events:>10,}"
        )
    steady = [s for s in result.samples if s.at_s >= result.retention_s + result.interval_s]
    if len(steady) >= 2:
        first, last = steady[0], steady[-1]
        disk = [s.database_mb for s in steady]
        rss = [s.rss_mb for s in steady]
        print(
            f"after the first retention period ({len(steady)} samples): disk end/start "
            f"{last.database_mb / first.database_mb:.2f}x (max/min {max(disk) / min(disk):.2f}x), "
            f"memory end/start {last.rss_mb / first.rss_mb:.2f}x "
            f"(max/min {max(rss) / min(rss):.2f}x)"
        )
    else:
        print("the run was too short to pass the first retention period: no steady-state figures")
    if result.sweeps:
        lengths = [length for _, length, _ in result.sweeps]
        removed = sum(r.get("events", 0) for _, _, r in result.sweeps)
        dropped = sum(r.get("partitions", 0) for _, _, r in result.sweeps)
        print(
            f"{len(result.sweeps)} sweeps, {statistics.median(lengths):.2f} s median, "
            f"{max(lengths):.2f} s longest; {removed:,} events removed"
            + (f", {dropped} partitions dropped whole" if dropped else "")
        )
    if result.p99_between_ms:
        print(
            f"ingest p99 while sweeping {result.p99_sweeping_ms:.1f} ms, between sweeps "
            f"{result.p99_between_ms:.1f} ms: {result.p99_sweeping_ms / result.p99_between_ms:.2f}x"
        )
    for problem in result.problems:
        print(f"!!! soak: {problem}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--soak-minutes", type=float, default=MINUTES, help="length of the soak run"
    )
    parser.add_argument("--soak-rate", type=int, default=RATE, help="events per second")
    parser.add_argument("--soak-retention", type=int, default=RETENTION_S, help="seconds kept")
    parser.add_argument(
        "--soak-interval", type=int, default=INTERVAL_S, help="seconds between sweeps"
    )
    parser.add_argument(
        "--soak-sample", type=float, default=SAMPLE_S, help="seconds between samples"
    )
    parser.add_argument(
        "--soak-backend",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="where the server keeps its data (postgresql: a fresh schema in --postgres-url)",
    )


def run_from(args: argparse.Namespace) -> SoakResult:
    return run(
        args.soak_minutes,
        args.soak_rate,
        args.soak_retention,
        args.soak_interval,
        args.soak_sample,
        args.soak_backend,
        getattr(args, "postgres_url", POSTGRES_URL),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    outcome = run_from(parser.parse_args())
    report(outcome)
    print(json.dumps(asdict(outcome)), file=sys.stderr)
    sys.exit(1 if outcome.problems else 0)
