"""PostgreSQL's time partitions of `events` (schema version 12): one per span of time, named by
its first second (`events_p20261127_000000`), covering the ids made in that span (ids sort by
creation time, so an id range is a time range).

Retention adds partitions a few spans ahead and drops a span whole once every event in it is
past its source's age and none waits for delivery: no row-by-row deletes of events, and the
space back at once. What does not fit (a span where some source keeps its events longer, an
event still waiting, the rows from before version 12 and of spans that had no partition in time,
all in `events_default`) goes row by row as on SQLite.

The DDL runs on a connection of its own, never the writer's. Each step that locks what ingest
or readers use waits at most LOCK_TIMEOUT for its lock, holds it for a few catalog changes
only, and is otherwise tried again at the next sweep.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg

from hookyard.ids import id_floor, id_time
from hookyard.store.db import WAITING, Conn
from hookyard.store.retention import stored_sources

log = logging.getLogger("hookyard.retention")

AHEAD = 3  # spans created ahead of the current one, at least
MAX_AHEAD = 24  # and at most, however long the sweep interval is next to the span
LOCK_TIMEOUT = "100ms"
# Undoing a creation given up must not itself be given up: its constraint would refuse the
# span's rows in events_default once the span began. It may wait this long for its lock.
UNDO_LOCK_TIMEOUT = "10s"
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired: the table was busy, try next sweep
_NAME = re.compile(r"^events_p\d{8}_\d{6}$")
_STAMP = "%Y%m%d_%H%M%S"


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    start: float  # unix seconds; the partition holds ids made in [start, end)
    end: float

    @property
    def low(self) -> str:
        return id_floor("evt", self.start)

    @property
    def high(self) -> str:
        return id_floor("evt", self.end)


def span_of(moment: float, span: float) -> Partition:
    """The partition that holds ids made at `moment`, for spans of `span` seconds (aligned to
    the epoch, so that every process computes the same bounds)."""
    start = moment - moment % span
    stamp = time.strftime(_STAMP, time.gmtime(start))
    return Partition(f"events_p{stamp}", start, start + span)


def existing(conn: Conn) -> list[Partition]:
    """The time partitions of `events`, oldest first (events_default is not one of them)."""
    rows = conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass"
    ).fetchall()
    found = []
    for name, bound in rows:
        bounds = re.findall(r"'(evt_[0-9A-Z]{26})'", bound or "")
        if _NAME.match(name) and len(bounds) == 2:
            found.append(Partition(name, id_time(bounds[0]), id_time(bounds[1])))
    return sorted(found, key=lambda p: p.start)


class _Postponed(Exception):
    """A partition change given up for now: the next sweep tries again."""


@contextlib.contextmanager
def _transaction(
    conn: Conn, what: str, *, lock_timeout: str = LOCK_TIMEOUT, until: float | None = None
) -> Iterator[None]:
    """A transaction whose lock waits end after `lock_timeout`, and whose statements are
    cancelled at `until` (unix seconds), if given. A database error rolls it back, is logged
    and becomes _Postponed. A busy table is routine (info); any other error would repeat
    every sweep, so it is a warning."""
    conn.execute("BEGIN")
    try:
        conn.execute(f"SET LOCAL lock_timeout = '{lock_timeout}'")
        if until is not None:
            left_ms = max(1, int((until - time.time()) * 1000))
            conn.execute(f"SET LOCAL statement_timeout = {left_ms}")
        yield
    except psycopg.Error as exc:
        conn.execute("ROLLBACK")
        busy = exc.sqlstate == LOCK_NOT_AVAILABLE
        log.log(
            logging.INFO if busy else logging.WARNING,
            "%s postponed to the next sweep: %s",
            what,
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )
        raise _Postponed from None
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def create_ahead(conn: Conn, now: float, span: float, interval: float) -> list[str]:
    """Create the partitions of the spans ahead (enough for sweeps `interval` apart, between
    AHEAD and MAX_AHEAD) that do not exist yet; returns the names created.

    Only spans still to come, so that no row of theirs can be in events_default yet: a
    constraint on events_default then proves it (checked without blocking writes), and ATTACH
    skips scanning events_default under its lock. A span that found no partition in time
    keeps its rows in events_default."""
    _undo_unfinished(conn)
    ahead = min(max(AHEAD, math.ceil(interval / span) + 1), MAX_AHEAD)
    have = {p.name for p in existing(conn)}
    margin = min(60.0, span / 2)  # for clocks of other processes a little ahead
    created = []
    for index in range(1, ahead + 1):
        part = span_of(now + index * span, span)
        if part.name in have or part.start < now + margin:
            continue
        absent = f"{part.name}_absent"
        try:
            with _transaction(conn, f"creating {part.name}"):
                conn.execute(f"CREATE TABLE {part.name} (LIKE events INCLUDING DEFAULTS)")
                conn.execute(
                    f"ALTER TABLE events_default ADD CONSTRAINT {absent}"
                    f" CHECK (id < '{part.low}' OR id >= '{part.high}') NOT VALID"
                )
            # The constraint refuses the span's rows in events_default: it must be replaced by
            # the attached partition, or undone, before any process's clock reaches the span.
            # (VALIDATE scans all of events_default, which can take long after an upgrade.)
            deadline = part.start - margin
            with _transaction(conn, f"checking events_default for {part.name}", until=deadline):
                conn.execute(f"ALTER TABLE events_default VALIDATE CONSTRAINT {absent}")
            with _transaction(conn, f"attaching {part.name}", until=deadline):
                conn.execute(
                    f"ALTER TABLE events ATTACH PARTITION {part.name}"
                    f" FOR VALUES FROM ('{part.low}') TO ('{part.high}')"
                )
                conn.execute(f"ALTER TABLE events_default DROP CONSTRAINT {absent}")
            created.append(part.name)
        except _Postponed:
            undoing = _transaction(conn, f"undoing {part.name}", lock_timeout=UNDO_LOCK_TIMEOUT)
            with contextlib.suppress(_Postponed), undoing:
                conn.execute(f"ALTER TABLE events_default DROP CONSTRAINT IF EXISTS {absent}")
                conn.execute(f"DROP TABLE IF EXISTS {part.name}")
    return created


def _undo_unfinished(conn: Conn) -> None:
    """Remove what a creation cut short (the process died between its transactions) left: a
    constraint on events_default, which would refuse that span's rows there once it began,
    and a table never attached. Sweeps run one at a time, so none is under way elsewhere."""
    constraints = conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'events_default'::regclass"
        " AND contype = 'c' AND conname LIKE 'events\\_p%\\_absent'"
    ).fetchall()
    tables = conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
        " AND relkind = 'r' AND NOT relispartition AND relname LIKE 'events\\_p%'"
    ).fetchall()
    for (name,) in constraints:
        removing = _transaction(conn, f"removing {name}", lock_timeout=UNDO_LOCK_TIMEOUT)
        with contextlib.suppress(_Postponed), removing:
            conn.execute(f"ALTER TABLE events_default DROP CONSTRAINT IF EXISTS {name}")
    for (name,) in tables:
        if _NAME.match(name):
            with contextlib.suppress(_Postponed), _transaction(conn, f"removing {name}"):
                conn.execute(f"DROP TABLE IF EXISTS {name}")


def sources_in(conn: Conn, part: Partition) -> list[str]:
    """The sources with events in a partition."""
    return stored_sources(conn, part.name)


def has_waiting(conn: Conn, part: Partition) -> bool:
    row = conn.execute(
        f"SELECT 1 FROM deliveries WHERE event_id >= ? AND event_id < ? AND status IN {WAITING}"
        " LIMIT 1",
        (part.low, part.high),
    ).fetchone()
    return row is not None


def drop(conn: Conn, part: Partition, expired: Callable[[str], bool]) -> bool:
    """Drop a partition whose dependent rows are gone (retention removed its events' deliveries,
    attempts and requests first, in chunks). Under a lock on `events`, which holds back every
    replay, retry or import that could add to it meanwhile, it checks again that each of its
    sources is `expired` and no delivery waits, and removes what was added since. False:
    postponed to the next sweep."""
    try:
        with _transaction(conn, f"dropping {part.name}"):
            conn.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            if has_waiting(conn, part) or not all(map(expired, sources_in(conn, part))):
                raise _Postponed
            bounds = (part.low, part.high)
            conn.execute(
                "DELETE FROM attempts WHERE delivery_id IN"
                " (SELECT id FROM deliveries WHERE event_id >= ? AND event_id < ?)",
                bounds,
            )
            conn.execute("DELETE FROM deliveries WHERE event_id >= ? AND event_id < ?", bounds)
            conn.execute(f"DROP TABLE {part.name}")
    except _Postponed:
        return False
    return True
