"""Retention on both backends: what is past its age goes, exactly, while ingest runs; events
waiting for delivery stay; payloads can go before their events; the delivery history and the
rejected log are bounded; SQLite gives the space back; the API and the CLI show it all."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hookyard.ids import id_floor
from tests.conftest import (
    Running,
    basic_config,
    query_database,
    run_hookyard,
    until_deadline,
    write_config,
)
from tests.integration.test_ingest import github_headers


def retention(**keys: str) -> str:
    return "[retention]\n" + "\n".join(f'{k} = "{v}"' for k, v in keys.items())


async def all_ids(api: Any, **params: Any) -> list[str]:
    ids: list[str] = []
    cursor: dict[str, str] = {}
    while True:
        page = (await api.get("/api/v1/events", params={**params, "limit": 1000, **cursor})).json()
        ids += [e["id"] for e in page["data"]]
        if page["next_cursor"] is None:
            return ids
        cursor = {"cursor": page["next_cursor"]}


async def sweep(hy: Running) -> dict[str, Any]:
    async with hy.api() as api:
        response = await api.post("/api/v1/retention/sweep")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def last_sweep(hy: Running) -> dict[str, Any]:
    """The stored record, with its start time as the float the sweep's cutoffs came from."""
    assert hy.service.state is not None
    records = await hy.service.state.store.last_sweeps(1)
    return records[0]


async def post_for(hy: Running, seconds: float, ids: list[str], senders: int = 16) -> None:
    """Ingest as fast as `senders` concurrent clients can, for `seconds`."""
    deadline = time.monotonic() + seconds

    async def sender() -> None:
        while time.monotonic() < deadline:
            response = await hy.client.post("/in/open", content=os.urandom(64).hex().encode())
            assert response.status_code == 200, response.text
            ids.append(response.json()["id"])

    await asyncio.gather(*(sender() for _ in range(senders)))


async def test_a_sweep_removes_exactly_what_is_past_its_age_while_ingest_runs(
    hookyard_factory, receiver
):
    config = basic_config(receiver.url, extra=retention(events="2s", interval="1h"))
    async with hookyard_factory(config) as hy:
        await sweep(hy)  # the sweep at start is over: the next ones are the test's
        before: list[str] = []
        await post_for(hy, 3.5, before)
        await receiver.wait_for(len(before))  # none is waiting for delivery
        during: list[str] = []
        ingest = asyncio.create_task(post_for(hy, 2.0, during))
        await asyncio.sleep(0.3)
        status = await sweep(hy)
        await ingest
        record = await last_sweep(hy)
        cutoff = id_floor("evt", record["started_at"] - 2.0)
        expired = {i for i in before if i < cutoff}
        assert 0 < len(expired) < len(before)  # the cutoff fell inside the first burst
        async with hy.api() as api:
            kept = set(await all_ids(api, source="open"))
        assert kept == (set(before) - expired) | set(during)
        removed = status["last_sweep"]["removed"]
        assert removed["events"] == removed["deliveries"] == removed["attempts"] == len(expired)
        assert removed["requests"] == len(expired)  # each request had one event
        left = query_database(
            hy.service.gateway.base_dir,
            "SELECT count(*) FROM requests WHERE id NOT IN (SELECT request_id FROM events)",
        )
        assert left[0][0] == 0  # no request outlived its event
        measured = status["usage"]["sources"][0]["events"]  # as the sweep ended, ingest went on
        assert len(set(before) - expired) <= measured <= len(kept)


async def test_events_waiting_for_delivery_stay_whatever_their_age(hookyard_factory, receiver):
    config = basic_config(receiver.url, extra=retention(events="1s", interval="1h"))
    async with hookyard_factory(config) as hy, hy.api() as api:
        await sweep(hy)  # the sweep at start is over: the next ones are the test's
        await api.post("/api/v1/destinations/app/pause")
        ids = [(await hy.client.post("/in/open", content=b"%d" % i)).json()["id"] for i in range(5)]
        await asyncio.sleep(1.5)
        status = await sweep(hy)
        assert status["last_sweep"]["removed"].get("events", 0) == 0
        for event_id in ids:
            raw = await api.get(f"/api/v1/events/{event_id}/raw")
            assert raw.status_code == 200  # the worker still needs the bytes
        await api.post("/api/v1/destinations/app/resume")
        await receiver.wait_for(5)
        for _ in until_deadline():  # the attempts' records commit just after the receiver saw them
            status = await sweep(hy)
            if status["last_sweep"]["removed"].get("events"):
                break
            await asyncio.sleep(0.1)
        assert status["last_sweep"]["removed"]["events"] == 5
        assert await all_ids(api, source="open") == []


