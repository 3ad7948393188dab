"""The embedded SQLite store: WAL, synchronous=FULL, one writer thread, readers on their own
connections. One process owns the file (an exclusive lock beside it says which)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from hookyard.errors import StoreError
from hookyard.models import (
    Accepted,
    Claim,
    EventData,
    EventFilter,
    NewRequest,
    Outcome,
    Rejected,
)
from hookyard.store import queries
from hookyard.store.checkpoint import Checkpointer
from hookyard.store.writer import Writer

T = TypeVar("T")
SCHEMA_VERSION = 7
MIN_SQLITE = (3, 35, 0)
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",  # an acked event survives power loss, not just a crash
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=OFF",
    "PRAGMA cache_size=-65536",  # 64 MiB: dedup keys are random, keep their pages at hand
)


def _read_sql(name: str) -> str:
    return resources.files("hookyard.store").joinpath(name).read_text()


def migrations() -> list[tuple[int, str]]:
    """(version, script) for every file in store/migrations, in order."""
    folder = resources.files("hookyard.store").joinpath("migrations")
    found = [
        (int(entry.name.split("_", 1)[0]), entry.read_text())
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found)


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_file: int | None = None
        self._local = threading.local()
        self.writer = Writer(self._connect_writer)
        self.checkpointer = Checkpointer(self._connect_checkpointer)
        self.writer.after_commit = self.checkpointer.notify

    # -- life cycle -------------------------------------------------------------------------

    def open(self) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old; Hookyard needs "
                f"{'.'.join(map(str, MIN_SQLITE))} or newer (UPDATE ... FROM, JSON functions)"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            self.writer.start()
        except BaseException:
            self._release_lock()
            raise
        self.checkpointer.start()

    def close(self) -> None:
        self.writer.stop()
        self.checkpointer.stop()
        self._release_lock()

    def _take_lock(self) -> None:
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

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None

    def _connect_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # auto_vacuum must be chosen before the first table exists: retention can then give
        # space back with incremental_vacuum instead of a full VACUUM.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        for pragma in PRAGMAS:
            conn.execute(pragma)
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            raise StoreError(f"{self.path}: cannot switch to WAL journal mode")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer thread does it
        conn.execute("PRAGMA journal_size_limit=67108864")
        self._migrate(conn)
        return conn

    def _connect_checkpointer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        has_version = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'"
        ).fetchone()
        if not has_version:
            conn.executescript(f"BEGIN IMMEDIATE;\n{_read_sql('schema.sql')}\nCOMMIT;")
        version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this Hookyard "
                f"({SCHEMA_VERSION}); upgrade Hookyard"
            )
        for number, script in migrations():
            if number > version:
                conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nCOMMIT;")

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=5000")
            self._local.conn = conn
        return conn

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only query on a worker thread, off the event loop."""
        return await asyncio.to_thread(lambda: fn(self._reader()))

    def writer_settings(self) -> dict[str, Any]:
        """The live writer connection's journal and sync settings (checked by the tests)."""

        def settings(conn: sqlite3.Connection) -> dict[str, Any]:
            return {
                "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
                "synchronous": conn.execute("PRAGMA synchronous").fetchone()[0],
                "auto_vacuum": conn.execute("PRAGMA auto_vacuum").fetchone()[0],
            }

        result: dict[str, Any] = self.writer.call(settings)
        return result

    # -- writes -----------------------------------------------------------------------------

    @property
    def pending_writes(self) -> int:
        return self.writer.pending

    async def ingest(self, request: NewRequest) -> list[Accepted]:
        """Commit a request's events and their deliveries durably; duplicates are reported."""
        rows = queries.ingest_rows(request)
        result: list[Accepted] = await self.writer.run(queries.ingest, rows)
        return result

    async def claim(self, limits: dict[str, int], total: int, lease: float) -> list[Claim]:
        """Lease up to limits[destination] deliveries of each destination, `total` at most."""
        result: list[Claim] = await self.writer.run(
            queries.claim, (time.time(), lease, limits, total)
        )
        return result

    async def release(self, claims: list[Claim]) -> None:
        await self.writer.run(queries.release, claims)

    async def finish(self, outcomes: list[Outcome]) -> list[float | None]:
        """Record attempts; returns, for each, since when its destination has been failing."""
        failing: list[float | None] = await self.writer.run(queries.finish_groups, outcomes)
        return failing

    async def set_destination_state(self, name: str, state: str, reason: str | None) -> bool:
        changed: bool = await self.writer.run(queries.set_destination_state, (name, state, reason))
        return changed

    async def retry_dead(self, destination: str) -> int:
        count: int = await self.writer.run(queries.retry_dead, destination)
        return count

    async def replay(
        self, event_ids: list[str], destination: str | None, configured: list[str]
    ) -> int:
        """New deliveries of these events (to configured destinations); returns how many."""
        created: int = await self.writer.run(
            queries.replay, (event_ids, destination, frozenset(configured))
        )
        return created

    async def retry_delivery(self, delivery_id: str) -> str | None:
        before: str | None = await self.writer.run(queries.retry_delivery, delivery_id)
        return before

    async def list_deliveries(self, **filters: Any) -> list[dict[str, Any]]:
        return await self.read(lambda conn: queries.list_deliveries(conn, **filters))

    async def list_attempts(self, **filters: Any) -> list[dict[str, Any]]:
        return await self.read(lambda conn: queries.list_attempts(conn, **filters))

    async def get_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        rows = await self.list_deliveries(delivery_id=delivery_id, limit=1)
        return rows[0] if rows else None

    async def queue_figures(self) -> dict[tuple[str, str], tuple[int, float | None]]:
        return await self.read(queries.queue_figures)

    async def destination_states(self) -> dict[str, dict[str, Any]]:
        return await self.read(queries.destination_states)

    async def record_rejected(self, rows: list[Rejected], keep: int) -> None:
        await self.writer.run(queries.record_rejected, (rows, keep))

    async def expire_dedup(self, cutoff: float, limit: int = 5000) -> int:
        """Forget up to `limit` dedup keys first seen before `cutoff`; returns how many."""
        removed: int = await self.writer.run(queries.expire_dedup, (cutoff, limit))
        return removed

    def ensure_token(self, name: str, token_hash: str, scope: str) -> None:
        self.writer.call(lambda conn: queries.ensure_token(conn, name, token_hash, scope))

    async def analyze(self) -> None:
        await self.writer.run(queries.analyze, None)

    def sync_field_indexes(self, paths: list[str]) -> list[str]:
        """Index exactly these payload fields; returns the indexes it had to build."""
        created: list[str] = self.writer.call(
            lambda conn: queries.sync_field_indexes(conn, [paths])[0]
        )
        return created

    def replace_admin_token(self, token_hash: str) -> None:
        self.writer.call(lambda conn: queries.replace_admin_token(conn, token_hash))

    def has_admin_token(self) -> bool:
        return queries.has_admin_token(self._reader())

    # -- reads ------------------------------------------------------------------------------

    async def find_token(self, token_hash: str) -> tuple[str, str, str] | None:
        return await self.read(lambda conn: queries.find_token(conn, token_hash))

    async def create_token(self, name: str, token_hash: str, scope: str) -> str:
        token_id: str = await self.writer.run(queries.create_token, (name, token_hash, scope))
        return token_id

    async def revoke_token(self, token_id: str) -> bool:
        revoked: bool = await self.writer.run(queries.revoke_token, token_id)
        return revoked

    async def list_tokens(self) -> list[dict[str, Any]]:
        return await self.read(queries.list_tokens)

    async def record_audit(self, entry: tuple[Any, ...]) -> None:
        await self.writer.run(queries.record_audit, entry)

    async def list_audit(self, **page: Any) -> list[dict[str, Any]]:
        return await self.read(lambda conn: queries.list_audit(conn, **page))

    async def event_data(self, event_ids: Sequence[str]) -> dict[str, EventData]:
        return await self.read(lambda conn: queries.event_data(conn, event_ids))

    async def list_events(self, filters: EventFilter, **page: Any) -> list[dict[str, Any]]:
        return await self.read(lambda conn: queries.list_events(conn, filters, **page))

    async def export_events(
        self, filters: EventFilter, *, cursor: str | None, limit: int
    ) -> list[tuple[Any, ...]]:
        return await self.read(
            lambda conn: queries.export_events(conn, filters, cursor=cursor, limit=limit)
        )

    async def import_events(self, rows: list[tuple[Any, ...]]) -> int:
        imported: int = await self.writer.run(queries.import_events, rows)
        return imported

    async def count_events(self, filters: EventFilter) -> int:
        return await self.read(lambda conn: queries.count_events(conn, filters))

    async def get_event(self, event_id: str) -> dict[str, Any] | None:
        return await self.read(lambda conn: queries.get_event(conn, event_id))

    async def event_exists(self, event_id: str) -> bool:
        return await self.read(
            lambda conn: (
                conn.execute("SELECT 1 FROM events WHERE id = ?", (event_id,)).fetchone()
                is not None
            )
        )

    async def get_raw(self, event_id: str) -> tuple[bytes | None, str | None] | None:
        return await self.read(lambda conn: queries.get_raw(conn, event_id))

    async def list_rejected(self, **filters: Any) -> list[dict[str, Any]]:
        return await self.read(lambda conn: queries.list_rejected(conn, **filters))

    async def next_due(self, destinations: Sequence[str]) -> float | None:
        return await self.read(lambda conn: queries.next_due(conn, destinations))


__all__ = ["SqliteStore"]
