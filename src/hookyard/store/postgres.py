"""The PostgreSQL store, for several Hookyard processes sharing one database.

Same SQL and the same group-commit writer as SQLite (one writer thread per process, each group
one transaction committed with synchronous_commit=on). Readers use a connection per thread.
A listener thread LISTENs for the other processes' notifications (new work, destination state
changes), so workers elsewhere wake at once instead of at their next poll.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from hookyard.errors import StoreError
from hookyard.ids import node_name
from hookyard.store import partitions, queries, retention
from hookyard.store.base import BaseStore
from hookyard.store.db import Conn, PgConn
from hookyard.store.migrate import migrate
from hookyard.store.partitions import Partition
from hookyard.store.retention import Swept
from hookyard.store.writer import Writer

T = TypeVar("T")
log = logging.getLogger("hookyard.store")
CONNECT_TIMEOUT = 3  # seconds; a database that is down refuses at once on most networks
# A server cut off without a word (a network partition, a host gone) sends no reset: without
# these a connection waits on it for ever (the OS default is two hours of idle before a first
# keepalive, and retransmits for about 15 minutes). Keepalives probe a link idle for 10 s, and
# tcp_user_timeout drops one whose data or probes go unacknowledged for 30 s: the OS breaks it,
# and the writer reconnects. A busy server's kernel still acknowledges at once, so a long
# statement is never cut. A URL that sets any of these keeps its own value.
TCP_SETTINGS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # milliseconds
}
# Bounds the server keeps on the writer's session, for what TCP cannot see: a lock wait behind
# a stuck session ends after WRITER_STATEMENT_TIMEOUT, far beyond any healthy write (retention
# works in chunks; partition DDL runs on connections of its own with SET LOCAL bounds, and
# migrations and index builds are exempt); and a session of ours cut off mid-transaction ends
# after WRITER_IDLE_TIMEOUT, releasing the row locks (dedup keys) other nodes' writers wait on.
WRITER_STATEMENT_TIMEOUT = "5min"
WRITER_IDLE_TIMEOUT = "1min"
# A read (API, console, CLI) waits this long at most: then its caller hears StoreError (the API
# answers 503) and its connection is cut, which frees the thread. Without it, reads sent to a
# server that stopped answering (its kernel still acknowledging) held their threads for ever,
# until no read could run at all.
READ_TIMEOUT = 60.0


class PostgresStore(BaseStore):
    backend = "postgresql"

    def __init__(self, url: str, *, auto_migrate: bool = True) -> None:
        self.url = url
        self.auto_migrate = auto_migrate
        self._local = threading.local()
        self._readers: list[PgConn] = []  # every thread's, to close them at the end
        self._readers_lock = threading.Lock()
        self.writer = Writer(self._connect_writer)
        self._stopping = threading.Event()
        self._listener = threading.Thread(target=self._listen, name="hookyard-listen", daemon=True)

    def connect(self) -> PgConn:
        try:
            given = conninfo_to_dict(self.url)
            raw = psycopg.connect(
                self.url,
                autocommit=True,  # the writer opens its transactions explicitly
                connect_timeout=CONNECT_TIMEOUT,
                application_name=f"hookyard {node_name()}",
                **{key: value for key, value in TCP_SETTINGS.items() if key not in given},
            )
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}".strip()) from None
        try:
            # An ack promises a commit that survives a crash of the database server: never let
            # a server-wide `synchronous_commit = off` weaken that.
            raw.execute("SET synchronous_commit = on")
        except BaseException as exc:
            raw.close()
            if isinstance(exc, psycopg.Error):
                raise StoreError(f"cannot connect to PostgreSQL: {exc}".strip()) from None
            raise
        return PgConn(raw)

    async def connect_async(self) -> PgConn:
        """`connect` on a thread of its own. Should nobody take the connection (the wait was
        cancelled, or the event loop ended first), that thread closes it once made."""
        made: concurrent.futures.Future[PgConn] = concurrent.futures.Future()
        threading.Thread(
            target=_fill, args=(made, self.connect), name="hookyard-connect", daemon=True
        ).start()
        try:
            return await asyncio.wrap_future(made)
        except asyncio.CancelledError:
            made.add_done_callback(_close_unclaimed)  # runs on that thread, loop or no loop
            raise

    def _connect_writer(self) -> Conn:
        conn = self.connect()
        try:
            if self.migrated is None:
                # Before the bounds: a migration (or the wait for another's) may take long.
                self.migrated = migrate(conn, apply=self.auto_migrate)
            conn.execute(f"SET statement_timeout = '{WRITER_STATEMENT_TIMEOUT}'")
            conn.execute(f"SET idle_in_transaction_session_timeout = '{WRITER_IDLE_TIMEOUT}'")
        except BaseException:
            conn.close()
            raise
        return conn

    def open(self) -> None:
        self.writer.start()
        self._listener.start()

    def close(self) -> None:
        self._stopping.set()
        self.writer.stop()
        self._listener.join(timeout=5)
        with self._readers_lock:
            for conn in self._readers:
                with contextlib.suppress(Exception):
                    conn.close()
            self._readers.clear()

    def _reader(self) -> PgConn:
        conn: PgConn | None = getattr(self._local, "conn", None)
        if conn is None or conn.broken:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            if self._stopping.is_set():
                raise StoreError("the store is closed")
            conn = self.connect()
            with self._readers_lock:
                if self._stopping.is_set():  # a read still running as the store closes
                    conn.close()
                    raise StoreError("the store is closed")
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    async def read(self, fn: Callable[[Any], T]) -> T:
        used: list[PgConn] = []
        late = threading.Event()  # the caller stopped waiting

        def run() -> T:
            conn = self._reader()
            used.append(conn)
            # Either the caller's cut below finds this connection, or this finds it late
            # (connected after the bound passed): the query never runs unbounded.
            if late.is_set():
                raise StoreError("the read's caller stopped waiting")
            return fn(conn)

        try:
            return await asyncio.wait_for(asyncio.to_thread(run), READ_TIMEOUT)
        except TimeoutError:
            late.set()
            for conn in used:
                _sever(conn)
            raise StoreError(f"the database did not answer within {READ_TIMEOUT:g}s") from None
        except psycopg.OperationalError as exc:  # the server went away mid-query
            raise StoreError(f"the database is unavailable: {exc}".strip()) from None

    # -- time partitions of events (partitions.py) ------------------------------------------

    async def partitions(self) -> list[Partition]:
        return await self.read(partitions.existing)

    async def partition_sources(self, part: Partition) -> list[str]:
        return await self.read(lambda conn: partitions.sources_in(conn, part))

    async def partition_waits(self, part: Partition) -> bool:
        return await self.read(lambda conn: partitions.has_waiting(conn, part))

    async def release_span(self, part: Partition, after: str, limit: int) -> Swept:
        swept: Swept = await self.writer.run(retention.release_span, (part, after, limit))
        return swept

    async def create_partitions(self, now: float, span: float, interval: float) -> list[str]:
        return await asyncio.to_thread(
            self._maintain, lambda conn: partitions.create_ahead(conn, now, span, interval)
        )

    async def drop_partition(self, part: Partition, expired: Callable[[str], bool]) -> bool:
        return await asyncio.to_thread(
            self._maintain, lambda conn: partitions.drop(conn, part, expired)
        )

    @contextlib.asynccontextmanager
    async def exclusively(self, name: str) -> AsyncIterator[None]:
        """One process at a time across the database: waits for the session advisory lock
        `name` (polling, so that the wait can be cancelled) and holds it for the block."""
        conn = await self.connect_async()

        def take() -> bool:
            return bool(
                conn.execute(
                    "SELECT pg_try_advisory_lock(hashtextextended(current_schema() || ?, 0))",
                    (f"/{name}",),
                ).fetchone()[0]
            )

        try:
            while not await asyncio.to_thread(take):
                await asyncio.sleep(0.5)
            yield
        finally:
            await asyncio.to_thread(conn.close)  # the session ends, and its lock with it

    async def vacuum(self, tables: list[str]) -> None:
        """VACUUM these tables (never blocking writes; a table another vacuum holds is skipped),
        so that the space of the rows retention removed is reused."""
        statement = f"VACUUM (SKIP_LOCKED) {', '.join(tables)}"
        await asyncio.to_thread(self._maintain, lambda conn: conn.execute(statement))

    def sync_field_indexes(self, paths: list[str]) -> list[str]:
        """As on SQLite, without the writer's statement bound: building the index of a large
        events table (or waiting for another process building it) may take far longer."""

        def build(conn: Conn) -> list[str]:
            conn.execute("SET LOCAL statement_timeout = 0")
            return queries.sync_field_indexes(conn, [paths])[0]

        created: list[str] = self.writer.call(build)
        return created

    def _maintain(self, fn: Callable[[Conn], T]) -> T:
        """DDL on a connection of its own: its lock waits never hold up the writer's queue."""
        conn = self.connect()
        try:
            return fn(conn)
        finally:
            conn.close()

    def writer_settings(self) -> dict[str, Any]:
        """The live writer connection's durability setting (checked by the tests)."""

        def settings(conn: Conn) -> dict[str, Any]:
            return {"synchronous_commit": conn.execute("SHOW synchronous_commit").fetchone()[0]}

        result: dict[str, Any] = self.writer.call(settings)
        return result

    def _listen(self) -> None:
        """Hand the other processes' notifications to `on_notify`, reconnecting after losing
        the server (meanwhile workers fall back to polling)."""
        while not self._stopping.is_set():
            try:
                conn = self.connect()
            except StoreError:
                self._stopping.wait(1.0)
                continue
            try:
                schema = conn.execute("SELECT current_schema()").fetchone()[0]
                conn.execute("LISTEN hookyard")
                if self.on_notify is not None:
                    self.on_notify("state")  # changes missed while not listening
                while not self._stopping.is_set():
                    for note in conn.raw.notifies(timeout=0.5):
                        owner, _, topic = note.payload.partition(" ")
                        if owner == schema and self.on_notify is not None:
                            self.on_notify(topic)
            except psycopg.Error as exc:
                log.warning("lost the PostgreSQL notification link (%s); reconnecting", exc)
                time.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    conn.close()


__all__ = ["PostgresStore"]


def _fill(made: concurrent.futures.Future[PgConn], connect: Callable[[], PgConn]) -> None:
    if not made.set_running_or_notify_cancel():  # cancelled before this thread began
        return
    try:
        made.set_result(connect())
    except BaseException as exc:
        made.set_exception(exc)


def _close_unclaimed(made: concurrent.futures.Future[PgConn]) -> None:
    if not made.cancelled() and made.exception() is None:
        made.result().close()


def _sever(conn: PgConn) -> None:
    """Cut a connection's link from another thread: the read blocked on it fails at once, and
    its thread replaces the connection (broken from now on) on its next read."""
    conn.severed = True
    with contextlib.suppress(Exception):  # closed already
        link = socket.socket(fileno=conn.raw.fileno())
        try:
            link.shutdown(socket.SHUT_RDWR)
        finally:
            link.detach()  # the descriptor stays psycopg's
