"""What differs between SQLite and PostgreSQL, in one place.

The SQL in queries.py is written once, with `?` and `:name` placeholders, and runs on both
backends: each connection carries its `Dialect`, and the PostgreSQL connection rewrites the
placeholders for psycopg. The dialects differ only where the two engines do (locks, JSON,
pattern matching, catalog queries), and those few spots ask the dialect.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import psycopg


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """A database connection as queries.py uses it (sqlite3's interface)."""

    @property
    def dialect(self) -> Dialect: ...
    def execute(self, sql: str, params: Any = (), /) -> Cursor: ...
    def executemany(self, sql: str, params: Iterable[Any], /) -> Cursor: ...
    def close(self) -> None: ...


def _json_path(dotted: str) -> list[str]:
    return dotted.split(".")


@dataclass(frozen=True)
class Dialect:
    name: str
    begin: str  # opens a write transaction
    max_variables: int  # placeholders per statement
    # Row locks, for writers of other processes (PostgreSQL); SQLite's one writer holds the
    # whole database for its transaction already.
    for_update: str = ""
    for_share: str = ""

    def begin_write(self, conn: Conn, durable: bool) -> None:
        """Open a write transaction. One that is not `durable` commits without waiting for the
        disk: it holds only claims (leases, rate tokens), which a power cut or a PostgreSQL
        crash would undo, sending the delivery again (as after any crash mid-attempt). The log
        is written in order, so the next durable commit's flush covers it anyway. SQLite sets
        this between transactions."""
        if getattr(conn, "durable", True) != durable:
            conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            conn.durable = durable  # type: ignore[attr-defined]
        conn.execute(self.begin)

    def glob(self, column: str) -> str:
        """A condition matching `column` against a glob pattern parameter (* and ?)."""
        return f"{column} GLOB ?"

    def glob_param(self, pattern: str) -> str:
        return pattern

    def field_expression(self, dotted: str) -> str:
        """A payload field as SQL text, NULL where the payload is not JSON. The path is
        written into the SQL (callers check that it holds only names, digits, dashes and dots)
        so that an index on the same expression serves queries."""
        path = "$" + "".join(
            f"[{part}]" if part.isdigit() else f'."{part}"' for part in _json_path(dotted)
        )
        return (
            "CASE WHEN json_valid(CAST(payload AS TEXT))"
            f" THEN json_extract(CAST(payload AS TEXT), '{path}') END"
        )

    def field_values(self, candidates: list[Any]) -> list[Any]:
        return candidates

    field_indexes_sql: ClassVar[str] = (
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'events_field_%'"
    )
    analyze_sql: ClassVar[tuple[str, ...]] = ("PRAGMA analysis_limit=1000", "ANALYZE")

    def upgraded_field_indexes(self, conn: Conn) -> list[str]:
        """Field indexes an upgrade left on a partition (PostgreSQL, schema 12)."""
        return []

    def lock_destination(self, conn: Conn, destination: str) -> bool:
        """Take the right to claim one destination's deliveries until the transaction ends;
        False if another process holds it now. SQLite has one writer: always True."""
        return True

    def notify(self, conn: Conn, topic: str) -> None:
        """Tell the other processes, at commit, that work or states changed."""

    def lock_schema(self, conn: Conn) -> None:
        """Hold off other processes' schema changes until this transaction ends."""

    @contextlib.contextmanager
    def on_indexes(self, conn: Conn) -> Iterator[None]:
        """Run a read-only queue query planned on indexes (see lock_destination)."""
        yield


class _Postgres(Dialect):
    def begin_write(self, conn: Conn, durable: bool) -> None:
        conn.execute(self.begin)
        if not durable:
            conn.execute("SET LOCAL synchronous_commit = off")

    def glob(self, column: str) -> str:
        return f"{column} LIKE ? ESCAPE '\\'"

    def glob_param(self, pattern: str) -> str:
        escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return escaped.replace("*", "%").replace("?", "_")

    def field_expression(self, dotted: str) -> str:
        parts = ",".join(_json_path(dotted))
        return f"(hookyard_json(payload) #>> '{{{parts}}}')"

    def field_values(self, candidates: list[Any]) -> list[Any]:
        # #>> gives text: "5" for 5 and for "5", "true" for true; compare the text only.
        return [str(candidates[0])]

    field_indexes_sql: ClassVar[str] = (
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        " AND indexname LIKE 'events_field_%'"
    )

    def upgraded_field_indexes(self, conn: Conn) -> list[str]:
        rows = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
            " AND tablename = 'events_default' AND indexname LIKE 'events\\_default\\_field\\_%'"
        )
        return [row[0] for row in rows]

    analyze_sql: ClassVar[tuple[str, ...]] = ("ANALYZE",)

    def lock_destination(self, conn: Conn, destination: str) -> bool:
        # Try, never wait: two workers taking the locks of several destinations in different
        # orders would otherwise deadlock.
        # And plan this transaction's picks on the queue's indexes whatever the statistics say:
        # stale ones (a table analysed while empty, autovacuum off) turned each claim into scans
        # of the whole queue.
        row = conn.execute(
            "SELECT set_config('enable_seqscan', 'off', true),"
            " pg_try_advisory_xact_lock(hashtextextended(current_schema() || ?, 0))",
            (f"/destination/{destination}",),
        ).fetchone()
        return bool(row[1])

    @contextlib.contextmanager
    def on_indexes(self, conn: Conn) -> Iterator[None]:
        conn.execute("BEGIN")
        try:
            conn.execute("SET LOCAL enable_seqscan = off")
            yield
        finally:
            conn.execute("COMMIT")

    def lock_schema(self, conn: Conn) -> None:
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ?, 0))",
            ("/schema",),
        )

    def notify(self, conn: Conn, topic: str) -> None:
        conn.execute("SELECT pg_notify('hookyard', current_schema() || ' ' || ?)", (topic,))