async def test_an_age_longer_than_the_epoch_keeps_everything(hookyard_factory, receiver):
    """A century means "keep": its cutoff falls before 1970 and must not wrap around to one
    after every id (a sweep then removed every event, and every partition on PostgreSQL)."""
    config = basic_config(
        receiver.url, extra=retention(events="36500d", payloads="36500d", interval="1h")
    )
    async with hookyard_factory(config) as hy, hy.api() as api:
        ids = [(await hy.client.post("/in/open", content=b"%d" % i)).json()["id"] for i in range(5)]
        await receiver.wait_for(5)
        for _ in until_deadline():  # the attempts' records commit just after the receiver saw them
            waiting = (await api.get("/api/v1/deliveries", params={"status": "in_flight"})).json()
            if not waiting["data"]:
                break
            await asyncio.sleep(0.05)
        status = await sweep(hy)
        assert not any(status["last_sweep"]["removed"].values()), status["last_sweep"]
        assert sorted(await all_ids(api, source="open")) == sorted(ids)
        for event_id in ids:
            assert (await api.get(f"/api/v1/events/{event_id}/raw")).status_code == 200


async def test_payloads_can_go_before_their_events_per_source(hookyard_factory, receiver):
    config = basic_config(
        receiver.url,
        extra=retention(events="forever", payloads="forever", interval="1h")
        + '\n[sources.open.retention]\npayloads = "1s"',
    )
    async with hookyard_factory(config) as hy:
        await sweep(hy)  # the sweep at start is over: the next ones are the test's
        opened = [(await hy.client.post("/in/open", content=b"x" * 100)).json()["id"]]
        body = b'{"ref": "main"}'
        pushed = await hy.client.post("/in/github", content=body, headers=github_headers(body))
        await receiver.wait_for(2)
        await asyncio.sleep(1.2)
        fresh = (await hy.client.post("/in/open", content=b"fresh")).json()["id"]
        await receiver.wait_for(3)
        status = await sweep(hy)
        assert status["last_sweep"]["removed"]["payloads"] == 1
        assert status["policy"]["sources"]["open"] == {
            "events_seconds": None,
            "payloads_seconds": 1.0,
        }
        async with hy.api() as api:
            old = (await api.get(f"/api/v1/events/{opened[0]}")).json()
            assert old["payload_removed"] and old["payload_size"] == 100
            gone = await api.get(f"/api/v1/events/{opened[0]}/raw")
            assert gone.status_code == 410 and "retention" in gone.json()["message"]
            replay = await api.post(f"/api/v1/events/{opened[0]}/replay")
            assert replay.status_code == 410
            bulk = await api.post("/api/v1/events/replay", json={"source": "open"})
            assert bulk.json()["deliveries"] == 1  # the fresh event only
            github = await api.get(f"/api/v1/events/{pushed.json()['id']}/raw")
            assert github.content == body  # the default policy keeps it
            assert (await api.get(f"/api/v1/events/{fresh}/raw")).content == b"fresh"
        # The mark remembers how far it went: the next sweep strips nothing again.
        again = await sweep(hy)
        assert again["last_sweep"]["removed"].get("payloads", 0) == 0
        usage = {row["source"]: row for row in again["usage"]["sources"]}
        assert usage["open"]["events"] == 2 and usage["open"]["payload_bytes"] == len(b"fresh")
        assert usage["github"]["payload_bytes"] == len(body)
        # An imported event keeps its id, older than the mark: the pass goes back for it.
        made = time.time() - 3600
        imported = {
            "id": id_floor("evt", made)[:-1] + "1", "source": "open", "origin": "webhook",
            "received_at": made, "provider_event_id": None, "event_type": None,
            "dedup_key": None, "content_type": None, "payload_base64": "b2xk",
        }  # fmt: skip
        async with hy.api() as api:
            loaded = await api.post("/api/v1/events/import", content=json.dumps(imported))
            assert loaded.json() == {"imported": 1, "skipped": 0}
        assert (await sweep(hy))["last_sweep"]["removed"]["payloads"] == 1


