"""Storage backends. SQLite is the embedded default; PostgreSQL comes with its own issue."""

from __future__ import annotations

from pathlib import Path

from hookyard.config import sqlite_path
from hookyard.store.sqlite import SqliteStore

Store = SqliteStore


def open_store(database: str, base_dir: Path) -> Store:
    """Open (creating and migrating if needed) the database at `database`."""
    store = SqliteStore(sqlite_path(database, base_dir))
    store.open()
    return store


__all__ = ["Store", "open_store"]
