"""Checkpoints off the commit path.

With the default auto-checkpoint, every thousandth page makes one unlucky commit copy the WAL
into the database file and sync it, while its callers wait. The writer turns auto-checkpoints
off and this thread runs PASSIVE checkpoints from its own connection instead: they never block
the writer, and SQLite's C code runs them without holding the GIL.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger("hookyard.store")


class Checkpointer:
    def __init__(self, connect: Callable[[], sqlite3.Connection], interval: float = 0.2) -> None:
        self._connect = connect
        self._interval = interval
        self._dirty = threading.Event()  # set after commits
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hookyard-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        self._dirty.set()

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()
        self._thread.join()

    def _run(self) -> None:
        conn = self._connect()
        try:
            while not self._stopping.is_set():
                self._dirty.wait()
                self._dirty.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # the next round will try again
                    log.warning("checkpoint failed: %s", exc)
                self._stopping.wait(self._interval)
        finally:
            conn.close()
