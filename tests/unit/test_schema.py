"""Migrations and the reference schema agree; old databases are upgraded in place."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from hookyard.errors import StoreError
from hookyard.store.migrate import SCHEMA_VERSION, reference_schema
from hookyard.store.migrate import migrations as all_migrations
from hookyard.store.sqlite import SqliteStore


def migrations() -> list[tuple[int, str]]:
    return all_migrations("sqlite")


def _read_sql(name: str) -> str:
    assert name == "schema.sql"
    return reference_schema("sqlite")


def _schema(conn: sqlite3.Connection) -> list[tuple[str, str, object]]:
    """Tables by their columns (ALTER TABLE rewrites the stored SQL text), indexes by SQL."""

    def normal(sql: str) -> str:
        sql = re.sub(r"--[^\n]*", "", sql or "")
        return re.sub(r"\s+", " ", sql).strip()

    rows = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
    return [
        (kind, name, conn.execute(f"PRAGMA table_xinfo({name})").fetchall())
        if kind == "table"
        else (kind, name, normal(sql))
        for kind, name, sql in rows
    ]


def test_every_migration_in_order_gives_the_reference_schema() -> None:
    stepwise = sqlite3.connect(":memory:")
    for _, script in migrations():
        stepwise.executescript(script)
    reference = sqlite3.connect(":memory:")
    reference.executescript(_read_sql("schema.sql"))
    assert _schema(stepwise) == _schema(reference)
    versions = [number for number, _ in migrations()]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    assert stepwise.execute("SELECT max(version) FROM schema_version").fetchone()[0] == (
        SCHEMA_VERSION
    )


def test_a_version_1_database_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(migrations()[0][1])
    old.execute("INSERT INTO tokens VALUES ('tok_1', 'kept', 'hash', 'admin', 0, NULL)")
    old.commit()
    old.close()
    store = SqliteStore(path)
    store.open()
    try:
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == (
            SCHEMA_VERSION
        )
        assert conn.execute("SELECT name FROM tokens").fetchone()[0] == "kept"
        conn.execute("SELECT * FROM destination_state")
    finally:
        store.close()


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path)
    conn.executescript(_read_sql("schema.sql"))
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this Hookyard"):
        SqliteStore(path).open()