SQLITE = Dialect("sqlite", "BEGIN IMMEDIATE", 32766)
POSTGRESQL = _Postgres("postgresql", "BEGIN", 32766, " FOR UPDATE", " FOR SHARE")


class SqliteConn(sqlite3.Connection):
    dialect = SQLITE
    durable = True  # synchronous=FULL (PRAGMAS); see Dialect.begin_write


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=1024)
def to_psycopg(sql: str, named: bool) -> str:
    """Rewrite `?` / `:name` placeholders as psycopg's `%s` / `%(name)s`. Our SQL holds no
    question mark or colon-word inside its string literals, which keeps this a plain rewrite."""
    sql = sql.replace("%", "%%")
    if named:
        return _NAMED.sub(r"%(\1)s", sql)
    return sql.replace("?", "%s")


@functools.lru_cache(maxsize=1024)
def to_numbered(sql: str) -> str:
    """Rewrite `?` placeholders as PostgreSQL's own `$1`, `$2`, ... for a RawCursor, which
    sends the text as it is. A cursor with `%s` parses the text at every call but caches that
    only below 4 KB and 50 parameters; multi-row inserts are longer (ingest on PostgreSQL
    +35% without that parse)."""
    parts = sql.split("?")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


class PgConn:
    """A psycopg connection (autocommit; transactions are explicit) speaking sqlite3's
    interface to queries.py."""

    dialect = POSTGRESQL

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.severed = False  # its link was cut from another thread (a read past its bound)

    def execute(self, sql: str, params: Any = (), /) -> Cursor:
        if not params:  # psycopg leaves a statement without parameters as written
            plain: Cursor = self.raw.execute(sql)
            return plain
        if isinstance(params, dict):
            run: Any = functools.partial(self.raw.execute, to_psycopg(sql, True))
        else:
            run = functools.partial(psycopg.RawCursor(self.raw).execute, to_numbered(sql))
        try:
            cursor: Cursor = run(params)
        except psycopg.DataError as exc:
            if not _refused_nul(exc):
                raise
            # psycopg refuses NUL in text while it encodes, before anything is sent, so the
            # statement can run again at once with the NULs replaced.
            cursor = run(without_nul(params))
        return cursor

    def executemany(self, sql: str, params: Iterable[Any], /) -> Cursor:
        # Scrubbed up front: a row refused midway may follow rows already sent.
        rows = [without_nul(row) for row in params]
        cursor = self.raw.cursor()
        if rows:
            cursor.executemany(to_psycopg(sql, isinstance(rows[0], dict)), rows)
        result: Cursor = cursor
        return result

    def close(self) -> None:
        self.raw.close()

    @property
    def broken(self) -> bool:
        """Unusable: closed, lost, or cut (psycopg may not have noticed a cut made while it was
        not reading)."""
        return bool(self.severed or self.raw.closed or self.raw.broken)


def _refused_nul(exc: psycopg.DataError) -> bool:
    """psycopg's own refusal, raised while it encodes the parameters (no SQLSTATE: the server
    never saw the statement), not a server error whose text mentions NULL."""
    return exc.sqlstate is None and "cannot contain NUL" in str(exc)


def without_nul(params: Any) -> Any:
    """`params` with U+FFFD for every NUL in its text: PostgreSQL's text types cannot hold NUL,
    and text from outside (an event type, a receiver's answer, a path) must not make a write
    fail. Bytes (payloads, headers) are untouched; SQLite stores NUL as it is."""
    if isinstance(params, dict):
        return {key: _text_without_nul(value) for key, value in params.items()}
    return [_text_without_nul(value) for value in params]


def _text_without_nul(value: Any) -> Any:
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


# The delivery statuses of a delivery still to be made: its event and payload must stay.
WAITING = "('pending', 'in_flight', 'retrying', 'held')"


def in_list(values: Sequence[Any]) -> str:
    """`(?,?,...)` for an IN condition over `values`."""
    return "(" + ",".join("?" * len(values)) + ")"


__all__ = [
    "POSTGRESQL",
    "SQLITE",
    "WAITING",
    "Conn",
    "Cursor",
    "Dialect",
    "PgConn",
    "SqliteConn",
    "in_list",
]
