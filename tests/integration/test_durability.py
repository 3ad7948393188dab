"""Promises 1 and 5: an acked event survives `kill -9`, every ack waits for a synced commit, and
a provider's retries of one event fan out once.

The crash rounds run `hookyard serve` as a subprocess and SIGKILL it while webhooks pour in; the
commit-order tests run Hookyard in this event loop and hold the writer thread just before COMMIT
with `Writer.commit_hook`, the one fault a real SQLite file cannot produce on demand.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from hookyard.tokens import read_token_file
from tests.conftest import (
    CLIENT_TIMEOUT,
    DEADLINE,
    Receiver,
    Running,
    ServeProcess,
    api_client,
    basic_config,
    github_push,
    query_database,
    run_hookyard,
    start_serve,
    write_config,
)

# A short lease so that deliveries caught in flight by the kill come back within seconds.
WORKER_LEASE = """
[worker]
lease = "3s"  # longer than the destination timeout (2 s)
"""


async def eventually(
    check: Callable[[], Awaitable[bool]], what: Callable[[], str], timeout: float = DEADLINE
) -> None:
    """Poll `check` until it holds; `timeout` bounds a hang, it is no performance threshold."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(what())
        await asyncio.sleep(0.1)


# -- 1a. SIGKILL while webhooks arrive: every ack is stored and delivered -----------------------


class Flood:
    """Distinct signed webhooks from concurrent clients, posted until `stop` is set; each 200
    answer's event id is kept with the body it acknowledged."""

    def __init__(self, url: str, seed: int, clients: int) -> None:
        self.seed = seed
        # Created up front: building a client (its SSL context) is slow, posting is not.
        self.clients = [
            httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT) for _ in range(clients)
        ]
        self.acked: dict[str, bytes] = {}
        self.first_ack = asyncio.Event()
        self.stop = asyncio.Event()
        self.statuses: list[int] = []  # answers other than 200
        self.errors: list[str] = []  # requests that got no answer at all

    async def run(self) -> None:
        try:
            await asyncio.gather(*(self._post(i, c) for i, c in enumerate(self.clients)))
        finally:
            for client in self.clients:
                await client.aclose()

    async def _post(self, index: int, http: httpx.AsyncClient) -> None:
        rng = random.Random(f"{self.seed}-{index}")
        number = 0
        while not self.stop.is_set():
            number += 1
            body = orjson.dumps(
                {"seed": self.seed, "client": index, "n": number, "nonce": rng.getrandbits(64)}
            )
            delivery = str(uuid.UUID(int=rng.getrandbits(128)))
            try:
                response = await http.post(
                    "/in/github", content=body, headers=github_push(body, delivery)
                )
            except httpx.TransportError as exc:
                # The server died before answering: no ack, so nothing was promised.
                self.errors.append(repr(exc))
                if self.stop.is_set():
                    return
                await asyncio.sleep(0.01)
                continue
            if response.status_code == 200:
                answer = response.json()
                assert answer["duplicate"] is False, answer
                self.acked[answer["id"]] = body
                self.first_ack.set()
            else:
                self.statuses.append(response.status_code)


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("seed", [11, 29, 47])
async def test_acked_events_survive_sigkill_and_are_delivered(
    tmp_path: Path, receiver: Receiver, serve_processes: list[ServeProcess], seed: int
) -> None:
    rng = random.Random(seed)
    config = write_config(tmp_path, basic_config(receiver.url, extra=WORKER_LEASE))
    first = await asyncio.to_thread(start_serve, config)
    serve_processes.append(first)
    token = read_token_file(tmp_path / "hookyard.token")
    assert token, first.log()

    flood = Flood(first.url, seed, clients=rng.randint(8, 16))
    posting = asyncio.create_task(flood.run())
    await asyncio.wait_for(flood.first_ack.wait(), DEADLINE)
    await asyncio.sleep(rng.uniform(0.3, 1.5))
    await asyncio.to_thread(first.kill)
    flood.stop.set()
    # Answers already on their way when the server died are still read: they are acks too.
    await posting
    acked = flood.acked
    assert set(flood.statuses) <= {503}, flood.statuses  # overload may refuse, never fail
    assert flood.errors, "the kill interrupted no request: it did not hit mid-flood"

    second = await asyncio.to_thread(start_serve, config)
    serve_processes.append(second)
    async with api_client(second.url, token) as api:
        semaphore = asyncio.Semaphore(16)
        missing: list[str] = []
        wrong: list[str] = []

        async def stored(event_id: str) -> None:
            async with semaphore:
                got = await api.get(f"/api/v1/events/{event_id}")
                if got.status_code == 404:
                    missing.append(event_id)
                    return
                assert got.status_code == 200, got.text
                event = got.json()
                if event["source"] != "github" or len(event["deliveries"]) != 1:
                    wrong.append(event_id)
                raw = await api.get(f"/api/v1/events/{event_id}/raw")
                if raw.content != acked[event_id]:
                    wrong.append(event_id)

        await asyncio.gather(*(stored(event_id) for event_id in acked))
        assert not missing, f"{len(missing)} of {len(acked)} acked events lost: {missing[:5]}"
        assert not wrong, f"acked events stored wrongly: {wrong[:5]}"

        def undelivered() -> set[str]:
            return set(acked) - set(receiver.ids())

        async def all_delivered() -> bool:
            return not undelivered()

        await eventually(
            all_delivered,
            lambda: f"{len(undelivered())} of {len(acked)} acked events never delivered",
        )
        # Each delivery reached the receiver with the payload it acknowledged.
        for item in receiver.received:
            event_id = item.headers.get("webhook-id", "")
            if event_id in acked:
                assert item.body == acked[event_id]


