"""The SQLite log starts over under a steady stream of commits, instead of growing for ever."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hookyard.store.checkpoint import Checkpointer
from hookyard.store.sqlite import SqliteStore

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

    def commit(self) -> None:
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
    for _ in range(7):
        wal.commit()
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


def test_passes_run_back_to_back_only_while_they_make_progress(wal: Log) -> None:
    checkpointer = Checkpointer(lambda: wal.copier, limit=LIMIT, tail=ROW)
    wal.commit()
    wal.hold_snapshot()  # a long read: nothing committed after it can be copied
    for _ in range(8):
        wal.commit()
    assert checkpointer.copy(wal.copier)  # far over the limit and copying: again at once
    assert not checkpointer.copy(wal.copier)  # no progress: back to the usual pace
    assert not checkpointer.behind  # too much is left for the writer to copy
    wal.reader.execute("COMMIT")
    assert checkpointer.copy(wal.copier)  # progress again; all copied: the writer finishes
    assert checkpointer.behind
    assert not checkpointer.copy(wal.copier)  # idle over the limit: no pass at once


def test_a_log_under_the_limit_is_copied_at_the_usual_pace(wal: Log) -> None:
    checkpointer = Checkpointer(lambda: wal.copier, limit=100 * ROW)
    wal.commit()
    assert not checkpointer.copy(wal.copier)
    assert not checkpointer.behind
