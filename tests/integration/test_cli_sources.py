"""The REST side from the command line: sources, backfill with its progress, an event's current
object, and `hookyard demo` end to end."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hookyard.cli import main
from hookyard.simulator import Simulator, SimulatorOptions
from tests.conftest import DEADLINE, ServeProcess, start_serve, write_config
from tests.integration.test_cli import hookyard
from tests.integration.test_polling import poll_config
from tests.integration.test_reconcile import iso, shop_config

pytestmark = pytest.mark.slow


async def cli(*args: str, cwd: Path) -> Any:
    """Run the command off the event loop, which serves the simulator meanwhile."""
    return await asyncio.to_thread(hookyard, *args, cwd=cwd)


async def test_backfill_command_shows_progress_and_sums_up(
    tmp_path: Path, serve_processes: list[ServeProcess], receiver: Any
) -> None:
    sim = Simulator(SimulatorOptions(seed=8))
    await sim.start()
    try:
        start = time.time() - 3600
        for index in range(250):
            sim.set_time(start + index * 10)
            sim.create({"n": index}, webhook=False)
        sim.set_time(None)
        config = write_config(tmp_path, shop_config(receiver.url, sim.url))
        server = start_serve(config)
        serve_processes.append(server)
        common = ("--config", str(config), "--url", server.url)
        since = iso(start - 1).replace("Z", "")
        done = await cli("backfill", "orders", "--since", since, *common, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "250 items in 10 pages, 250 new events (0 already stored)" in done.stdout
        assert "backfill orders: 10 pages, 250 items" in done.stderr  # the progress line

        again = await cli("backfill", "orders", "--since", since, *common, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert "0 new events (250 already stored)" in again.stdout

        shown = await cli("sources", "show", "orders", "--json", *common, cwd=tmp_path)
        detail = json.loads(shown.stdout)
        backfill = next(j for j in detail["jobs"] if j["job"] == "backfill")
        assert backfill["progress"]["done"] and backfill["progress"]["items"] == 250
        assert detail["api_calls"][-1]["calls"] >= 20

        listed = await cli(
            "events", "list", "--origin", "backfill", "--json", *common, cwd=tmp_path
        )
        first = json.loads(listed.stdout)["data"][0]
        sim.update("obj_000250", {"status": "refunded"}, webhook=False)
        current = await cli("events", "current", first["id"], *common, cwd=tmp_path)
        assert current.returncode == 0, current.stderr
        assert json.loads(current.stdout)["status"] == "refunded"

        missing = await cli("backfill", "nope", "--since", since, *common, cwd=tmp_path)
        assert missing.returncode == 1 and "no source named 'nope'" in missing.stderr
        bad = await cli("backfill", "orders", "--since", "yesterday", *common, cwd=tmp_path)
        assert bad.returncode == 2
    finally:
        await sim.stop()


def test_backfill_help_says_how_long_stored_versions_are_skipped() -> None:
    """Skipped only while their dedup keys last (see test_reconcile's dedup window test)."""
    result = CliRunner().invoke(main, ["backfill", "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Versions stored within the dedup window" in text
    assert "older ones are emitted again" in text


async def test_sources_list_and_poll_now(
    tmp_path: Path, serve_processes: list[ServeProcess], receiver: Any
) -> None:
    sim = Simulator(SimulatorOptions(seed=8))
    await sim.start()
    try:
        sim.seed(5)
        config = write_config(tmp_path, poll_config(receiver.url, sim.url))
        server = start_serve(config)
        serve_processes.append(server)
        common = ("--config", str(config), "--url", server.url)
        listed = await cli("sources", "list", *common, cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert "orders" in listed.stdout and "poll" in listed.stdout
        sim.create({"status": "new"}, webhook=False)
        polled = await cli("sources", "poll", "orders", *common, cwd=tmp_path)
        assert polled.returncode == 0 and "poll started" in polled.stdout
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            shown = await cli("events", "list", "--json", *common, cwd=tmp_path)
            if len(json.loads(shown.stdout)["data"]) == 6:
                break
            await asyncio.sleep(0.2)
        assert len(json.loads(shown.stdout)["data"]) == 6
        shown = await cli("sources", "show", "orders", *common, cwd=tmp_path)
        assert "poll:" in shown.stdout and "API calls per day" in shown.stdout
        wrong = await cli("sources", "reconcile", "orders", *common, cwd=tmp_path)
        assert wrong.returncode == 1 and "has no [reconcile] job" in wrong.stderr
    finally:
        await sim.stop()


@pytest.mark.sqlite_only  # the demo makes its own SQLite database
def test_demo_shows_every_change_arriving_once(tmp_path: Path) -> None:
    result = hookyard("demo", "--duration", "4", "--keep", str(tmp_path / "demo"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Every change arrived exactly once." in result.stdout
    assert "provider   created" in result.stdout and "delivered  webhook" in result.stdout
    assert (tmp_path / "demo" / "hookyard.db").exists()
