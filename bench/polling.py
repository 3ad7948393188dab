"""Polling benchmark: 100,000 items (1,000 pages) of the provider simulator, 1% changed.

For each change-detection mode (cursor, hash), a fresh SQLite database and three processes in
turn: a first poll that records every item (initial = "skip"), 1% of the items updated through
the simulator's control API, then the measured poll. Each poll runs in a process of its own
(`hookyard` with only the poller role), so its peak memory is its own: VmHWM minus the resident
size before the poll started. Next to each measured poll, a bare client loop (aiohttp, orjson,
nothing stored) fetches the same pages from the same first URL: the ceiling. The figures are
ratios against that loop, timed in the same run.

Run it through bench/run (`bench/run --only polling`), which calls run() and report() from
ingest.py; `python bench/polling.py` runs it alone.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import BIN, free_port, start, stop

ITEMS = 100_000
PAGE = 100
CHANGED = 0.01
MODES = ("cursor", "hash")
HEAP_TARGET_MB = 8.0  # cursor mode: a page's worth of objects, whatever the item count


@dataclass
class Pass:
    seconds: float
    memory_mb: float  # peak resident growth during the pass (SQLite's page cache included)
    pages: int = 0
    items: int = 0
    emitted: int = 0
    heap_mb: float | None = None  # peak of Python's allocations, in a traced run of the pass


@dataclass
class ModeResult:
    mode: str
    first: Pass  # the recording poll over every item
    measured: Pass  # the poll after 1% changed
    bare: Pass  # the bare client loop over the measured poll's pages


@dataclass
class PollingResult:
    items: int
    page: int
    changed: int
    modes: list[ModeResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def memory_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


# -- the child processes ------------------------------------------------------------------------


def serve_simulator(port: int, items: int) -> None:
    """The provider: items last updated over the past day, so a cursor poll's lookback window
    does not reach them; updates made during the run are new."""
    from hookyard.simulator import Simulator, SimulatorOptions

    async def main() -> None:
        sim = Simulator(SimulatorOptions(page_size=PAGE, etag=True))
        start = time.time() - 86400
        for step in range(0, items, 10):  # spread evenly over the day, ten per timestamp
            sim.set_time(start + step * 86400 / items)
            sim.seed(min(10, items - step))
        sim.set_time(None)
        await sim.start(port=port)
        await asyncio.Event().wait()

    asyncio.run(main())


def poll_once(config: Path, traced: bool) -> None:
    """One poll of the `items` source, in this process; prints a JSON Pass. Traced: also the
    peak of Python's own allocations during the poll (tracemalloc; slower)."""
    from hookyard.config import load_config
    from hookyard.runtime import Service

    async def main() -> dict[str, Any]:
        settings, base_dir = load_config(config)
        service = Service(settings, base_dir)
        state = await service.start()
        before = memory_kb("VmRSS")
        store = state.store
        assert service.pollers is not None
        [source] = service.gateway.sources.values()
        assert source.api is not None and source.poll is not None
        jobs = await store.rest_jobs("items")
        checkpoint = json.loads(jobs[0]["checkpoint"]) if jobs and jobs[0]["checkpoint"] else {}
        checked, emitted = (jobs[0]["checked"], jobs[0]["emitted"]) if jobs else (0, 0)
        since = checkpoint.get("since")
        first_url = source.api.first_url(
            None
            if since is None or source.poll.detect != "cursor"
            else since - source.poll.lookback
        )
        calls_before = sum(c["calls"] for c in await store.api_calls("items", "0000-00-00"))
        if traced:
            tracemalloc.start()
        await store.schedule_rest_job("items", "poll")
        state.rest_ready.set()
        done = None
        while done is None:
            await asyncio.sleep(0.02)
            [row] = await store.rest_jobs("items")
            if row["last_success_at"] and row["last_success_at"] >= row["last_run_at"]:
                done = row
            elif row["last_error"]:
                raise SystemExit(f"poll failed: {row['last_error']}")
        heap = tracemalloc.get_traced_memory()[1] / 2**20 if traced else None
        tracemalloc.stop()
        calls = await store.api_calls("items", "0000-00-00")
        await service.stop()
        return {
            "seconds": done["last_success_at"] - done["last_run_at"],
            "memory_mb": (memory_kb("VmHWM") - before) / 1024,
            "pages": sum(c["calls"] for c in calls) - calls_before,
            "items": done["checked"] - checked,
            "emitted": done["emitted"] - emitted,
            "first_url": first_url,
            "heap_mb": heap,
        }

    print(json.dumps(asyncio.run(main())))


def bare_loop(first_url: str) -> None:
    """The ceiling: fetch and parse the same pages, store nothing; prints a JSON Pass."""
    import aiohttp
    import orjson
    from yarl import URL

    async def main() -> dict[str, Any]:
        before = memory_kb("VmRSS")
        pages = items = 0
        started = time.perf_counter()
        async with aiohttp.ClientSession() as session:
            url: str | None = first_url
            while url is not None:
                async with session.get(url) as response:
                    document = orjson.loads(await response.read())
                pages += 1
                items += len(document["data"])
                cursor = document.get("next_cursor")
                url = str(URL(url).update_query(cursor=cursor)) if cursor else None
        return {
            "seconds": time.perf_counter() - started,
            "memory_mb": (memory_kb("VmHWM") - before) / 1024,
            "pages": pages,
            "items": items,
        }

    print(json.dumps(asyncio.run(main())))


