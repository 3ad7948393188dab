"""The SQLite log starts over under a steady stream of commits, instead of growing for ever."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hookyard.store.checkpoint import Checkpointer
from hookyard.store.sqlite import SqliteStore

ROW = 40_000  # bytes per commit: ten pages of log
LIMIT = 4 * ROW


def _frames(conn: sqlite3.Connection) -> int:
    """Frames in the log now (a PASSIVE checkpoint reports them; it copies what it can)."""
    return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


def test_the_writer_finishes_a_checkpoint_that_commits_kept_from_ending(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "log.db")
    writer = store.configured_connection()  # WAL, auto-checkpoints off, as the writer's
    copier = store._connect_checkpointer()
    checkpointer = Checkpointer(store._connect_checkpointer, limit=LIMIT)
    writer.execute("CREATE TABLE t (v BLOB)")

    def commit() -> None:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO t VALUES (randomblob(?))", (ROW,))
        writer.execute("COMMIT")

    try:
        for _ in range(8):
            commit()
        assert checkpointer.copy(copier)  # over the limit: copy again at once
        assert checkpointer.behind  # and what the pass left is small: the writer may finish
        # A commit lands after the pass, as one always does under load: the next write
        # cannot start the log over, because the log is not fully copied.
        commit()
        checkpointer.after_commit(writer)  # the writer copies the tail, between transactions
        assert not checkpointer.behind
        commit()  # ...so this write starts the log over
        assert _frames(copier) * 4096 <= 2 * ROW
        assert not checkpointer.copy(copier)  # under the limit: back to the usual pace
    finally:
        writer.close()
        copier.close()


def test_a_log_under_the_limit_is_copied_at_the_usual_pace(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "log.db")
    writer = store.configured_connection()
    copier = store._connect_checkpointer()
    checkpointer = Checkpointer(store._connect_checkpointer, limit=100 * ROW)
    try:
        writer.execute("CREATE TABLE t (v BLOB)")
        writer.execute("INSERT INTO t VALUES (randomblob(?))", (ROW,))
        assert not checkpointer.copy(copier)
        assert not checkpointer.behind
    finally:
        writer.close()
        copier.close()
