"""Storage backends: SQLite (embedded, the default) and PostgreSQL (several processes)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from hookyard.config import sqlite_path
from hookyard.store.base import BaseStore
from hookyard.store.db import Conn

Store = BaseStore


def is_postgres(database: str) -> bool:
    return database.startswith(("postgresql://", "postgres://"))


def open_store(database: str, base_dir: Path, *, auto_migrate: bool = True) -> Store:
    """Open (creating and migrating if needed) the database at `database`."""
    store: Store
    if is_postgres(database):
        from hookyard.store.postgres import PostgresStore  # psycopg only when it is used

        store = PostgresStore(database, auto_migrate=auto_migrate)
    else:
        from hookyard.store.sqlite import SqliteStore

        store = SqliteStore(sqlite_path(database, base_dir), auto_migrate=auto_migrate)
    store.open()
    return store


@contextlib.contextmanager
def migration_connection(database: str, base_dir: Path) -> Iterator[Conn]:
    """A connection for `hookyard migrate`. A SQLite file must not be open in a running
    Hookyard (which migrates it at start anyway); PostgreSQL migrations lock out each other."""
    if is_postgres(database):
        from hookyard.store.postgres import PostgresStore

        conn: Conn = PostgresStore(database).connect()
        try:
            yield conn
        finally:
            conn.close()
        return
    from hookyard.store.sqlite import SqliteStore

    store = SqliteStore(sqlite_path(database, base_dir))
    store.create_private()
    store.take_lock()
    try:
        conn = store.configured_connection()
        try:
            yield conn
        finally:
            conn.close()
    finally:
        store.release_lock()


__all__ = ["Store", "is_postgres", "migration_connection", "open_store"]
