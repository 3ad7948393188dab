"""Checkpoints off the commit path.

With the default auto-checkpoint, every thousandth page makes one unlucky commit copy the WAL
into the database file and sync it, while its callers wait. The writer turns auto-checkpoints
off and this thread runs PASSIVE checkpoints from its own connection instead: they never block
the writer, and SQLite's C code runs them without holding the GIL.

SQLite starts the log over only when a write begins on a fully copied log that no reader is
still reading. Under a steady stream of commits, a checkpoint running beside the writer never
copies the last frame (a commit lands while it runs), and the log grew without bound: 680 MB
after 30 s at full ingest load, with p99 200 ms. So once the log passes `limit`, this thread
runs its passes back to back while they copy much; when a pass copied little (so about that
much lands during one) and readers hold back little, it steps aside for an interval and asks
the writer to copy the rest after its next commit (`after_commit`), uncontended: the write
after that starts the log over. A reader still holding old frames (a long export) holds all
of this back, at the usual pace.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

from hookyard.store.db import Conn

log = logging.getLogger("hookyard.store")

LOG_LIMIT = 16 * 1024 * 1024  # bytes of log after which the log is made to start over
TAIL = 1024 * 1024  # about what the writer is asked to copy when it finishes a checkpoint


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
        self._copied = -1  # frames of the log copied as of the last pass
        self.behind = False  # over the limit with little left: the writer finishes
        self._dirty = threading.Event()  # set after commits
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hookyard-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def after_commit(self, conn: Conn) -> None:
        """Called by the writer thread after each commit, with its connection."""
        if self.behind:
            self.behind = False
            try:
                busy = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0]
            except sqlite3.Error as exc:  # the next pass asks again
                log.warning("checkpoint failed: %s", exc)
            else:
                if busy:  # this thread was copying: try again after the next commit
                    self.behind = True
        self._dirty.set()

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
        if busy:  # the writer is copying
            return False
        # The log counts from its start (it may have started over since the last pass).
        gained = copied - self._copied if 0 <= self._copied <= copied else copied
        self._copied = copied
        if frames * page <= self._limit:
            return False
        # What the writer would copy: what readers hold back, plus about what lands while a
        # pass like this one runs.
        self.behind = (frames - copied + gained) * page <= self._tail
        return gained > 0 and not self.behind

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stopping.is_set():
                self._dirty.wait()
                self._dirty.clear()
                if conn is None:
                    try:
                        conn = self._connect()
                    except sqlite3.Error as exc:
                        log.error("cannot open a connection for checkpoints: %s", exc)
                        self._stopping.wait(self._interval)
                        self._dirty.set()
                        continue
                if self.copy(conn):
                    self._dirty.set()
                    continue
                self._stopping.wait(self._interval)
        finally:
            if conn is not None:
                conn.close()
