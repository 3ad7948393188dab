"""A PostgreSQL that hangs (a network partition, a stuck server: the connection stays open and
nothing comes back). Ingest answers 503 within server.commit_timeout rather than waiting for
ever, acks nothing it did not commit, and recovers by itself once the server answers again;
the provider's retries of what it refused are stored and delivered once.

The hang is a real TCP proxy on loopback between Hookyard and the machine's PostgreSQL, told
to stop forwarding: the one fault a real server cannot produce on demand.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from hookyard.errors import StoreError
from hookyard.store import postgres
from hookyard.store.postgres import TCP_SETTINGS, WRITER_IDLE_TIMEOUT, WRITER_STATEMENT_TIMEOUT
from tests.conftest import (
    DEADLINE,
    Receiver,
    basic_config,
    github_push,
    until_deadline,
)

pytestmark = pytest.mark.postgres_only


class FreezingProxy:
    """Forwards TCP to a target; frozen, it stops forwarding in both directions (what it holds
    waits, nothing is closed), as a server cut off by a partition looks to its client. It runs
    an event loop on a thread of its own: Hookyard's start-up blocks the test's loop."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen = False  # read by the proxy's thread
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-proxy")
        self._server: asyncio.Server | None = None
        self._links: list[asyncio.StreamWriter] = []

    def _call(self, work: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(work, self._loop).result(DEADLINE)

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._links += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                while self.frozen:
                    await asyncio.sleep(0.05)
                sink.write(data)
                await sink.drain()
        sink.transport.abort()

    def stop(self) -> None:
        self.frozen = False
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(DEADLINE)
        self._loop.close()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._links:
            writer.transport.abort()  # each link's pipes see the end and finish
        links = asyncio.all_tasks() - {asyncio.current_task()}
        if links:
            await asyncio.wait(links, timeout=DEADLINE)


@pytest.fixture
def proxy(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FreezingProxy]:
    """A proxy to the test's PostgreSQL, which the Hookyard started next connects through."""
    parts = urlsplit(postgres_url)
    assert parts.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
    proxy = FreezingProxy(parts.hostname, parts.port or 5432)
    proxy.start()
    user = parts.netloc.rpartition("@")[0]
    netloc = f"{user}@127.0.0.1:{proxy.port}" if user else f"127.0.0.1:{proxy.port}"
    monkeypatch.setenv("HOOKYARD_SERVER__DATABASE", parts._replace(netloc=netloc).geturl())
    try:
        yield proxy
    finally:
        proxy.stop()


async def retried(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> Any:
    """A provider's retries of a GitHub event until one is answered 200 (503 until then)."""
    for _ in until_deadline():
        retry = await client.post("/in/github", content=body, headers=headers)
        if retry.status_code == 200:
            return retry
        assert retry.status_code == 503, retry.text
        await asyncio.sleep(0.1)
    raise AssertionError("never answered 200")


def rows(postgres_url: str, sql: str, *params: Any) -> list[Any]:
    """Read the database directly, not through the proxy."""
    with psycopg.connect(postgres_url) as conn:
        return conn.execute(sql, params).fetchall()


def config(receiver: Receiver) -> str:
    return basic_config(receiver.url).replace(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\ncommit_timeout = "1s"', 1
    )


async def test_a_hung_database_gets_503_in_time_and_retries_are_stored_and_delivered_once(
    hookyard_factory: Any,
    receiver: Receiver,
    postgres_url: str,
    proxy: FreezingProxy,
) -> None:
    async with hookyard_factory(config(receiver)) as hy:
        before = b'{"ref": "refs/heads/main", "n": "before"}'
        answer = await hy.client.post(
            "/in/github", content=before, headers=github_push(before, str(uuid.uuid4()))
        )
        assert answer.status_code == 200, answer.text

        proxy.frozen = True
        try:
            # A provider's event with an id (GitHub's delivery): its write is sent to the hung
            # server, or waits behind one that was.
            keyed = b'{"ref": "refs/heads/main", "n": "during"}'
            keyed_headers = github_push(keyed, str(uuid.uuid4()))
            refused = await hy.client.post("/in/github", content=keyed, headers=keyed_headers)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"].isdigit()
            assert refused.json()["error"] == "unavailable"
            # An event nothing identifies (no id, no body dedup): queued behind the hung write.
            anonymous = b"an alert with no id"
            refused = await hy.client.post("/in/open", content=anonymous)
            assert refused.status_code == 503, refused.text
            ready = await hy.client.get("/readyz")
            assert ready.status_code == 503, ready.text  # the balancer stops sending webhooks
        finally:
            proxy.frozen = False

        # The server answers again: ingest recovers by itself, and the provider's retry is
        # stored once (it is a duplicate if the refused write committed after all).
        retry = await retried(hy.client, keyed, keyed_headers)
        # The anonymous write, queued before that retry, was dropped rather than committed
        # after its caller heard 503: its retry would otherwise be a second event.
        assert rows(postgres_url, "SELECT id FROM events WHERE source = 'open'") == []
        again = await hy.client.post("/in/open", content=anonymous)
        assert again.status_code == 200, again.text

        stored = rows(postgres_url, "SELECT id, payload FROM events ORDER BY id")
        assert sorted(bytes(payload) for _, payload in stored) == sorted([before, keyed, anonymous])
        ids = [event_id for event_id, _ in stored]
        assert retry.json()["id"] in ids
        assert again.json()["id"] in ids

        for _ in until_deadline():
            done = rows(
                postgres_url,
                "SELECT count(*) FROM deliveries WHERE status = 'succeeded'",
            )[0][0]
            if done == len(ids):
                break
            await asyncio.sleep(0.1)
        deliveries = rows(postgres_url, "SELECT event_id, status FROM deliveries ORDER BY event_id")
        assert deliveries == [(event_id, "succeeded") for event_id in sorted(ids)]
        assert sorted(receiver.ids()) == sorted(ids)  # each delivered once


async def test_a_write_under_way_when_the_wait_ends_commits_and_its_retry_is_a_duplicate(
    hookyard_factory: Any,
    receiver: Receiver,
    postgres_url: str,
    proxy: FreezingProxy,
) -> None:
    """The 503 promised nothing, but the write had reached the hung server and commits once it
    answers: the provider's retry is acked as that event, not stored or delivered again."""
    only_ingest = config(receiver).replace(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\nroles = ["ingest", "api"]', 1
    )  # no worker: this test's request is the only write
    async with hookyard_factory(only_ingest) as hy:
        store = hy.service.store
        background = [hy.service._maintenance, hy.service._retention]
        for task in background:
            assert task is not None
            task.cancel()
        await asyncio.wait(background)
        await store.take_job("barrier", 1, "test")  # committed after anything queued before

        proxy.frozen = True
        try:
            body = b'{"ref": "refs/heads/main", "n": "under way"}'
            headers = github_push(body, str(uuid.uuid4()))
            refused = await hy.client.post("/in/github", content=body, headers=headers)
            assert refused.status_code == 503, refused.text
        finally:
            proxy.frozen = False

        retry = await retried(hy.client, body, headers)
        assert retry.json()["duplicate"] is True  # the first write committed after its 503
        stored = rows(postgres_url, "SELECT id FROM events")
        assert stored == [(retry.json()["id"],)]
        deliveries = rows(postgres_url, "SELECT event_id FROM deliveries")
        assert deliveries == [(retry.json()["id"],)]


def tcp_bounds(conn: Any) -> tuple[int, int, int]:
    """A connection's keepalive switch, idle seconds before the first probe, and
    tcp_user_timeout (ms), as the OS applies them."""
    link = socket.socket(fileno=conn.raw.fileno())
    try:
        return (
            link.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            link.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            link.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        )
    finally:
        link.detach()  # the descriptor stays psycopg's


async def test_connections_are_bounded_against_a_silent_server(
    hookyard_factory: Any, receiver: Receiver
) -> None:
    """TCP keepalives and tcp_user_timeout let the OS break a link to a server gone silent (the
    writer then reconnects); the server bounds the writer's statements and idle transactions."""
    expected = (
        1,
        TCP_SETTINGS["keepalives_idle"],
        TCP_SETTINGS["tcp_user_timeout"],
    )
    async with hookyard_factory(config(receiver)) as hy:
        store = hy.service.store

        def writer_bounds(conn: Any) -> tuple[tuple[int, int, int], str, str]:
            statement = conn.execute("SHOW statement_timeout").fetchone()[0]
            idle = conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0]
            return tcp_bounds(conn), statement, idle

        tcp, statement, idle = await asyncio.to_thread(store.writer.call, writer_bounds)
        assert tcp == expected
        assert (statement, idle) == (WRITER_STATEMENT_TIMEOUT, WRITER_IDLE_TIMEOUT)
        assert await store.read(tcp_bounds) == expected  # readers too


async def test_a_read_of_a_hung_database_ends_in_503_and_frees_its_thread(
    hookyard_factory: Any,
    receiver: Receiver,
    proxy: FreezingProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An API read waits READ_TIMEOUT at most; its connection is cut, so the thread is free and
    the next read, once the server answers, runs on a new connection. Reads held their threads
    for ever: a handful of them and no read could run at all."""
    monkeypatch.setattr(postgres, "READ_TIMEOUT", 0.5)
    async with hookyard_factory(config(receiver)) as hy, hy.api() as api:
        assert (await api.get("/api/v1/events")).status_code == 200
        proxy.frozen = True
        try:
            # More than the default executor's threads (min(32, cores + 4)): each is freed.
            answers = await asyncio.gather(*(api.get("/api/v1/events") for _ in range(40)))
        finally:
            proxy.frozen = False
        assert {answer.status_code for answer in answers} == {503}, answers[0].text
        for _ in until_deadline():
            if (await api.get("/api/v1/events")).status_code == 200:
                break
            await asyncio.sleep(0.1)


async def test_a_read_after_one_cut_at_its_bound_runs_on_a_new_connection(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut while its thread was not reading (the rows were in; working on them outlasted the
    bound), a connection looked healthy to psycopg, and the thread's next read failed on it."""
    monkeypatch.setattr(postgres, "READ_TIMEOUT", 0.3)
    # One reader thread: the next read is on the same thread, and would be on its connection.
    asyncio.get_running_loop().set_default_executor(concurrent.futures.ThreadPoolExecutor(1))
    store = postgres.PostgresStore(postgres_url)
    try:

        def slow(conn: Any) -> Any:
            rows = conn.execute("SELECT 1").fetchall()
            time.sleep(1.0)
            return rows

        with pytest.raises(StoreError, match="did not answer"):
            await store.read(slow)
        await asyncio.to_thread(lambda: None)  # the slow read's thread is done
        assert await store.read(lambda conn: conn.execute("SELECT 2").fetchone()) == (2,)
    finally:
        for conn in store._readers:  # never opened: no writer or listener to stop
            conn.close()
