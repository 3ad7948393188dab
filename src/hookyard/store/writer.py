"""One writer thread per process and database, committing the writes of many requests together.

Callers on the event loop submit operations and await a future; the thread drains everything
queued, runs it in one transaction, commits (fsync: synchronous=FULL on SQLite,
synchronous_commit=on on PostgreSQL), and only then resolves the futures. That is group
commit: the fsync is shared, and no caller hears "done" before its data is durable. A group of
claims alone (run with durable=False) skips the wait for the disk; see Dialect.begin_write.
Consecutive operations of the same kind run through one handler, so that rows go in together.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from hookyard.errors import StoreError, WriteRefused
from hookyard.store.db import Conn

log = logging.getLogger("hookyard.store")

MAX_BATCH = 2000

# A handler runs a group of operations' payloads inside the open transaction, returning one
# result per payload.
Handler = Callable[[Conn, Sequence[Any]], Sequence[Any]]


@dataclass(slots=True)
class _Op:
    handler: Handler
    payload: Any
    loop: asyncio.AbstractEventLoop | _ImmediateLoop
    future: asyncio.Future[Any] | concurrent.futures.Future[Any]
    durable: bool = True  # False: claims only (see Dialect.begin_write)


_STOP = object()


class _LinkLost(Exception):
    """The connection turned out dead before a transaction began."""


class Writer:
    def __init__(self, connect: Callable[[], Conn]) -> None:
        self._connect = connect
        self._conn: Conn | None = None
        self._next_reconnect = 0.0
        self.available = True  # False from a lost database link until a write succeeds again
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="hookyard-writer", daemon=True)
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._closed = False
        # Group-commit figures for /metrics (written by the writer thread only).
        self.commits = 0
        self.committed_ops = 0
        self.commit_seconds = 0.0
        # Called in the thread after each commit, with the connection.
        self.after_commit: Callable[[Conn], None] | None = None
        self.commit_hook: Callable[[Conn], None] | None = None  # tests inject faults

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    def stop(self) -> None:
        """Finish everything queued so far, then close the connection. Later writes fail."""
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._fail_leftovers()

    def _fail_leftovers(self) -> None:
        error = StoreError("the store is closed")
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self._resolve([item], [None], error)

    def _put(self, op: _Op) -> None:
        if self._closed:
            raise StoreError("the store is closed")
        self._queue.put(op)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def run(self, handler: Handler, payload: Any, *, durable: bool = True) -> Any:
        """Queue `handler(conn, [payload, ...])` and wait until its transaction committed
        (and, if `durable`, reached the disk)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._put(_Op(handler, payload, loop, future, durable))
        return await future

    def call(self, fn: Callable[[Conn], Any]) -> Any:
        """Run `fn` in a transaction from synchronous code (start-up, maintenance, tests)."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def handler(conn: Conn, payloads: Sequence[Any]) -> list[Any]:
            return [fn(conn) for _ in payloads]

        self._put(_Op(handler, None, _IMMEDIATE, future))
        return future.result()

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._conn = self._connect()
        except BaseException as exc:  # reported to start()
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        stopping = False
        while not stopping:
            ops: list[_Op] = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stopping = True
                    break
                ops.append(item)
                if len(ops) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if ops:
                self._write(ops)
        if self._conn is not None:
            self._conn.close()

    def _connection(self) -> Conn:
        """The open connection, reconnecting once a lost one (a PostgreSQL restart) can be
        replaced; until then writes fail at once (ingest answers 503), without a wait each."""
        conn = self._conn
        if conn is not None and not getattr(conn, "broken", False):
            return conn
        if time.monotonic() < self._next_reconnect:
            raise StoreError("the database is unavailable")
        self._next_reconnect = time.monotonic() + 0.5
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
            self._conn = None
        try:
            self._conn = self._connect()
        except Exception as exc:
            raise StoreError(f"the database is unavailable: {exc}") from None
        log.warning("reconnected to the database")
        return self._conn

    def _write(self, ops: list[_Op]) -> None:
        try:
            conn = self._connection()
        except StoreError as exc:
            self.available = False
            self._resolve(ops, [None], exc)
            return
        self._execute(conn, ops)

    def _execute(self, conn: Conn, ops: list[_Op]) -> None:
        started = time.perf_counter()
        try:
            try:
                results = self._transaction(conn, ops)
            except _LinkLost:
                # The link died while idle (a database restart): nothing was sent, so the
                # group can run again on a new connection rather than fail.
                conn = self._connection()
                results = self._transaction(conn, ops)
        except Exception as exc:
            if len(ops) > 1 and not getattr(conn, "broken", False):
                # Run each alone so that one bad operation fails only its own caller.
                for op in ops:
                    self._execute(conn, [op])
                return
            if isinstance(exc, WriteRefused):
                self._resolve(ops, [None], exc)
                return
            log.error("write failed: %s", exc)
            if getattr(conn, "broken", False):
                self.available = False
            error = (
                exc if isinstance(exc, StoreError) else StoreError(f"database write failed: {exc}")
            )
            self._resolve(ops, [None], error)
            return
        self.available = True
        self.commits += 1
        self.committed_ops += len(ops)
        self.commit_seconds += time.perf_counter() - started
        self._resolve(ops, results, None)
        if self.after_commit is not None:
            self.after_commit(conn)

    def _transaction(self, conn: Conn, ops: list[_Op]) -> list[Any]:
        results: list[Any] = []
        try:
            conn.dialect.begin_write(conn, any(op.durable for op in ops))
        except Exception as exc:
            if getattr(conn, "broken", False):
                raise _LinkLost from exc
            with contextlib.suppress(Exception):  # a transaction that began and then failed
                conn.execute("ROLLBACK")
            raise
        try:
            for handler, group in groupby(ops, key=lambda op: op.handler):
                payloads = [op.payload for op in group]
                results.extend(handler(conn, payloads))
            if self.commit_hook is not None:
                self.commit_hook(conn)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):  # nothing to roll back, or the link is gone
                conn.execute("ROLLBACK")
            raise
        return results

    def _resolve(self, ops: list[_Op], results: list[Any], error: Exception | None) -> None:
        by_loop: dict[asyncio.AbstractEventLoop | _ImmediateLoop, list[tuple[_Op, Any]]] = {}
        for index, op in enumerate(ops):
            by_loop.setdefault(op.loop, []).append((op, None if error else results[index]))
        for loop, items in by_loop.items():
            # RuntimeError: the loop closed while we were writing; nobody is waiting.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, items, error)


def _settle(items: list[tuple[_Op, Any]], error: Exception | None) -> None:
    for op, result in items:
        if op.future.done():  # the caller gave up (cancelled); its data is committed anyway
            continue
        if error is not None:
            op.future.set_exception(error)
        else:
            op.future.set_result(result)


class _ImmediateLoop:
    """Stands in for an event loop when `Writer.call` is used from plain threads."""

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        fn(*args)


_IMMEDIATE = _ImmediateLoop()
