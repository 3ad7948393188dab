"""The embedded SQLite store: WAL, synchronous=FULL, one writer thread, readers on their own
connections. One process owns the file (an exclusive lock beside it says which)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from hookyard.errors import StoreError
from hookyard.store.base import BaseStore
from hookyard.store.checkpoint import Checkpointer
from hookyard.store.db import Conn, SqliteConn
from hookyard.store.migrate import migrate
from hookyard.store.writer import Writer

MIN_SQLITE = (3, 35, 0)
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",  # an acked event survives power loss, not just a crash
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=OFF",
    "PRAGMA cache_size=-65536",  # 64 MiB: dedup keys are random, keep their pages at hand
)


def connect(path: Path | str, **kwargs: Any) -> SqliteConn:
    conn: SqliteConn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, factory=SqliteConn, **kwargs
    )
    return conn


class SqliteStore(BaseStore):
    backend = "sqlite"

    def __init__(self, path: Path, *, auto_migrate: bool = True) -> None:
        self.auto_migrate = auto_migrate
        self.path = path
        self._lock_file: int | None = None
        self._local = threading.local()
        self.writer = Writer(self._connect_writer)
        self.checkpointer = Checkpointer(self._connect_checkpointer)
        self.writer.after_commit = self.checkpointer.after_commit

    # -- life cycle -------------------------------------------------------------------------

    def open(self) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old; Hookyard needs "
                f"{'.'.join(map(str, MIN_SQLITE))} or newer (UPDATE ... FROM, JSON functions)"
            )
        self.create_private()
        self.take_lock()
        try:
            self.writer.start()
        except BaseException:
            self.release_lock()
            raise
        self.checkpointer.start()

    def close(self) -> None:
        stopped = self.writer.stop()
        self.checkpointer.stop()
        if stopped:  # else its hung transaction may still commit: the lock goes with the process
            self.release_lock()

    def create_private(self) -> None:
        """Create the database file, if new, readable by its owner only: raw bodies hold what
        providers send (credentials in them too), and SQLite gives the log and index files
        the database's mode."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

    def take_lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(
                f"{self.path} is in use by another Hookyard process (pid {owner}); on SQLite one "
                "process owns the database: run every role in one `hookyard serve`, or use "
                "PostgreSQL for several processes"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_file = fd

    def release_lock(self) -> None:
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None

    def _connect_writer(self) -> Conn:
        conn = self.configured_connection()
        self._migrate(conn)
        return conn

    def configured_connection(self) -> Conn:
        """A read-write connection in WAL mode with the durability settings."""
        conn = connect(self.path)
        # auto_vacuum must be chosen before the first table exists: retention can then give
        # space back with incremental_vacuum instead of a full VACUUM.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        for pragma in PRAGMAS:
            conn.execute(pragma)
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            raise StoreError(f"{self.path}: cannot switch to WAL journal mode")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer thread does it
        conn.execute("PRAGMA journal_size_limit=67108864")
        return conn

    def _connect_checkpointer(self) -> sqlite3.Connection:
        conn = connect(self.path)
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _migrate(self, conn: Conn) -> None:
        try:
            self.migrated = migrate(conn, apply=self.auto_migrate)
        except StoreError as exc:
            raise StoreError(f"{self.path}: {exc}") from None

    def _reader(self) -> Conn:
        conn: Conn | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(f"file:{self.path}?mode=ro", uri=True)
            conn.execute("PRAGMA busy_timeout=5000")
            self._local.conn = conn
        return conn

    def writer_settings(self) -> dict[str, Any]:
        """The live writer connection's journal and sync settings (checked by the tests)."""

        def settings(conn: Conn) -> dict[str, Any]:
            return {
                "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
                "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0],
                "auto_vacuum": conn.execute("PRAGMA auto_vacuum").fetchone()[0],
            }

        result: dict[str, Any] = self.writer.call(settings)
        return result


__all__ = ["SqliteStore", "connect"]
