"""Relay benchmark: a queue drained through `hookyard listen` clients next to the same queue
delivered directly by the worker (the delivery block's drain), in the same run.

Each drain: a fresh `hookyard serve` (SQLite) with one destination `sink`, paused, filled with
distinct 1 KB events, then resumed; the clock runs from the resume call until every delivery
has succeeded. Direct: the destination has the sink's URL and the worker posts. Relay: the
destination is `relay = true` and N `hookyard listen sink --forward <sink>` processes (4 streams
of 50 each) receive deliveries over event streams (`--transport sse`, the default) or long polls
(`poll`), post to the same sink and report. Run it through bench/run (`bench/run
--only relay`); `python bench/relay.py` runs it alone.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import uvloop
from common import BIN, Database, build_body, start_sink, stop
from delivery import (
    CONCURRENCY,
    FILL_CONCURRENCY,
    LOAD_LIMIT_S,
    admin,
    drain,
    not_all_ok,
    post_many,
    start_hookyard,
    wait_succeeded,
)

QUEUED = 20_000
RUNS = (("sse", 1), ("poll", 1), ("sse", 3))  # (transport, clients)
TARGET = 0.5  # the relay reaches at least half of direct delivery


@dataclass
class RelayDrain:
    label: str
    clients: int
    transport: str = ""
    seconds: float = 0.0
    per_s: float = 0.0


@dataclass
class RelayResult:
    queued: int
    direct: RelayDrain | None = None
    relayed: list[RelayDrain] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def relay_drain(
    work: Path, bodies: list[bytes], transport: str, clients: int, result: RelayResult
) -> RelayDrain:
    label = f"relay {transport}, {clients} client{'s' if clients > 1 else ''}"
    measured = RelayDrain(label, clients, transport)
    work.mkdir()
    sink, sink_port, _ = start_sink(work)
    (work / "hookyard.toml").write_text(
        '[sources.bench]\nverify = "none"\n'
        f"\n[destinations.sink]\nrelay = true\nconcurrency = {CONCURRENCY}\n"
        '\n[[routes]]\nsource = "bench"\ndestination = "sink"\n'
    )
    db = Database.sqlite(work / "hookyard.db")
    listeners: list[subprocess.Popen[bytes]] = []
    server = None
    try:
        server, port = start_hookyard(work, sink_port, db)
        admin(port, work, "pause")
        headers = [{"content-type": "application/json"}] * len(bodies)
        _, answers = uvloop.run(
            post_many(f"http://127.0.0.1:{port}/in/bench", bodies, headers, FILL_CONCURRENCY)
        )
        result.problems += not_all_ok(f"{label}: filling the queue", answers, len(bodies))
        token = (work / "hookyard.token").read_text().strip()
        for n in range(clients):
            with (work / f"listen-{n}.log").open("wb") as log:
                listeners.append(
                    subprocess.Popen(
                        [
                            str(BIN / "hookyard"), "listen", "sink",
                            "--forward", f"http://127.0.0.1:{sink_port}/",
                            "--url", f"http://127.0.0.1:{port}", "--token", token,
                            "--streams", "4", "--max", "50", "--transport", transport,
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )  # fmt: skip
        time.sleep(1.0)  # connected, waiting (the destination is paused)
        since = time.monotonic()
        admin(port, work, "resume")
        done, elapsed = wait_succeeded(db, len(bodies), since, LOAD_LIMIT_S)
        measured.seconds, measured.per_s = elapsed, done / elapsed
        if done < len(bodies):
            result.problems.append(f"{label}: only {done:,} of {len(bodies):,} succeeded")
    finally:
        for listener in listeners:
            stop(listener)
        if server is not None:
            stop(server)
        stop(sink)
        db.close()
    return measured


def run(queued: int = QUEUED) -> RelayResult:
    result = RelayResult(queued)
    bodies = [build_body(n, f"relay-{n}") for n in range(queued)]
    with tempfile.TemporaryDirectory(prefix="hookyard-bench-relay-") as scratch:
        work = Path(scratch)
        print(f"relay: direct drain of {queued:,} ...", file=sys.stderr)
        direct = drain(work / "direct", Database.sqlite(work / "direct.db"), bodies)
        result.problems += direct.problems
        result.direct = RelayDrain(
            "direct (worker)", 0, seconds=direct.drain_s, per_s=direct.drain_per_s
        )
        for transport, clients in RUNS:
            print(f"relay: {transport}, {clients} client(s) ...", file=sys.stderr)
            folder = work / f"relay-{transport}-{clients}"
            result.relayed.append(relay_drain(folder, bodies, transport, clients, result))
    return result


def report(result: RelayResult) -> None:
    print(f"relay drain, 1 KB JSON to the sink, {result.queued:,} queued, SQLite, 1 server")
    print(f"{'':28}{'deliveries/s':>13}{'time':>9}{'vs direct':>11}")
    direct = result.direct
    rows = ([direct] if direct else []) + result.relayed
    for row in rows:
        ratio = row.per_s / direct.per_s if direct and direct.per_s else 0.0
        verdict = ""
        if row is not direct:
            verdict = f"   target >= {TARGET:g}: {'ok' if ratio >= TARGET else 'MISSED'}"
        print(f"{row.label:28}{row.per_s:>13,.0f}{row.seconds:>7.1f} s{ratio:>11.2f}{verdict}")
    for problem in result.problems:
        print(f"!!! relay: {problem}")


if __name__ == "__main__":
    outcome = run(int(sys.argv[1]) if len(sys.argv) > 1 else QUEUED)
    report(outcome)
    print(asdict(outcome), file=sys.stderr)
    sys.exit(1 if outcome.problems else 0)
