"""SQL of retention (retention.py): each write handles one bounded chunk of rows, so that a
sweep is many short transactions and ingest never waits long behind one.

Rows are walked in id order (ids sort by creation time, so "older than" is an id range on an
index). Events with a delivery still waiting (pending, in flight, retrying, held) are never
touched, nor are their payloads: the worker still needs them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hookyard.ids import new_id
from hookyard.store.db import WAITING, Conn, in_list

if TYPE_CHECKING:
    from hookyard.store.partitions import Partition

KEEP_SWEEPS = 100


@dataclass(frozen=True, slots=True)
class Chunk:
    """Rows of `source` with after < id < before, `limit` at most, in id order."""

    source: str
    after: str
    before: str
    limit: int


@dataclass(frozen=True, slots=True)
class Swept:
    examined: int
    last: str | None  # the last id examined: the next chunk starts after it
    waiting: bool  # a row was kept because a delivery of its event still waits
    removed: dict[str, int]


def _waiting_events(conn: Conn, event_ids: list[str]) -> set[str]:
    if not event_ids:
        return set()
    rows = conn.execute(
        f"SELECT DISTINCT event_id FROM deliveries WHERE event_id IN {in_list(event_ids)}"
        f" AND status IN {WAITING}",
        event_ids,
    )
    return {row[0] for row in rows}


def _chunk(conn: Conn, chunk: Chunk, columns: str) -> list[Any]:
    """The chunk's events, locked until the transaction ends: a replay or retry in another
    process (which takes these rows FOR SHARE) either finds them gone or has queued its
    delivery before the check for waiting deliveries that follows."""
    rows: list[Any] = conn.execute(
        f"SELECT {columns} FROM events WHERE source = ? AND id > ? AND id < ?"
        f" ORDER BY id LIMIT ?{conn.dialect.for_update}",
        (chunk.source, chunk.after, chunk.before, chunk.limit),
    ).fetchall()
    return rows


def strip_payloads(conn: Conn, chunks: Sequence[tuple[Chunk, bool]]) -> list[Swept]:
    """Remove the payloads (and the raw request bodies holding them) of a chunk's events.
    Unless `held` (a waiting event met earlier in this sweep), the source's mark moves to the
    last row before the first waiting one: the next sweep starts there, not from the start."""
    results = []
    for chunk, held in chunks:
        rows = _chunk(conn, chunk, "id, request_id")
        ids = [row[0] for row in rows]
        waiting = _waiting_events(conn, ids)
        done = [row for row in rows if row[0] not in waiting]
        stripped = 0
        if done:
            done_ids = [row[0] for row in done]
            stripped = conn.execute(
                f"UPDATE events SET payload = NULL WHERE id IN {in_list(done_ids)}"
                " AND payload IS NOT NULL",
                done_ids,
            ).rowcount
            requests = sorted({row[1] for row in done if row[1] is not None})
            if requests:
                conn.execute(
                    f"UPDATE requests SET body = NULL WHERE id IN {in_list(requests)}"
                    " AND body IS NOT NULL",
                    requests,
                )
        if not held:
            first_waiting = next((i for i, id_ in enumerate(ids) if id_ in waiting), len(ids))
            if first_waiting > 0:
                conn.execute(
                    "INSERT INTO retention_marks (source, kind, swept_to) VALUES (?, 'payloads', ?)"
                    " ON CONFLICT (source, kind) DO UPDATE SET swept_to = excluded.swept_to",
                    (chunk.source, ids[first_waiting - 1]),
                )
        results.append(
            Swept(len(ids), ids[-1] if ids else None, bool(waiting), {"payloads": stripped})
        )
    return results


def remove_events(conn: Conn, chunks: Sequence[Chunk]) -> list[Swept]:
    """Remove a chunk's events with their deliveries and attempts, and each request row once
    none of its events is left."""
    results = []
    for chunk in chunks:
        rows = _chunk(conn, chunk, "id, request_id")
        ids = [row[0] for row in rows]
        waiting = _waiting_events(conn, ids)
        gone = [row for row in rows if row[0] not in waiting]
        gone_ids = [row[0] for row in gone]
        removed = {"events": 0, "deliveries": 0, "attempts": 0, "requests": 0}
        if gone:
            removed.update(_remove_history(conn, gone_ids))
            removed["events"] = conn.execute(
                f"DELETE FROM events WHERE id IN {in_list(gone_ids)}", gone_ids
            ).rowcount
            removed["requests"] = _remove_requests(conn, gone)
        results.append(Swept(len(ids), ids[-1] if ids else None, bool(waiting), removed))
    return results


def release_span(conn: Conn, chunks: Sequence[tuple[Partition, str, int]]) -> list[Swept]:
    """Before a PostgreSQL partition is dropped whole (partitions.py), a chunk of its events
    (after an id, `limit` at most) loses its deliveries, attempts, and the requests that have
    no event outside the partition. The events themselves go with the partition."""
    results = []
    for part, after, limit in chunks:
        rows = conn.execute(
            f"SELECT id, request_id FROM {part.name} WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        ).fetchall()
        removed = {"deliveries": 0, "attempts": 0, "requests": 0}
        if rows:
            removed.update(_remove_history(conn, [row[0] for row in rows]))
            removed["requests"] = _remove_requests(
                conn, rows, " AND (events.id < ? OR events.id >= ?)", (part.low, part.high)
            )
        results.append(Swept(len(rows), rows[-1][0] if rows else None, False, removed))
    return results


def _remove_history(conn: Conn, event_ids: list[str]) -> dict[str, int]:
    """The attempts and the deliveries of these events, never a delivery still waiting."""
    listed = in_list(event_ids)
    attempts = conn.execute(
        "DELETE FROM attempts WHERE delivery_id IN"
        f" (SELECT id FROM deliveries WHERE event_id IN {listed} AND status NOT IN {WAITING})",
        event_ids,
    ).rowcount
    deliveries = conn.execute(
        f"DELETE FROM deliveries WHERE event_id IN {listed} AND status NOT IN {WAITING}",
        event_ids,
    ).rowcount
    return {"attempts": attempts, "deliveries": deliveries}


def _remove_requests(
    conn: Conn, rows: Sequence[Any], elsewhere: str = "", params: tuple[str, ...] = ()
) -> int:
    """The requests of these (event id, request id) rows that have no event left (`elsewhere`:
    left outside what is being removed)."""
    requests = sorted({row[1] for row in rows if row[1]})
    if not requests:
        return 0
    count: int = conn.execute(
        f"DELETE FROM requests WHERE id IN {in_list(requests)} AND state != 'pending'"
        f" AND NOT EXISTS (SELECT 1 FROM events WHERE request_id = requests.id{elsewhere})",
        [*requests, *params],
    ).rowcount
    return count


def remove_failed_hints(
    conn: Conn, chunks: Sequence[tuple[str, dict[str, str], str, int]]
) -> list[Swept]:
    """Hints whose fetch failed for good (requests without events), each once its source's
    events cutoff id (`cutoffs`; `default` for other sources) has passed it."""
    results = []
    for after, cutoffs, default, limit in chunks:
        rows = conn.execute(
            "SELECT id, source FROM requests WHERE state = 'failed' AND id > ? ORDER BY id LIMIT ?",
            (after, limit),
        ).fetchall()
        old = [row[0] for row in rows if row[0] < cutoffs.get(row[1], default)]
        count = 0
        if old:
            count = conn.execute(
                f"DELETE FROM requests WHERE id IN {in_list(old)}"
                " AND NOT EXISTS (SELECT 1 FROM events WHERE request_id = requests.id)",
                old,
            ).rowcount
        last = rows[-1][0] if rows else None
        results.append(Swept(len(rows), last, False, {"requests": count}))
    return results


def remove_attempts(conn: Conn, chunks: Sequence[tuple[str, str, int]]) -> list[Swept]:
    """Attempts made before the cutoff id, except those of deliveries still waiting."""
    results = []
    for after, before, limit in chunks:
        rows = conn.execute(
            "SELECT id, delivery_id FROM attempts WHERE id > ? AND id < ? ORDER BY id LIMIT ?",
            (after, before, limit),
        ).fetchall()
        deliveries = sorted({row[1] for row in rows})
        live = set()
        if deliveries:
            live = {
                row[0]
                for row in conn.execute(
                    f"SELECT id FROM deliveries WHERE id IN {in_list(deliveries)}"
                    f" AND status IN {WAITING}",
                    deliveries,
                )
            }
        gone = [row[0] for row in rows if row[1] not in live]
        count = 0
        if gone:
            count = conn.execute(f"DELETE FROM attempts WHERE id IN {in_list(gone)}", gone).rowcount
        last = rows[-1][0] if rows else None
        results.append(Swept(len(rows), last, bool(live), {"attempts": count}))
    return results


def remove_rejected(conn: Conn, chunks: Sequence[tuple[str, int]]) -> list[int]:
    """Rejected requests logged before the cutoff id, `limit` at most."""
    return [
        conn.execute(
            "DELETE FROM rejected WHERE id IN"
            " (SELECT id FROM rejected WHERE id < ? ORDER BY id LIMIT ?)",
            (before, limit),
        ).rowcount
        for before, limit in chunks
    ]


def reclaim(conn: Conn, pages: Sequence[int]) -> list[int]:
    """SQLite: give up to `pages` free pages back to the file system (the database was created
    with auto_vacuum=INCREMENTAL), keeping a quarter of the used pages free: in a steady state
    the next interval's rows fill those again, and moving pages out only to grow the file back
    would double the writes. Returns the free pages beyond that reserve still left.
    PostgreSQL reuses removed rows' space after (auto)vacuum: nothing to do here."""
    incremental = conn.dialect.name == "sqlite" and (
        int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2
    )
    if not incremental:  # a file restored from a dump may lack it: nothing to give back then
        return [0 for _ in pages]

    def excess() -> int:
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        total = int(conn.execute("PRAGMA page_count").fetchone()[0])
        return max(0, free - (total - free) // 4)

    left = []
    for count in pages:
        # One page per statement: Python's sqlite3 steps a statement without result columns
        # once, and incremental_vacuum frees one page per step.
        for _ in range(min(count, excess())):
            conn.execute("PRAGMA incremental_vacuum(1)")
        left.append(excess())
    return left


def payload_mark(conn: Conn, source: str) -> str:
    row = conn.execute(
        "SELECT swept_to FROM retention_marks WHERE source = ? AND kind = 'payloads'", (source,)
    ).fetchone()
    return str(row[0]) if row else ""


def stored_sources(conn: Conn, table: str = "events") -> list[str]:
    """Every source that has events (in `table`: events or one of its partitions), configured
    or not (a loose index scan on the source index: one probe per source instead of reading
    the whole index)."""
    rows = conn.execute(
        "WITH RECURSIVE s (source) AS ("
        f" SELECT min(source) FROM {table}"
        " UNION ALL"
        f" SELECT (SELECT min(source) FROM {table} WHERE source > s.source) FROM s"
        " WHERE s.source IS NOT NULL)"
        " SELECT source FROM s WHERE source IS NOT NULL"
    )
    return [row[0] for row in rows]


def usage(conn: Conn) -> dict[str, Any]:
    """What is stored now: per source, its events, the oldest one's time and the payload
    bytes still held; and the database's size. Reads every event row (about 2 s per million
    on SQLite here), so it runs once per sweep, never per API call."""
    sources = {
        source: {
            "events": int(count),
            "oldest_event_at": oldest,
            "payload_bytes": int(kept or 0),
        }
        for source, count, oldest, kept in conn.execute(
            "SELECT source, count(*), min(received_at),"
            " sum(CASE WHEN payload IS NOT NULL THEN payload_size ELSE 0 END)"
            " FROM events GROUP BY source"
        )
    }
    return {"sources": sources, **database_size(conn)}


# PostgreSQL: the bytes of the schema's tables, with their indexes and TOAST.
POSTGRES_SIZE_SQL = (
    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
)


def database_size(conn: Conn) -> dict[str, int]:
    if conn.dialect.name == "sqlite":
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        count = int(conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        return {"database_bytes": page * count, "free_bytes": page * free}
    row = conn.execute(POSTGRES_SIZE_SQL).fetchone()
    return {"database_bytes": int(row[0]), "free_bytes": 0}


def record_sweep(conn: Conn, sweeps: Sequence[dict[str, Any]]) -> list[str]:
    """Store a finished sweep's record, keeping the last KEEP_SWEEPS."""
    ids = []
    for sweep in sweeps:
        sweep_id = new_id("swp")
        conn.execute(
            "INSERT INTO sweeps (id, started_at, finished_at, removed, usage, error)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                sweep_id,
                sweep["started_at"],
                sweep.get("finished_at", time.time()),
                json.dumps(sweep["removed"]),
                json.dumps(sweep["usage"]) if sweep.get("usage") is not None else None,
                sweep.get("error"),
            ),
        )
        ids.append(sweep_id)
    conn.execute(
        "DELETE FROM sweeps WHERE id <= (SELECT id FROM sweeps ORDER BY id DESC LIMIT 1 OFFSET ?)",
        (KEEP_SWEEPS,),
    )
    return ids


def last_sweeps(conn: Conn, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT id, started_at, finished_at, removed, usage, error FROM sweeps"
        " ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        {
            "id": row[0],
            "started_at": row[1],
            "finished_at": row[2],
            "removed": json.loads(row[3]),
            "usage": json.loads(row[4]) if row[4] else None,
            "error": row[5],
        }
        for row in rows
    ]