async def test_delivery_history_and_the_rejected_log_are_bounded_by_age(hookyard_factory, receiver):
    config = basic_config(
        receiver.url, extra=retention(attempts="1s", rejected="1s", interval="1h")
    )
    async with hookyard_factory(config) as hy:
        await sweep(hy)  # the sweep at start is over: the next ones are the test's
        event_id = (await hy.client.post("/in/open", content=b"a")).json()["id"]
        forged = await hy.client.post(
            "/in/github", content=b"{}", headers=github_headers(b"{}", secret="wrong")
        )
        assert forged.status_code == 401
        await receiver.wait_for(1)
        async with hy.api() as api:
            for _ in until_deadline():  # the rejected log is written off the request path
                if (await api.get("/api/v1/rejected")).json()["data"]:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.2)
            status = await sweep(hy)
            assert status["last_sweep"]["removed"]["attempts"] == 1
            assert status["last_sweep"]["removed"]["rejected"] == 1
            assert (await api.get("/api/v1/rejected")).json()["data"] == []
            assert (await api.get("/api/v1/attempts")).json()["data"] == []
            metrics = (await api.get("/metrics")).text
            assert 'hookyard_retention_removed_total{kind="rejected"} 1' in metrics
            deliveries = (await api.get("/api/v1/deliveries", params={"event_id": event_id})).json()
            assert [d["status"] for d in deliveries["data"]] == ["succeeded"]  # the event stays


async def test_sweeps_run_by_themselves_on_their_interval(hookyard_factory, receiver):
    config = basic_config(receiver.url, extra=retention(events="1s", interval="1s"))
    async with hookyard_factory(config) as hy:
        await hy.client.post("/in/open", content=b"old")
        await receiver.wait_for(1)
        async with hy.api() as api:
            for _ in until_deadline():
                if not await all_ids(api, source="open"):
                    break
                await asyncio.sleep(0.1)
            assert await all_ids(api, source="open") == []
            status = (await api.get("/api/v1/retention")).json()
        assert status["last_sweep"] is not None


@pytest.mark.sqlite_only
async def test_sqlite_gives_the_space_back(tmp_path: Path, receiver):
    config = write_config(
        tmp_path, basic_config(receiver.url, extra=retention(events="1s", interval="1h"))
    )
    database = tmp_path / "hookyard.db"
    async with run_hookyard(config) as hy:
        await sweep(hy)  # the sweep at start is over: the next ones are the test's
        for _ in range(40):
            await asyncio.gather(
                *(hy.client.post("/in/open", content=os.urandom(4096)) for _ in range(50))
            )
        await receiver.wait_for(2000, timeout=120)
        grown = database.stat().st_size
        await asyncio.sleep(1.2)
        status = await sweep(hy)
        assert status["last_sweep"]["removed"]["events"] == 2000
        usage = status["usage"]  # free pages beyond a reserve of a quarter went back
        assert usage["free_bytes"] <= (usage["database_bytes"] - usage["free_bytes"]) / 4
        assert status["usage"]["sources"] == []
        # The file shrinks when the checkpointer (every 0.2 s) has copied the WAL back.
        for _ in until_deadline():
            if database.stat().st_size < grown / 10:
                break
            await asyncio.sleep(0.1)
        assert database.stat().st_size < grown / 10


async def test_status_for_readers_and_sweeps_for_admins_from_api_and_cli(tmp_path: Path, receiver):
    config = write_config(
        tmp_path,
        basic_config(
            receiver.url,
            extra=retention(payloads="12h") + '\n[sources.github.retention]\nevents = "2d"',
        ),
    )
    async with run_hookyard(config) as hy:
        await hy.client.post("/in/open", content=b"kept")
        async with hy.api() as api:
            created = await api.post("/api/v1/tokens", json={"name": "ro", "scope": "read"})
            read_token = created.json()["token"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKYARD_")}

        def cli(*args: str, token: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "hookyard", "retention", *args],
                capture_output=True,
                text=True,
                timeout=60,
                env={**env, "HOOKYARD_URL": hy.url, "HOOKYARD_TOKEN": token},
            )

        refused = await asyncio.to_thread(cli, "sweep", token=read_token)
        assert refused.returncode == 1 and "403" in refused.stderr
        swept = await asyncio.to_thread(cli, "sweep", token=hy.token)
        assert swept.returncode == 0, swept.stderr
        assert "Policy: events 90d, payloads 12h, attempts 90d, rejected 7d" in swept.stdout
        assert "github: events 2d, payloads 12h" in swept.stdout
        assert "Last sweep:" in swept.stdout and "removed nothing" in swept.stdout
        # Options given to the group hold for the subcommand too.
        grouped = await asyncio.to_thread(cli, "--json", "sweep", token=hy.token)
        assert grouped.returncode == 0 and "last_sweep" in json.loads(grouped.stdout)
        shown = await asyncio.to_thread(cli, "--json", token=read_token)
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)
        assert status["usage"]["sources"][0]["source"] == "open"
        assert status["usage"]["sources"][0]["payload_bytes"] == 4
        assert status["usage"]["database_bytes"] > 0