# -- the parent -----------------------------------------------------------------------------------


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [str(BIN / "python"), __file__, *args], capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _pass(data: dict[str, Any]) -> Pass:
    return Pass(**{k: v for k, v in data.items() if k in Pass.__dataclass_fields__})


def _config(folder: Path, api: str, mode: str) -> Path:
    folder.mkdir()
    path = folder / "hookyard.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [server]
            listen = "127.0.0.1:0"
            roles = ["poller"]
            [egress]
            allow = ["127.0.0.0/8"]
            [sources.items]
            kind = "poll"
            [sources.items.api]
            url = "{api}/cursor/objects"
            pagination = "cursor"
            page_size = {PAGE}
            version_field = "version"
            [sources.items.poll]
            interval = "1h"
            detect = "{mode}"
            initial = "skip"
            """
        )
    )
    return path


def _change(api: str, items: int, count: int) -> None:
    """Update `count` random items through the simulator's control API."""
    import httpx

    ids = random.Random(1).sample(range(1, items + 1), count)
    with httpx.Client(base_url=api, timeout=30) as client:
        for n in ids:
            client.patch(
                f"/_sim/objects/obj_{n:06d}", json={"status": "changed"}
            ).raise_for_status()


def run(items: int = ITEMS) -> PollingResult:
    result = PollingResult(items, PAGE, int(items * CHANGED))
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hookyard-bench-poll-") as scratch:
        work = Path(scratch)
        print(f"polling: seeding {items:,} items in the simulator ...", file=sys.stderr)
        simulator = start(
            [str(BIN / "python"), __file__, "simulator", str(port), str(items)],
            work, {}, port, work / "simulator.log",
        )  # fmt: skip
        api = f"http://127.0.0.1:{port}"
        try:
            for mode in MODES:
                print(f"polling: {mode} mode, first poll (traced, then timed) ...", file=sys.stderr)
                traced = _child(
                    "poll", str(_config(work / f"{mode}-traced", api, mode)), "--traced"
                )
                config = _config(work / mode, api, mode)
                first = _pass(_child("poll", str(config)))
                first.heap_mb = traced["heap_mb"]
                _change(api, items, result.changed)
                print(f"polling: {mode} mode, poll after 1% changed ...", file=sys.stderr)
                measured = _child("poll", str(config))
                bare = _child("bare", measured["first_url"])
                result.modes.append(ModeResult(mode, first, _pass(measured), _pass(bare)))
                if measured["emitted"] != result.changed:
                    result.problems.append(
                        f"{mode} mode emitted {measured['emitted']} events for "
                        f"{result.changed} changes"
                    )
        finally:
            stop(simulator)
    cursor = next((m for m in result.modes if m.mode == "cursor"), None)
    heap = cursor.first.heap_mb if cursor is not None else None
    if heap is not None and heap > HEAP_TARGET_MB:
        result.problems.append(
            f"cursor mode's first poll held {heap:.1f} MB of Python objects over {items:,} "
            f"items (target: bounded by the page, under {HEAP_TARGET_MB:g} MB)"
        )
    return result


def report(result: PollingResult) -> None:
    print(
        f"polling {result.items:,} items ({result.items // result.page:,} pages of "
        f"{result.page}), {result.changed:,} changed; one process per poll, SQLite"
    )
    print(f"{'':34}{'pages':>7}{'time':>9}{'vs bare':>9}{'RSS':>10}{'heap':>10}{'events':>8}")
    for m in result.modes:
        rows = [
            (f"{m.mode}: first poll (records all)", m.first, None),
            (f"{m.mode}: poll after changes", m.measured, m.bare),
            (f"{m.mode}: bare client loop", m.bare, m.bare),
        ]
        for label, p, base in rows:
            ratio = f"{p.seconds / base.seconds:.2f}x" if base and base.seconds else ""
            events = "" if p is m.bare else f"{p.emitted:,}"
            heap = f"{p.heap_mb:>7.1f} MB" if p.heap_mb is not None else ""
            print(
                f"{label:34}{p.pages:>7,}{p.seconds:>7.2f} s{ratio:>9}"
                f"{p.memory_mb:>7.1f} MB{heap:>10}{events:>8}"
            )
    print(
        "  (time: the poll's claim to its last commit; RSS: peak resident growth during it, "
        "SQLite's page cache included; heap: peak of Python's allocations, in a traced run; "
        "vs bare: the same pages fetched and parsed by a bare aiohttp loop, nothing stored)"
    )
    for problem in result.problems:
        print(f"!!! polling: {problem}")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "all"
    if command == "simulator":
        serve_simulator(int(sys.argv[2]), int(sys.argv[3]))
    elif command == "poll":
        poll_once(Path(sys.argv[2]), traced=sys.argv[3:] == ["--traced"])
    elif command == "bare":
        bare_loop(sys.argv[2])
    else:
        outcome = run(int(sys.argv[2]) if len(sys.argv) > 2 else ITEMS)
        report(outcome)
        json.dump(asdict(outcome), sys.stderr)
        sys.exit(1 if outcome.problems else 0)
