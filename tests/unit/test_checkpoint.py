"""The SQLite log starts over under a steady stream of commits, instead of growing for ever."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hookyard.store.checkpoint import Checkpointer
from hookyard.store.sqlite import SqliteStore
from tests.conftest import until_deadline

ROW = 40_000  # bytes per commit: ten pages of log
LIMIT = 4 * ROW


class Log:
    """A database in WAL mode with the writer's settings, a checkpointer's connection and a
    reader's."""

    def __init__(self, path: Path) -> None:
        store = SqliteStore(path)
        self.writer = store.configured_connection()  # auto-checkpoints off, as the writer's
        self.copier = store._connect_checkpointer()
        self.reader = store._connect_checkpointer()
        self.writer.execute("CREATE TABLE t (v BLOB)")

    def commit(self, times: int = 1) -> None:
        for _ in range(times):
            self.writer.execute("BEGIN IMMEDIATE")
            self.writer.execute("INSERT INTO t VALUES (randomblob(?))", (ROW,))
            self.writer.execute("COMMIT")

    def hold_snapshot(self) -> None:
        """Start a read that keeps the frames committed after it from being copied."""
        self.reader.execute("BEGIN")
        self.reader.execute("SELECT count(*) FROM t").fetchone()

    def frames(self) -> int:
        """Frames in the log now (a PASSIVE checkpoint reports them; it copies what it can)."""
        return int(self.copier.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])

    def close(self) -> None:
        for conn in (self.writer, self.copier, self.reader):
            conn.close()


@pytest.fixture
def wal(tmp_path: Path) -> Iterator[Log]:
    log = Log(tmp_path / "log.db")
    yield log
    log.close()


def test_the_writer_finishes_a_checkpoint_that_commits_kept_from_ending(wal: Log) -> None:
    checkpointer = Checkpointer(lambda: wal.copier, limit=LIMIT)
    wal.commit(7)
    # A commit lands while the pass runs, as one always does under load (here the reader
    # stands for it: it keeps the last commit's frames from being copied).
    wal.hold_snapshot()
    wal.commit()
    checkpointer.copy(wal.copier)  # over the limit, with only a tail left...
    assert checkpointer.behind  # ...for the writer to finish
    wal.reader.execute("COMMIT")
    wal.commit()  # the log is not fully copied: this write cannot start it over
    checkpointer.after_commit(wal.writer)  # the writer copies the rest, between transactions
    assert not checkpointer.behind
    wal.commit()  # ...so this write starts the log over
    assert wal.frames() * 4096 <= 2 * ROW


def test_passes_run_back_to_back_while_they_copy_much_then_the_writer_finishes(
    wal: Log,
) -> None:
    checkpointer = Checkpointer(lambda: wal.copier, limit=LIMIT, tail=2 * ROW)
    assert not checkpointer.copy(wal.copier)  # an empty log
    wal.commit(8)
    assert checkpointer.copy(wal.copier)  # over the limit, and it copied much: again at once
    assert not checkpointer.behind
    # Nothing new: the next pass copies nothing, so nothing lands during one either.
    assert not checkpointer.copy(wal.copier)
    assert checkpointer.behind


def test_a_reader_holding_the_log_back_slows_nothing_down_to_a_spin(wal: Log) -> None:
    checkpointer = Checkpointer(lambda: wal.copier, limit=LIMIT, tail=2 * ROW)
    wal.commit()
    assert not checkpointer.copy(wal.copier)  # under the limit
    wal.hold_snapshot()  # a long read: nothing committed after it can be copied
    wal.commit(8)
    assert not checkpointer.copy(wal.copier)  # no progress: the usual pace
    assert not checkpointer.behind  # and too much left for the writer
    wal.reader.execute("COMMIT")
    assert checkpointer.copy(wal.copier)  # the read ended: copying much again


def test_a_log_under_the_limit_is_copied_at_the_usual_pace(wal: Log) -> None:
    checkpointer = Checkpointer(lambda: wal.copier, limit=100 * ROW)
    wal.commit()
    assert not checkpointer.copy(wal.copier)
    assert not checkpointer.behind


def test_an_idle_log_over_the_limit_is_not_copied_over_and_over(wal: Log) -> None:
    """The thread itself: passes over an idle log come at the interval, not back to back."""
    passes = 0

    class Counting(Checkpointer):
        def copy(self, conn: Any) -> bool:
            nonlocal passes
            passes += 1
            return super().copy(conn)

    wal.commit(8)
    checkpointer = Counting(lambda: wal.copier, interval=0.05, limit=LIMIT, tail=2 * ROW)
    checkpointer.start()
    try:
        for _ in until_deadline():  # a loaded machine may start the thread late
            if passes:
                break
            checkpointer._dirty.set()
            time.sleep(0.01)
        first = passes
        for _ in range(6):
            checkpointer._dirty.set()  # as commits would
            time.sleep(0.05)
        later = passes - first
    finally:
        checkpointer.stop()
    assert first >= 1
    assert later <= 20  # a spin made tens of thousands in that time


class _Busy:
    def execute(self, sql: str) -> Any:
        class Row:
            def fetchone(self) -> tuple[int, int, int]:
                return (1, -1, -1)  # the other connection was checkpointing

        return Row()


def test_a_writer_checkpoint_that_met_the_thread_s_asks_again(wal: Log) -> None:
    checkpointer = Checkpointer(lambda: wal.copier)
    checkpointer.behind = True
    checkpointer.after_commit(_Busy())  # type: ignore[arg-type]
    assert checkpointer.behind
    checkpointer.after_commit(wal.writer)
    assert not checkpointer.behind


def test_the_store_s_writer_finishes_checkpoints_after_its_commits(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    store.open()
    try:
        store.checkpointer.stop()  # alone with the writer: no pass of its own to meet
        store.checkpointer.behind = True
        store.writer.call(lambda conn: conn.execute("CREATE TABLE t (v)"))
        # The hook runs after the caller heard back; the writer takes one write at a time,
        # so once a second write is answered, the first one's hook has run.
        store.writer.call(lambda conn: None)
        assert not store.checkpointer.behind
    finally:
        store.close()
