"""The writer thread: group commit, failure isolation, and a clean close."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from hookyard.errors import StoreError
from hookyard.store import writer as writer_module
from hookyard.store.sqlite import SqliteStore, connect
from hookyard.store.writer import Writer, bounded_wait
from tests.conftest import DEADLINE


def _writer(tmp_path: Path) -> Writer:
    def open_connection() -> sqlite3.Connection:
        conn = connect(tmp_path / "w.db")
        conn.execute("CREATE TABLE IF NOT EXISTS t (v TEXT UNIQUE)")
        return conn

    writer = Writer(open_connection)
    writer.start()
    return writer


def nothing(conn: sqlite3.Connection, payloads: Sequence[None]) -> list[None]:
    return [None for _ in payloads]


def insert(conn: sqlite3.Connection, values: Sequence[str]) -> list[str]:
    for value in values:
        conn.execute("INSERT INTO t VALUES (?)", (value,))
    return list(values)


async def test_one_failing_operation_fails_only_its_caller(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    try:
        await writer.run(insert, "taken")
        # Queued together, these share a transaction until the duplicate breaks it; each is
        # then retried alone, so the good ones still commit.
        results = await asyncio.gather(
            writer.run(insert, "a"),
            writer.run(insert, "taken"),
            writer.run(insert, "b"),
            return_exceptions=True,
        )
        assert results[0] == "a" and results[2] == "b"
        assert isinstance(results[1], StoreError)
        assert "UNIQUE" in str(results[1])
        rows = writer.call(lambda conn: conn.execute("SELECT v FROM t ORDER BY v").fetchall())
        assert rows == [("a",), ("b",), ("taken",)]
    finally:
        writer.stop()


async def test_writes_after_stop_fail_instead_of_hanging(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    writer.stop()
    with pytest.raises(StoreError, match="closed"):
        await writer.run(insert, "late")
    with pytest.raises(StoreError, match="closed"):
        writer.call(lambda conn: None)


async def test_after_commit_runs_with_the_connection_only_after_a_commit(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    seen: list[object] = []
    called = threading.Event()

    def hook(conn: object) -> None:  # runs after the callers hear back: wait for it
        seen.append(conn)
        called.set()

    writer.after_commit = hook
    try:
        await writer.run(insert, "once")
        assert await asyncio.to_thread(called.wait, DEADLINE)
        called.clear()
        with pytest.raises(StoreError):
            await writer.run(insert, "once")  # rolled back: nothing committed
        await writer.run(insert, "twice")
        assert await asyncio.to_thread(called.wait, DEADLINE)
        assert len(seen) == 2  # the writes are handled in order: none for the failed one
        assert all(isinstance(conn, sqlite3.Connection) for conn in seen)
    finally:
        writer.stop()


async def test_a_write_whose_bound_passed_is_not_run_again_alone(tmp_path: Path) -> None:
    """A group that fails is run again one operation at a time: a bounded write whose caller
    heard "not stored" meanwhile must not commit then (its retry would be a second event)."""
    writer = _writer(tmp_path)
    try:
        await writer.run(insert, "taken")

        def slow_insert(conn: sqlite3.Connection, values: Sequence[str]) -> list[str]:
            time.sleep(1.0)  # outlasts the bound below
            return insert(conn, values)

        with bounded_wait(0.2):  # tasks take the bound along (contextvars)
            bounded = [
                asyncio.create_task(writer.run(slow_insert, "gave-up")),
                asyncio.create_task(writer.run(slow_insert, "taken")),
            ]
        results = await asyncio.gather(*bounded, return_exceptions=True)
        assert all(isinstance(r, StoreError) and "in time" in str(r) for r in results), results
        assert await writer.run(insert, "next") == "next"  # unbounded: still committed
        rows = writer.call(lambda conn: conn.execute("SELECT v FROM t ORDER BY v").fetchall())
        assert rows == [("next",), ("taken",)]
    finally:
        writer.stop()


async def test_stop_waits_for_a_hung_database_only_so_long(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing on a database that hangs mid-commit gives up after its timeout: what is still
    queued fails, rather than the shutdown waiting for ever."""
    writer = _writer(tmp_path)
    hung, entered = threading.Event(), threading.Event()

    def hang(conn: sqlite3.Connection) -> None:
        entered.set()
        hung.wait(DEADLINE)

    writer.commit_hook = hang
    under_way = asyncio.ensure_future(writer.run(insert, "under way"))
    assert await asyncio.to_thread(entered.wait, DEADLINE)
    queued = asyncio.ensure_future(writer.run(insert, "queued"))
    await asyncio.sleep(0)  # queued behind the hung commit
    await asyncio.to_thread(writer.stop, 0.2)
    assert "did not finish the last writes within 0.2s" in caplog.text
    with pytest.raises(StoreError, match="closed"):
        await queued
    writer.commit_hook = None
    hung.set()  # the database comes back: the thread commits what it had, then ends
    assert await under_way == "under way"
    await asyncio.to_thread(writer._thread.join, DEADLINE)
    assert not writer._thread.is_alive()


async def test_sqlite_keeps_its_lock_while_a_hung_writer_may_still_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closed past the writer's stop timeout, the store gave its lock up while the writer's
    transaction could still commit: another Hookyard could take the database meanwhile."""
    monkeypatch.setattr(writer_module, "STOP_TIMEOUT", 0.3)
    first = SqliteStore(tmp_path / "h.db")
    first.open()
    hung, entered = threading.Event(), threading.Event()

    def hang(conn: object) -> None:  # the commit stalls (a disk, a network file system)
        entered.set()
        hung.wait(DEADLINE)

    first.writer.commit_hook = hang
    write = asyncio.ensure_future(first.writer.run(nothing, None))
    assert await asyncio.to_thread(entered.wait, DEADLINE)
    await asyncio.to_thread(first.close)
    second = SqliteStore(tmp_path / "h.db", auto_migrate=False)
    try:
        with pytest.raises(StoreError, match="in use"):
            await asyncio.to_thread(second.take_lock)
    finally:
        first.writer.commit_hook = None
        hung.set()
        await write