# -- 1b. The ack waits for a synced commit --------------------------------------------------------


@pytest.fixture
async def hookyard(tmp_path: Path, receiver: Receiver) -> AsyncIterator[Running]:
    # Tests here hold a commit open on purpose: on a loaded machine, the default bound on the
    # wait (10 s, then 503) could end one before the test lets it go.
    server = 'listen = "127.0.0.1:0"\ncommit_timeout = "120s"'
    config = write_config(
        tmp_path, basic_config(receiver.url).replace('listen = "127.0.0.1:0"', server, 1)
    )
    async with run_hookyard(config) as running:
        assert running.service.store is not None
        writer = running.service.store.writer
        try:
            yield running
        finally:
            writer.commit_hook = None


def event_rows(base_dir: Path, event_id: str | None = None) -> int:
    """Count committed events as a separate process would see them: a fresh connection."""
    if event_id is None:
        return int(query_database(base_dir, "SELECT count(*) FROM events")[0][0])
    return int(
        query_database(base_dir, "SELECT count(*) FROM events WHERE id = ?", (event_id,))[0][0]
    )


def holds_new_event(conn: sqlite3.Connection, committed: int) -> bool:
    """Whether the writer's open transaction has inserted an event (it sees its own rows)."""
    return int(conn.execute("SELECT count(*) FROM events").fetchone()[0]) > committed


@pytest.mark.sqlite_only
async def test_writer_runs_wal_with_full_sync(hookyard: Running) -> None:
    store = hookyard.service.store
    settings = await asyncio.to_thread(store.writer_settings)
    assert settings["journal_mode"] == "wal"
    assert settings["synchronous"] == 2  # FULL: the WAL is fsynced at every commit
    assert settings["auto_vacuum"] == 2  # INCREMENTAL, chosen before the first table


@pytest.mark.postgres_only
async def test_postgres_writer_commits_synchronously(hookyard: Running) -> None:
    settings = await asyncio.to_thread(hookyard.service.store.writer_settings)
    assert settings == {"synchronous_commit": "on"}  # whatever the server's default


