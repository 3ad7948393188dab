"""Checkpoints off the commit path.

With the default auto-checkpoint, every thousandth page makes one unlucky commit copy the WAL
into the database file and sync it, while its callers wait. The writer turns auto-checkpoints
off and this thread runs PASSIVE checkpoints from its own connection instead: they never block
the writer, and SQLite's C code runs them without holding the GIL.

SQLite starts the log over only when a write begins on a fully copied log. Under a steady
stream of commits, a checkpoint running beside the writer never copies the last frame (a
commit lands while it runs), and the log grew without bound: 680 MB after 30 s at full ingest
load, with p99 200 ms. So once the log passes `limit`, this thread copies again at once until
what a pass leaves is small, then the writer copies that tail itself, between two
transactions (`after_commit`): the next write starts the log over.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

from hookyard.store.db import Conn

log = logging.getLogger("hookyard.store")

LOG_LIMIT = 16 * 1024 * 1024  # bytes of log after which the log is made to start over
TAIL = 1024 * 1024  # at most this much left to copy when the writer is asked to finish


class Checkpointer:
    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        interval: float = 0.2,
        limit: int = LOG_LIMIT,
    ) -> None:
        self._connect = connect
        self._interval = interval
        self._limit = limit
        self.behind = False  # the log passed `limit`: the writer copies its last frames
        self._dirty = threading.Event()  # set after commits
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hookyard-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def after_commit(self, conn: Conn) -> None:
        """Called by the writer thread after each commit, with its connection."""
        self._dirty.set()
        if self.behind:
            self.behind = False
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as exc:  # the next pass asks again
                log.warning("checkpoint failed: %s", exc)

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()
        self._thread.join()

    def copy(self, conn: sqlite3.Connection) -> bool:
        """One PASSIVE checkpoint; whether the log is over the limit (copy again at once)."""
        try:
            _, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # the next round will try again
            log.warning("checkpoint failed: %s", exc)
            return False
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        if frames * page <= self._limit:
            return False
        self.behind = (frames - copied) * page <= TAIL
        return True

    def _run(self) -> None:
        conn = self._connect()
        try:
            while not self._stopping.is_set():
                self._dirty.wait()
                self._dirty.clear()
                if self.copy(conn):
                    self._dirty.set()
                    continue
                self._stopping.wait(self._interval)
        finally:
            conn.close()
