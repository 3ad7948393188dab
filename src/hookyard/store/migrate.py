"""Versioned schema migrations, shared by both backends.

Each backend keeps a reference schema (`schema/<backend>/schema.sql`, what a new database gets)
and the numbered scripts that bring an older database up to it (`schema/<backend>/migrations`).
Version numbers mean the same on both; PostgreSQL support starts at version 8. A test checks
that applying every migration gives the reference schema.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

from hookyard.errors import StoreError
from hookyard.store.db import Conn

SCHEMA_VERSION = 13


def reference_schema(backend: str) -> str:
    return resources.files("hookyard.store").joinpath("schema", backend, "schema.sql").read_text()


def migrations(backend: str) -> list[tuple[int, str]]:
    """(version, script) for every file in schema/<backend>/migrations, in order."""
    folder = resources.files("hookyard.store").joinpath("schema", backend, "migrations")
    found = [
        (int(entry.name.split("_", 1)[0]), entry.read_text())
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found)


def current_version(conn: Conn) -> int | None:
    """The database's schema version; None for an empty database."""
    if conn.dialect.name == "sqlite":
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
    else:
        found = conn.execute("SELECT to_regclass('schema_version')").fetchone()[0]
    if not found:
        return None
    version: int = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    return version


@dataclass(frozen=True)
class MigrationPlan:
    before: int | None  # None: an empty database
    scripts: list[tuple[int, str]]  # what brings it to SCHEMA_VERSION

    @property
    def pending(self) -> list[int]:
        return [number for number, _ in self.scripts]


def plan(conn: Conn) -> MigrationPlan:
    backend = conn.dialect.name
    before = current_version(conn)
    if before is None:
        return MigrationPlan(None, [(SCHEMA_VERSION, reference_schema(backend))])
    if before > SCHEMA_VERSION:
        raise StoreError(
            f"the database has schema version {before}, newer than this Hookyard "
            f"({SCHEMA_VERSION}); upgrade Hookyard"
        )
    return MigrationPlan(before, [(n, s) for n, s in migrations(backend) if n > before])


@contextlib.contextmanager
def _exclusive(conn: Conn) -> Iterator[None]:
    """Only one process migrates a PostgreSQL database at a time; the others wait, then find
    nothing left to do. (On SQLite one process owns the file.)"""
    if conn.dialect.name != "postgresql":
        yield
        return
    key = "/migrate"
    conn.execute("SELECT pg_advisory_lock(hashtextextended(current_schema() || ?, 0))", (key,))
    try:
        yield
    finally:
        conn.execute(
            "SELECT pg_advisory_unlock(hashtextextended(current_schema() || ?, 0))", (key,)
        )


def _run_script(conn: Conn, script: str) -> None:
    try:
        if conn.dialect.name == "sqlite":
            # executescript commits any open transaction first: the script opens its own.
            conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nCOMMIT;")  # type: ignore[attr-defined]
        else:
            conn.execute("BEGIN")
            conn.execute(script)  # several statements: psycopg sends them as one simple query
            conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        raise


def migrate(conn: Conn, *, apply: bool = True) -> tuple[int | None, int]:
    """Bring the schema to SCHEMA_VERSION; returns (version before, version after). With
    apply=False, a database that needs migrations is refused with a message saying how."""
    with _exclusive(conn):
        steps = plan(conn)
        if steps.scripts and not apply and steps.before is not None:
            raise StoreError(
                f"the database has schema version {steps.before} and this Hookyard needs "
                f"{SCHEMA_VERSION}: run `hookyard migrate` (automatic migration is off)"
            )
        for _, script in steps.scripts:
            try:
                _run_script(conn, script)
            except StoreError:
                raise
            except Exception as exc:
                raise StoreError(f"schema migration failed: {exc}") from exc
        return steps.before, SCHEMA_VERSION


__all__ = ["SCHEMA_VERSION", "MigrationPlan", "migrate", "migrations", "plan", "reference_schema"]