async def test_answer_waits_for_commit(hookyard: Running) -> None:
    store = hookyard.service.store
    db = hookyard.service.gateway.base_dir
    reached = threading.Event()
    release = threading.Event()

    def hold(conn: sqlite3.Connection) -> None:  # in the writer thread, just before COMMIT
        if not release.is_set() and holds_new_event(conn, 0):
            reached.set()
            release.wait(DEADLINE)

    store.writer.commit_hook = hold
    body = b'{"ref": "refs/heads/main", "commit": "order"}'
    post = asyncio.create_task(
        hookyard.client.post(
            "/in/github", content=body, headers=github_push(body, str(uuid.uuid4()))
        )
    )
    try:
        assert await asyncio.to_thread(reached.wait, DEADLINE), "the ingest never reached COMMIT"
        await asyncio.sleep(0.3)
        assert not post.done(), "answered before the commit"
        assert event_rows(db) == 0  # not committed, so not visible to anyone else
    finally:
        release.set()
    response = await post
    assert response.status_code == 200, response.text
    event_id = response.json()["id"]
    assert event_rows(db, event_id) == 1


async def test_failed_commit_answers_503_and_stores_nothing(hookyard: Running) -> None:
    store = hookyard.service.store
    db = hookyard.service.gateway.base_dir
    failed = threading.Event()

    def fail(conn: sqlite3.Connection) -> None:
        if holds_new_event(conn, 0):
            failed.set()
            raise sqlite3.OperationalError("disk I/O error")

    store.writer.commit_hook = fail
    body = b'{"ref": "refs/heads/main", "commit": "fails"}'
    headers = github_push(body, str(uuid.uuid4()))
    response = await hookyard.client.post("/in/github", content=body, headers=headers)
    assert failed.is_set()
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit()
    assert response.json()["error"] == "unavailable"
    assert event_rows(db) == 0
    async with hookyard.api() as api:
        listed = await api.get("/api/v1/events")
        assert listed.status_code == 200
        assert listed.json()["data"] == []

    # The disk recovers: the provider's retry of the same request is a new event, not a
    # duplicate of the one that was rolled back.
    store.writer.commit_hook = None
    retry = await hookyard.client.post("/in/github", content=body, headers=headers)
    assert retry.status_code == 200, retry.text
    answer = retry.json()
    assert answer["duplicate"] is False
    assert event_rows(db, answer["id"]) == 1


# -- 1c. Fifty copies of one event at once: one event, one delivery ------------------------------


async def test_same_event_fifty_times_at_once_fans_out_once(
    hookyard: Running,
    receiver: Receiver,
) -> None:
    body = b'{"ref": "refs/heads/main", "after": "5f1c0d2", "retry": "storm"}'
    headers = github_push(body, str(uuid.uuid4()))
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=hookyard.url, limits=limits, timeout=30.0) as http:
        responses = await asyncio.gather(
            *(http.post("/in/github", content=body, headers=headers) for _ in range(50))
        )
    assert [r.status_code for r in responses] == [200] * 50
    answers = [r.json() for r in responses]
    ids = {a["id"] for a in answers}
    assert len(ids) == 1, ids
    assert sorted(a["duplicate"] for a in answers) == [False] + [True] * 49
    (event_id,) = ids

    async with hookyard.api() as api:

        async def detail() -> dict[str, Any]:
            got = await api.get(f"/api/v1/events/{event_id}")
            assert got.status_code == 200, got.text
            result: dict[str, Any] = got.json()
            return result

        async def succeeded() -> bool:
            return [d["status"] for d in (await detail())["deliveries"]] == ["succeeded"]

        await eventually(succeeded, lambda: f"delivery never succeeded: {receiver.ids()}")
        await asyncio.sleep(0.5)  # room for any wrongful second delivery to show up
        deliveries = (await detail())["deliveries"]
    assert len(deliveries) == 1
    assert receiver.ids() == [event_id]
    assert receiver.received[0].body == body
    assert hookyard.service.state.counts[("github", "duplicate")] == 49