async def test_a_removed_payload_is_not_retried_and_failed_hints_go(hookyard_factory, receiver):
    config = basic_config(
        receiver.url, extra=retention(events="1d", payloads="1s", interval="1h")
    ).replace('retry_schedule = ["0", "100ms", "100ms"]', 'retry_schedule = ["0"]')
    receiver.behaviour = lambda _: 500  # every delivery goes dead at once
    async with hookyard_factory(config) as hy, hy.api() as api:
        event_id = (await hy.client.post("/in/open", content=b"x" * 10)).json()["id"]
        await receiver.wait_for(1)
        for _ in until_deadline():
            page = await api.get("/api/v1/deliveries", params={"event_id": event_id})
            if page.json()["data"][0]["status"] == "dead":
                break
            await asyncio.sleep(0.05)
        delivery_id = page.json()["data"][0]["id"]
        await sweep(hy)  # after the sweep at start, which could otherwise take the hint
        store = hy.service.state.store  # type: ignore[union-attr]
        old, recent = id_floor("req", time.time() - 3 * 86400), id_floor("req", time.time())
        store.writer.call(
            lambda conn: [
                conn.execute(
                    "INSERT INTO requests (id, source, received_at, method, path, query,"
                    " headers, state) VALUES (?, 'open', ?, 'POST', '/in/open', '', ?, 'failed')",
                    (request_id, time.time(), b"[]"),
                )
                for request_id in (old, recent)
            ]
        )
        await asyncio.sleep(1.2)
        status = await sweep(hy)
        assert status["last_sweep"]["removed"]["requests"] == 1  # the old failed hint
        assert (await api.get(f"/api/v1/events/{event_id}")).json()["payload_removed"]
        left = query_database(
            hy.service.gateway.base_dir, "SELECT id FROM requests WHERE state = 'failed'"
        )
        assert [row[0] for row in left] == [recent]
        retried = await api.post(f"/api/v1/deliveries/{delivery_id}/retry")
        assert retried.status_code == 410 and "retention" in retried.json()["message"]
        dead = await api.post("/api/v1/destinations/app/retry-dead")
        assert dead.json()["retried"] == 0  # nothing left to send


@pytest.mark.sqlite_only
def test_no_space_is_reclaimed_from_a_file_without_incremental_vacuum(tmp_path: Path):
    from hookyard.store.db import SqliteConn
    from hookyard.store.retention import reclaim

    conn = sqlite3.connect(tmp_path / "restored.db", factory=SqliteConn)
    conn.execute("CREATE TABLE t (x BLOB)")  # auto_vacuum stays NONE once a table exists
    conn.executemany("INSERT INTO t VALUES (?)", [(os.urandom(4000),) for _ in range(500)])
    conn.execute("DELETE FROM t")
    conn.commit()
    assert int(conn.execute("PRAGMA freelist_count").fetchone()[0]) > 0
    assert reclaim(conn, [1024]) == [0]  # nothing it can give back: the sweep does not spin


async def test_a_sweep_that_fails_is_audited_with_its_error(
    hookyard_factory, receiver, monkeypatch
):
    """Chunks committed before a failure are gone: the audit log still says who asked."""

    async def failing(state: Any) -> dict[str, Any]:
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr("hookyard.api.retention.sweep", failing)
    config = basic_config(receiver.url, extra=retention(events="1d", interval="1h"))
    async with hookyard_factory(config) as hy, hy.api() as api:
        assert (await api.post("/api/v1/retention/sweep")).status_code == 500
        entries = (await api.get("/api/v1/audit")).json()["data"]
        sweeps = [e for e in entries if e["action"] == "retention.sweep"]
        assert len(sweeps) == 1
        assert "disk I/O error" in json.dumps(sweeps[0])
