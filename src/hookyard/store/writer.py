"""One writer thread per process and database, committing the writes of many requests together.

Callers on the event loop submit operations and await a future; the thread drains everything
queued, runs it in one transaction, commits (fsync: synchronous=FULL on SQLite,
synchronous_commit=on on PostgreSQL), and only then resolves the futures. That is group
commit: the fsync is shared, and no caller hears "done" before its data is durable. A group of
claims alone (run with durable=False) skips the wait for the disk; see Dialect.begin_write.
Consecutive operations of the same kind run through one handler, so that rows go in together.

A caller that must answer in time (ingest: 503 past server.commit_timeout, so that a provider
retries rather than waits on a database that hangs) queues its write under `bounded_wait`: past
the bound its wait fails with StoreError, and the write is dropped if its transaction has not
begun. One already under way may still commit; the provider's retry then finds the event's
dedup key and is acked as a duplicate, not delivered again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from hookyard.errors import StoreError, WriteRefused
from hookyard.store.db import Conn

log = logging.getLogger("hookyard.store")

MAX_BATCH = 2000
QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement its statement_timeout ended
# How often bounded waits are checked: one timer per event loop while any is waiting, rather
# than one per request (a timer per request costs ingest several percent).
SWEEP_INTERVAL = 0.25
# How long closing waits for the last writes: far beyond a healthy commit, well within a
# service manager's stop timeout (systemd's default: 90 s).
STOP_TIMEOUT = 30.0

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
    droppable: bool = False  # queued under bounded_wait: dropped if its caller stopped waiting


_STOP = object()
# Bounded waits' deadlines (loop time) and futures, in the order queued.
_Waits = deque[tuple[float, asyncio.Future[Any]]]
_bound: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "hookyard_write_bound", default=None
)


def bounded_wait(seconds: float) -> _BoundedWait:
    """Writes queued (`Writer.run`) within this `with` block fail with StoreError once
    `seconds` pass without their commit. Should the caller stop waiting (that, or a
    cancellation) before its transaction begins, the write is dropped: for callers that then
    answer "not stored, retry", where a late commit could be stored again by the retry."""
    return _BoundedWait(seconds)


class _BoundedWait:
    # A class rather than @contextmanager: a third of the cost, on every ingest request.
    __slots__ = ("_seconds", "_token")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    def __enter__(self) -> None:
        self._token = _bound.set(self._seconds)

    def __exit__(self, *exc: object) -> None:
        _bound.reset(self._token)


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
        self._bounded: dict[asyncio.AbstractEventLoop, _Waits] = {}  # see bounded_wait

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    def stop(self, timeout: float | None = None) -> bool:
        """Finish everything queued so far, then close the connection. Later writes fail.
        A database that hangs is waited for `timeout` seconds at most (default STOP_TIMEOUT):
        the writes not begun by then fail (their leases run out and return to the queue); the
        group under way may still commit, should the database come back. False then: the
        thread still holds its connection."""
        self._closed = True
        wait = STOP_TIMEOUT if timeout is None else timeout
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(wait)
            if self._thread.is_alive():
                log.error(
                    "the database did not finish the last writes within %gs; closing without them",
                    wait,
                )
        self._fail_leftovers()
        if self._thread.is_alive():  # it ends, should the database come back
            self._queue.put(_STOP)
            return False
        return True

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
        bound = _bound.get()
        self._put(_Op(handler, payload, loop, future, durable, bound is not None))
        if bound is not None:
            waiting = self._bounded.get(loop)
            if waiting is None:
                waiting = self._bounded[loop] = deque()
                loop.call_later(SWEEP_INTERVAL, self._sweep, loop)
            waiting.append((loop.time() + bound, future))
        return await future

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the bounded waits past their deadline (on their loop). All are looked at: a
        reload may have shortened the bound, so deadlines need not follow the queue's order."""
        now = loop.time()
        overdue = 0
        waiting: _Waits = deque()
        for deadline, future in self._bounded[loop]:
            if future.done():
                continue
            if deadline <= now:
                future.set_exception(StoreError("the database did not commit in time"))
                overdue += 1
            else:
                waiting.append((deadline, future))
        self._bounded[loop] = waiting
        if overdue:
            if self.available:  # once, until a write succeeds again
                log.warning("the database did not commit %d writes in time; is it stuck?", overdue)
            self.available = False  # as for a lost link: /readyz answers 503
        if waiting:
            loop.call_later(SWEEP_INTERVAL, self._sweep, loop)
        else:  # the next bounded wait starts the timer again
            del self._bounded[loop]

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
        ops = _awaited(ops)
        if not ops:
            return
        try:
            conn = self._connection()
        except StoreError as exc:
            self.available = False
            self._resolve(ops, [None], exc)
            return
        self._execute(conn, ops)

    def _execute(self, conn: Conn, ops: list[_Op]) -> None:
        # Again before each run: a reconnect, or a group that failed and now runs each
        # operation alone, may have outlasted callers' bounds.
        ops = _awaited(ops)
        if not ops:
            return
        started = time.perf_counter()
        try:
            try:
                results = self._transaction(conn, ops)
            except _LinkLost:
                # The link died while idle (a database restart): nothing was sent, so the
                # group can run again on a new connection rather than fail.
                conn = self._connection()
                ops = _awaited(ops)
                if not ops:
                    return
                results = self._transaction(conn, ops)
        except Exception as exc:
            # A statement the server ended at its statement_timeout (a lock wait behind a stuck
            # session) would wait as long again for each operation alone.
            timed_out = getattr(exc, "sqlstate", None) == QUERY_CANCELED
            if len(ops) > 1 and not getattr(conn, "broken", False) and not timed_out:
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


def _awaited(ops: list[_Op]) -> list[_Op]:
    """The operations still awaited: a bounded one whose caller stopped waiting (and heard
    "not stored, retry") is dropped before its transaction begins. Read from the writer
    thread, a future may turn done just after: that write then commits unanswered, as one
    under way does, and the retry finds its dedup key."""
    left = [op for op in ops if not (op.droppable and op.future.done())]
    if len(left) < len(ops):
        log.warning("dropped %d writes whose callers stopped waiting", len(ops) - len(left))
    return left


def _settle(items: list[tuple[_Op, Any]], error: Exception | None) -> None:
    for op, result in items:
        if op.future.done():  # the caller gave up (cancelled, bounded_wait): it may be stored
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
