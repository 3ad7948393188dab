"""A poller SIGKILLed at random points, between fetching pages and committing them, while the
API keeps changing: after restarts, the events are exactly the changes, none missing, none
twice. And a backfill killed half-way resumes from its last page."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from hookyard.simulator import Simulator, SimulatorOptions
from tests.conftest import ServeProcess, api_client, query_database, start_serve, write_config
from tests.integration.test_polling import poll_config
from tests.integration.test_reconcile import iso, shop_config


def stored_events(base_dir: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(origin, type, payload) of every event, oldest first."""
    rows = query_database(
        base_dir,
        "SELECT origin, event_type, payload FROM events WHERE source = 'orders' ORDER BY id",
    )
    return [(origin, kind, orjson.loads(bytes(payload))) for origin, kind, payload in rows]


async def mutate(sim: Simulator, stop: asyncio.Event) -> None:
    rng = random.Random(5)
    while not stop.is_set():
        sim.mutate(rng.randint(1, 4), webhook=False)
        await asyncio.sleep(0.03)


@pytest.mark.slow
@pytest.mark.parametrize("detect", ["cursor", "hash"])
async def test_sigkill_while_polling_loses_and_repeats_no_change(
    detect: str, tmp_path: Path, serve_processes: list[ServeProcess], receiver: Any
) -> None:
    sim = Simulator(SimulatorOptions(seed=9))
    await sim.start()
    try:
        sim.seed(300)
        config = write_config(
            tmp_path,
            poll_config(
                receiver.url,
                sim.url,
                detect=detect,
                page_size=10,
                poll_extra='interval = "200ms"',
            ),
        )
        stop = asyncio.Event()
        changing = asyncio.create_task(mutate(sim, stop))
        rng = random.Random(17)
        for _ in range(6):
            process = start_serve(config)
            serve_processes.append(process)
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            process.kill()  # SIGKILL: wherever it was, fetching, comparing or committing
        stop.set()
        await changing
        assert stored_events(tmp_path), "the killed processes never got to commit a page"

        process = start_serve(config)
        serve_processes.append(process)
        latest = {(i, o["version"]) for i, o in sim.objects.items()}
        deadline = time.monotonic() + 60
        while True:
            found = stored_events(tmp_path)
            versions = {(p["id"], p.get("version")) for _, _, p in found}
            deleted = {p["id"] for _, kind, p in found if kind == "order.deleted"}
            gone = {f"obj_{n:06d}" for n in range(1, 10_000)} & {p["id"] for _, _, p in found}
            gone -= set(sim.objects)
            settled = versions >= latest and (detect == "cursor" or deleted >= gone)
            if settled or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert versions >= latest, f"missing: {sorted(latest - versions)[:5]}"

        changes = [(p["id"], p.get("version"), kind) for _, kind, p in found]
        assert len(changes) == len(set(changes)), "a change was emitted twice"
        per_object: dict[str, list[str]] = defaultdict(list)
        for object_id, _, kind in changes:
            per_object[object_id].append(kind)
        for object_id, kinds in per_object.items():
            assert kinds[0] == "order.created", (object_id, kinds)
            assert kinds.count("order.created") == 1, (object_id, kinds)
        if detect == "hash":  # deletions are seen, once, as the last word
            for object_id in gone:
                assert per_object[object_id][-1] == "order.deleted"
                assert per_object[object_id].count("order.deleted") == 1
        assert Counter(origin for origin, _, _ in found) == {"poll": len(found)}
    finally:
        await sim.stop()


@pytest.mark.slow
async def test_backfill_killed_half_way_resumes_from_its_last_page(
    tmp_path: Path, serve_processes: list[ServeProcess], receiver: Any
) -> None:
    sim = Simulator(SimulatorOptions(seed=1, page_size=25))
    await sim.start()
    try:
        start = time.time() - 86400
        for index in range(3000):
            sim.set_time(start + index * 20)
            sim.create({"n": index}, webhook=False)
        sim.set_time(None)
        config = write_config(tmp_path, shop_config(receiver.url, sim.url))
        process = start_serve(config)
        serve_processes.append(process)
        token = (tmp_path / "hookyard.token").read_text().strip()
        window = {"since": iso(start - 1), "until": iso(time.time())}
        async with api_client(process.url, token) as api:
            response = await api.post("/api/v1/sources/orders/backfill", json=window)
            assert response.status_code == 202, response.text
            while True:  # let it get some way, then kill it
                status = (await api.get("/api/v1/sources/orders/backfill")).json()
                if (status["progress"] or {}).get("pages", 0) >= 20:
                    break
                await asyncio.sleep(0.01)
        process.kill()
        calls_before = sim.stats.calls

        process = start_serve(config)
        serve_processes.append(process)
        async with api_client(process.url, token) as api:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = (await api.get("/api/v1/sources/orders/backfill")).json()
                if (status["progress"] or {}).get("done"):
                    break
                await asyncio.sleep(0.05)
        assert status["progress"]["done"], status
        # 120 pages in all: the restarted process did not start over from page 1.
        assert sim.stats.calls - calls_before <= 120 - 20 + 2
        found = stored_events(tmp_path)
        numbers = Counter(p["n"] for _, _, p in found)
        assert sorted(numbers) == list(range(3000))
        assert set(numbers.values()) == {1}
    finally:
        with contextlib.suppress(Exception):
            await sim.stop()
