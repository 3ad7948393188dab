"""Checkpoints off the commit path.

With the default auto-checkpoint, every thousandth page makes one unlucky commit copy the WAL
into the database file and sync it, while its callers wait. The writer turns auto-checkpoints
off and this thread runs PASSIVE checkpoints from its own connection instead: they never block
the writer, and SQLite's C code runs them without holding the GIL.

SQLite starts the log over only when a write begins on a fully copied log. Under a steady
stream of commits, a checkpoint running beside the writer never copies the last frame (a
commit lands while it runs), and the log grew without bound: 680 MB after 30 s at full ingest
load, with p99 200 ms. So once the log passes `limit`, this thread copies again at once while
its passes make progress, and after each that leaves at most `tail`, the writer copies the
rest itself after its next commit (`after_commit`): the write after that starts the log over.
A reader still holding old frames (a long export) holds all of this back, at the usual pace.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

from hookyard.store.db import Conn

log = logging.getLogger("hookyard.store")

LOG_LIMIT = 16 * 1024 * 1024  # bytes of log after which the log is made to start over
TAIL = 1024 * 1024  # what the writer may be asked to copy (plus what it committed since)


class Checkpointer:
    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        interval: float = 0.2,
        limit: int = LOG_LIMIT,
        tail: int = TAIL,
    ) -> None:
        self._connect = connect
        self._interval = interval
        self._limit = limit
        self._tail = tail
        self._copied = -1  # frames the last pass reported copied: did the next one progress?
        self.behind = False  # over the limit with at most `tail` left: the writer finishes
        self._dirty = threading.Event()  # set after commits
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hookyard-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def after_commit(self, conn: Conn) -> None:
        """Called by the writer thread after each commit, with its connection."""
        self._dirty.set()
        if not self.behind:
            return
        self.behind = False
        try:
            busy = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0]
        except sqlite3.Error as exc:  # the next pass asks again
            log.warning("checkpoint failed: %s", exc)
            return
        if busy:  # this thread was copying: try again after the next commit
            self.behind = True

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()
        self._thread.join()

    def copy(self, conn: sqlite3.Connection) -> bool:
        """One PASSIVE checkpoint; whether to run the next one at once."""
        try:
            busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        except sqlite3.Error as exc:  # the next round will try again
            log.warning("checkpoint failed: %s", exc)
            return False
        progressed = bool(copied != self._copied)
        self._copied = copied
        if busy or frames * page <= self._limit:
            return False
        self.behind = (frames - copied) * page <= self._tail
        return progressed

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
