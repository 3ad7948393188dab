"""SQL for both stores (SQLite and PostgreSQL; db.py holds what differs). Write handlers take a
group of payloads and run inside the writer's open transaction (see writer.py); read functions
take a reader connection."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from hookyard.config import FIELD_PATH
from hookyard.ids import id_floor, new_id
from hookyard.models import (
    Accepted,
    Claim,
    Claimed,
    EventData,
    EventFilter,
    Hint,
    NewEvent,
    NewRequest,
    Outcome,
    Pace,
    Rejected,
)
from hookyard.routing import ordering_key
from hookyard.store.db import POSTGRESQL, Conn, in_list
from hookyard.tokens import CONFIGURED_ADMIN, GENERATED_ADMIN

INSERT_DEDUP = "INSERT INTO dedup (source, key, event_id, first_seen) VALUES "
COUNT_HIT = "UPDATE dedup SET hits = hits + 1 WHERE source = ? AND key = ?"
INSERT_REQUEST = (
    "INSERT INTO requests (id, source, received_at, method, path, query, headers, peer, body,"
    " state, next_attempt_at) VALUES "
)
# Every INSERT names its columns: during a rolling upgrade, older processes keep writing
# after a migration added a column.
INSERT_EVENT = (
    "INSERT INTO events (id, source, origin, request_id, received_at, provider_event_id,"
    " event_type, dedup_key, content_type, payload, payload_size, trace_context) VALUES "
)
INSERT_DELIVERY = (
    "INSERT INTO deliveries (id, event_id, destination, status, next_attempt_at, created_at,"
    " updated_at, ordering_key) VALUES "
)
INSERT_REPLAY = (
    "INSERT INTO deliveries (id, event_id, destination, status, next_attempt_at, created_at,"
    " updated_at, ordering_key, replay) VALUES "
)
MAX_VARIABLES = 32766  # SQLite's limit on ? per statement since 3.32 (PostgreSQL's: 65535)
ON_CONFLICT_IGNORE = " ON CONFLICT DO NOTHING"


@functools.lru_cache(maxsize=256)
def _values_sql(prefix: str, columns: int, rows: int, suffix: str) -> str:
    row = "(" + ",".join("?" * columns) + ")"
    return prefix + ",".join([row] * rows) + suffix


def insert_rows(conn: Conn, prefix: str, rows: Sequence[tuple[Any, ...]], suffix: str = "") -> int:
    """Insert many rows with few multi-row statements rather than executemany.

    The sqlite3 module gives up and retakes the GIL around every step; executemany steps once
    per row, and each retake can wait a full switch interval behind the busy event loop. One
    statement per chunk keeps the writer thread's handoffs to a handful per transaction (and
    on PostgreSQL, its round trips). Returns how many rows were inserted.
    """
    if not rows:
        return 0
    columns = len(rows[0])
    per_statement = MAX_VARIABLES // columns
    inserted = 0
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        inserted += conn.execute(
            _values_sql(prefix, columns, len(chunk), suffix),
            [value for row in chunk for value in row],
        ).rowcount
    return inserted


def key_digest(key: str) -> bytes:
    """Dedup keys are stored as 16-byte digests: bounded size whatever a provider sends, and
    small rows in a table whose random inserts dominate the cost of ingest."""
    return hashlib.blake2b(key.encode(), digest_size=16).digest()


def known_keys(conn: Conn, keys: Sequence[tuple[str, bytes]]) -> dict[tuple[str, bytes], str]:
    """Which of these (source, key digest) pairs are stored, and the event owning each."""
    wanted: dict[str, list[bytes]] = {}
    for source, key in dict.fromkeys(keys):
        wanted.setdefault(source, []).append(key)
    known: dict[tuple[str, bytes], str] = {}
    for source, digests in wanted.items():
        for start in range(0, len(digests), 500):
            chunk = digests[start : start + 500]
            rows = conn.execute(
                f"SELECT key, event_id FROM dedup WHERE source = ? AND key IN "
                f"({','.join('?' * len(chunk))})",
                [source, *chunk],
            )
            known.update(((source, key), event_id) for key, event_id in rows)
    return known


@dataclass(slots=True)
class IngestRows:
    """One request's rows, built on the caller's thread (the event loop), so that the writer
    thread, which competes with it for the GIL, does little more than run SQL."""

    request: tuple[Any, ...] | None  # None: the request is stored already (a fetched hint)
    event_ids: list[str]
    events: list[tuple[Any, ...]]
    keys: list[list[tuple[str, bytes]]]  # per event: (source, key digest)
    deliveries: list[list[tuple[Any, ...]]]  # per event
    cross_keys: list[list[tuple[str, bytes]]]  # per event, as NewEvent's (mostly empty)
    marks: list[list[tuple[str, bytes]]]


def ingest_rows(request: NewRequest) -> IngestRows:
    now = request.received_at
    return IngestRows(
        request=(
            request.id,
            request.source,
            request.received_at,
            request.method,
            request.path,
            request.query,
            request.headers,
            request.peer,
            request.body,
            "pending" if request.pending else "accepted",
            request.received_at if request.pending else None,  # a hint is fetched at once
        ),
        event_ids=[event.id for event in request.events],
        events=[
            (
                event.id,
                event.source,
                event.origin,
                request.id,
                event.received_at,
                event.provider_event_id,
                event.event_type,
                event.dedup_keys[0] if event.dedup_keys else None,
                event.content_type,
                event.payload,
                len(event.payload),
                event.trace_context,
            )
            for event in request.events
        ],
        keys=[
            [(event.source, key_digest(k)) for k in event.dedup_keys] for event in request.events
        ],
        deliveries=[
            [
                (new_id("dlv"), event.id, name, "pending", now, now, now, key)
                for name, key in event.destinations
            ]
            for event in request.events
        ],
        cross_keys=[[(e.source, key_digest(k)) for k in e.cross_keys] for e in request.events],
        marks=[[(e.source, key_digest(k)) for k in e.marks] for e in request.events],
    )


def event_rows(request_id: str | None, events: Sequence[NewEvent]) -> IngestRows:
    """Rows for events of a request that is stored already (a fetched hint), or of none (the
    REST side's), created now."""
    request = NewRequest("", "", time.time(), "", "", "", b"", None, None, list(events))
    rows = dataclasses.replace(ingest_rows(request), request=None)
    rows.events = [(*row[:3], request_id, *row[4:]) for row in rows.events]
    return rows


def _all_keys_new(conn: Conn, batch: Sequence[IngestRows], now: float) -> bool:
    """The common case in one statement: insert every dedup key of the batch; if all were new,
    the batch has no duplicate. Otherwise remove what this statement added and return False."""
    rows = [
        (source, key, event_id, now)
        for rows in batch
        for event_id, keys in zip(rows.event_ids, rows.keys, strict=True)
        for source, key in keys
    ]
    if len({(source, key) for source, key, _, _ in rows}) != len(rows):
        return False  # a key repeats within the batch
    # On PostgreSQL a key that another process is inserting makes this wait for its commit,
    # then count as known: dedup is exact across processes.
    if insert_rows(conn, INSERT_DEDUP, rows, ON_CONFLICT_IGNORE) == len(rows):
        return True
    # Remove the keys this statement added: those of the batch whose owner is one of its new
    # events. Per source, so that both engines look the keys up by primary key (SQLite scans
    # the whole table for a row-value IN list).
    owned: dict[str, list[tuple[bytes, str]]] = {}
    for source, key, event_id, _ in rows:
        owned.setdefault(source, []).append((key, event_id))
    for source, pairs in owned.items():
        for start in range(0, len(pairs), 10_000):
            keys = [key for key, _ in pairs[start : start + 10_000]]
            owners = list({owner: None for _, owner in pairs[start : start + 10_000]})
            conn.execute(
                f"DELETE FROM dedup WHERE source = ? AND key IN ({','.join('?' * len(keys))})"
                f" AND event_id IN ({','.join('?' * len(owners))})",
                [source, *keys, *owners],
            )
    return False


def ingest(conn: Conn, batch: Sequence[IngestRows]) -> list[list[Accepted]]:
    """Insert new events with their deliveries. An event any of whose dedup keys is already
    known (stored, or earlier in this batch) is a duplicate of the event owning that key: it is
    counted, not stored, and its other keys are recorded as the original's."""
    now = time.time()
    crossing = any(keys for rows in batch for keys in rows.cross_keys)
    if not crossing and _all_keys_new(conn, batch, now):
        insert_rows(conn, INSERT_REQUEST, [rows.request for rows in batch if rows.request])
        insert_rows(conn, INSERT_EVENT, [event for rows in batch for event in rows.events])
        _insert_deliveries(
            conn, [d for rows in batch for per_event in rows.deliveries for d in per_event]
        )
        stored = [[Accepted(event_id, False) for event_id in rows.event_ids] for rows in batch]
        _insert_marks(conn, batch, stored, now)
        return stored

    known = known_keys(
        conn,
        [
            key
            for rows in batch
            for per_event in (*rows.keys, *rows.cross_keys)
            for key in per_event
        ],
    )
    dedup_rows = []
    hit_rows = []
    request_rows = []
    event_rows = []
    delivery_rows = []
    results = []
    for rows in batch:
        accepted = []
        for index, event_id in enumerate(rows.event_ids):
            keys = rows.keys[index]
            original = None
            for key in keys:
                original = known.get(key)
                if original is not None:
                    hit_rows.append(key)
                    break
            if original is None and rows.cross_keys:
                original = next(
                    (known[key] for key in rows.cross_keys[index] if key in known), None
                )
            owner = original or event_id
            for key in keys:
                if key not in known:
                    known[key] = owner
                    dedup_rows.append((*key, owner, now))
            if original is not None:
                accepted.append(Accepted(original, True))
                continue
            accepted.append(Accepted(event_id, False))
            event_rows.append(rows.events[index])
            delivery_rows.extend(rows.deliveries[index])
        if rows.request and (any(not a.duplicate for a in accepted) or not rows.event_ids):
            request_rows.append(rows.request)
        results.append(accepted)
    # A plain insert: should another process have stored one of these keys meanwhile, the
    # group fails and the writer runs each request again alone, now seeing that key.
    insert_rows(conn, INSERT_DEDUP, dedup_rows)
    conn.executemany(COUNT_HIT, hit_rows)
    insert_rows(conn, INSERT_REQUEST, request_rows)
    insert_rows(conn, INSERT_EVENT, event_rows)
    _insert_deliveries(conn, delivery_rows)
    _insert_marks(conn, batch, results, now)
    return results


def _insert_marks(
    conn: Conn, batch: Sequence[IngestRows], results: list[list[Accepted]], now: float
) -> None:
    """The marks of the events stored (not of duplicates), for other paths to find; a mark
    that is there already (another webhook of the same object version) stays as it is."""
    rows = [
        (*mark, accepted.event_id, now)
        for per_request, outcome in zip(batch, results, strict=True)
        for marks, accepted in zip(per_request.marks, outcome, strict=True)
        if not accepted.duplicate
        for mark in marks
    ]
    insert_rows(conn, INSERT_DEDUP, rows, ON_CONFLICT_IGNORE)


def _insert_deliveries(conn: Conn, rows: Sequence[tuple[Any, ...]], prefix: str = "") -> None:
    """Queue deliveries and wake the workers of every process at commit."""
    if rows:
        insert_rows(conn, prefix or INSERT_DELIVERY, rows)
        conn.dialect.notify(conn, "work")


# On SQLite, claims pick rows with one SELECT that returns them as a single JSON value, then
# lease them with one UPDATE: two steps whatever the count (each step hands the GIL away; see
# insert_rows). On PostgreSQL one UPDATE ... RETURNING picks (SKIP LOCKED) and leases at once.
PICK_EXPIRED = """
    SELECT id, event_id, attempts, replay FROM deliveries
    WHERE status = 'in_flight' AND destination = :destination AND lease_until < :now
    ORDER BY lease_until LIMIT :limit
"""
# Deliveries `d` that may go now: a delivery with an ordering key waits while an earlier one
# with the same key is unfinished.
READY = """
    d.status IN ('pending', 'retrying') AND d.destination = :destination
    AND (d.ordering_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM deliveries earlier
        WHERE earlier.destination = d.destination AND earlier.ordering_key = d.ordering_key
          AND earlier.id < d.id AND earlier.status IN ('pending', 'retrying', 'in_flight')))
"""
PICK_DUE = f"""
    SELECT d.id, d.event_id, d.attempts, d.replay FROM deliveries d
    WHERE {READY} AND d.next_attempt_at <= :now
    ORDER BY d.next_attempt_at LIMIT :limit
"""
SQLITE_LEASE = """
UPDATE deliveries
SET status = 'in_flight', attempts = attempts + 1, lease_until = :lease, updated_at = :now
WHERE id IN (SELECT json_extract(value, '$[0]') FROM json_each(:picked))
"""
# MATERIALIZED: the LIMIT is what caps a claim, so the pick must run exactly once.
PG_LEASE = """
WITH picked AS MATERIALIZED ({pick} FOR UPDATE SKIP LOCKED)
UPDATE deliveries
SET status = 'in_flight', attempts = attempts + 1, lease_until = :lease, updated_at = :now
WHERE id IN (SELECT id FROM picked)
RETURNING id, event_id, attempts, replay
"""
# In one statement: the destination's state, how many of its deliveries are leased by any
# process, and its rate-limit bucket.
PACE = """
SELECT (SELECT state FROM destination_state WHERE name = :destination),
       (SELECT count(*) FROM deliveries
        WHERE status = 'in_flight' AND destination = :destination AND lease_until >= :now),
       (SELECT tokens FROM destination_pace WHERE name = :destination),
       (SELECT refilled_at FROM destination_pace WHERE name = :destination)
"""


def _lease(conn: Conn, pick: str, params: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    """Lease the deliveries `pick` selects; (id, event id, attempt number, replay) of each."""
    if conn.dialect is POSTGRESQL:
        rows = conn.execute(PG_LEASE.format(pick=pick), params).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]
    picked = conn.execute(
        f"SELECT json_group_array(json_array(id, event_id, attempts + 1, replay)) FROM ({pick})",
        params,
    ).fetchone()[0]
    found = orjson.loads(picked)
    if found:
        conn.execute(SQLITE_LEASE, {**params, "picked": picked})
    return [(r[0], r[1], r[2], r[3]) for r in found]


def _tokens(rate: float, stored: float | None, stamp: float | None, now: float) -> float:
    """A destination's bucket, refilled at `rate` up to one second's worth (at least one):
    after an outage or a bulk retry the receiver gets a steady stream, not a burst."""
    capacity = max(1.0, rate)
    if stored is None or stamp is None:
        return capacity
    return min(capacity, stored + max(0.0, now - stamp) * rate)


def _spend(conn: Conn, bucket: str, tokens: float, now: float, stamp: float | None) -> None:
    """Store what is left in a rate bucket (a destination's, or a source's fetches). Its time
    never goes back: a claim whose `now` is older than the stored stamp (read before it waited
    for the writer, or on a host whose clock is behind) would credit that time twice."""
    now = now if stamp is None else max(now, stamp)
    conn.execute(
        "INSERT INTO destination_pace (name, tokens, refilled_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET tokens = excluded.tokens,"
        " refilled_at = excluded.refilled_at",
        (bucket, tokens, now),
    )


def _still_leased(conn: Conn, answered: Sequence[tuple[str, float]], now: float) -> int:
    """How many of these (delivery id, lease) still hold that lease, as PACE counts leases.
    Their answers are in, so they take no slot at the receiver: a worker need not wait for
    their records to commit before it sends the next ones. A lease that has passed to
    another worker meanwhile does not match, so it stays counted."""
    held = 0
    per_statement = (MAX_VARIABLES - 1) // 2
    for start in range(0, len(answered), per_statement):
        chunk = answered[start : start + per_statement]
        pairs = ",".join(["(?, ?)"] * len(chunk))
        held += conn.execute(
            f"SELECT count(*) FROM deliveries WHERE (id, lease_until) IN (VALUES {pairs})"
            " AND status = 'in_flight' AND lease_until >= ?",
            [*(value for pair in chunk for value in pair), now],
        ).fetchone()[0]
    return held


CLAIM_CONTENDED = 0.02  # seconds before trying a destination another process was claiming


def claim(
    conn: Conn, requests: Sequence[tuple[float, float, dict[str, Pace], int]]
) -> list[Claimed]:
    """Lease deliveries of each destination, `total` in all: first those whose lease expired
    (their worker died), then those due. Each destination gets no more than its pace allows
    across every process sharing the database: its concurrency minus the deliveries leased
    anywhere (but those whose answers the claiming worker holds unrecorded), and minus its
    own open requests (a lease run out mid-request still counts there), its rate limit's
    tokens, and `free`. A destination that is not active gets nothing."""
    results = []
    for now, lease_seconds, paces, total in requests:
        lease = now + lease_seconds
        claimed: list[Claim] = []
        retry_in: float | None = None
        blocked = set()
        for destination, pace in paces.items():
            if total - len(claimed) <= 0:
                break
            if not conn.dialect.lock_destination(conn, destination):
                # Another process is claiming it this very moment: come back shortly.
                blocked.add(destination)
                retry_in = CLAIM_CONTENDED if retry_in is None else min(retry_in, CLAIM_CONTENDED)
                continue
            params: dict[str, Any] = {"destination": destination, "now": now, "lease": lease}
            state, busy, stored, stamp = conn.execute(PACE, params).fetchone()
            if pace.answered is not None:
                busy -= _still_leased(conn, list(pace.answered()), now)
            if state not in (None, "active") or busy >= pace.concurrency:
                blocked.add(destination)
                continue
            limit = min(pace.free, pace.concurrency - busy, total - len(claimed))
            if pace.sending is not None:
                limit = min(limit, pace.concurrency - pace.sending())
                if limit <= 0:
                    blocked.add(destination)
                    continue
            tokens = 0.0
            if pace.rate is not None:
                tokens = _tokens(pace.rate, stored, stamp, now)
                if tokens < 1:
                    wait = (1 - tokens) / pace.rate
                    retry_in = wait if retry_in is None else min(retry_in, wait)
                    blocked.add(destination)
                limit = min(limit, int(tokens))
            taken = 0
            for pick in (PICK_EXPIRED, PICK_DUE):
                if limit - taken <= 0:
                    break
                rows = _lease(conn, pick, {**params, "limit": limit - taken})
                claimed.extend(
                    Claim(r[0], r[1], destination, r[2], bool(r[3]), lease) for r in rows
                )
                taken += len(rows)
            if pace.rate is not None and taken:
                _spend(conn, destination, tokens - taken, now, stamp)
        # Read in the same trip through the writer: a worker waiting on its claim has nothing
        # in flight, and a second trip through a reader thread was a fifth of each round.
        events = event_data(conn, [c.event_id for c in claimed])
        results.append(Claimed(claimed, retry_in, frozenset(blocked), events))
    return results


def take_job(conn: Conn, jobs: Sequence[tuple[str, float, str]]) -> list[bool]:
    """Claim a scheduled job's run if it is due: the row moves to the next run, so every other
    process sharing the database finds it not due and skips it."""
    now = time.time()
    return [
        conn.execute(
            "INSERT INTO jobs (name, next_run_at, last_run_by) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET next_run_at = excluded.next_run_at,"
            " last_run_by = excluded.last_run_by WHERE jobs.next_run_at <= ?",
            (name, now + interval, owner, now),
        ).rowcount
        == 1
        for name, interval, owner in jobs
    ]


# A pending hint that no process has leased for this long after it fell due belongs to a
# source that nobody fetches for any more (removed from the config, or its scheme changed):
# claim_hints hands it out so that it fails, with that reason, rather than stay pending for
# ever. The wait lets a source removed by mistake come back with its hints, and keeps a process
# still on an older config (a rolling change) from failing what the others fetch.
ORPHANED_AFTER = 3600.0


def claim_hints(
    conn: Conn, requests: Sequence[tuple[float, float, int, dict[str, float]]]
) -> list[list[Hint]]:
    """Lease up to `limit` due hints of the given sources, each source within its fetch rate
    (per second, across every process: a bucket shared like a destination's, so a flood of
    forged hints cannot spend the provider API quota). A lease moves the hint's next attempt
    to the lease's end, so a hint whose worker died is fetched again then. With room left,
    hints of any other source overdue by ORPHANED_AFTER are leased too (no rate: nothing is
    fetched for them; the caller fails them).

    Oldest due first: with store_hints' cap on a source's pending hints, a stored hint waits
    at most about cap / rate behind a flood of forged ones. Newest first would let every new
    forged hint of a lasting flood pass a genuine one, and round-robin needs a key that a
    forger cannot multiply (peer addresses are cheap to vary; a provider sends from few)."""
    results = []
    for now, lease, limit, rates in requests:
        hints: list[Hint] = []
        for source, rate in rates.items():
            bucket = f"source:{source}"  # destination_pace holds sources' buckets too
            if not conn.dialect.lock_destination(conn, bucket):
                continue
            stored, stamp = conn.execute(
                "SELECT max(tokens), max(refilled_at) FROM destination_pace WHERE name = ?",
                (bucket,),
            ).fetchone()  # max(): one row, NULLs when the bucket is new
            tokens = _tokens(rate, stored, stamp, now)
            most = min(limit - len(hints), int(tokens))
            if most <= 0:
                continue
            rows = _lease_hints(conn, "source = ?", [source], now, now + lease, most)
            hints += rows
            if rows:
                _spend(conn, bucket, tokens - len(rows), now, stamp)
        if len(hints) < limit:
            fetching = list(rates)
            others = f"source NOT IN {in_list(fetching)}" if fetching else "source IS NOT NULL"
            if conn.dialect is POSTGRESQL:  # on the pending index, as lock_destination does
                conn.execute("SELECT set_config('enable_seqscan', 'off', true)")
            due = now - ORPHANED_AFTER
            hints += _lease_hints(conn, others, fetching, due, now + lease, limit - len(hints))
        results.append(hints)
    return results


def _lease_hints(
    conn: Conn, which: str, params: Sequence[Any], due: float, until: float, limit: int
) -> list[Hint]:
    """Lease until `until` up to `limit` pending hints matching `which` (a condition with
    `params`) that fell due by `due`, the oldest due first."""
    pick = (
        f"SELECT id FROM requests WHERE state = 'pending' AND {which} AND next_attempt_at <= ?"
        " ORDER BY next_attempt_at LIMIT ?"
    )
    picked = (*params, due, limit)
    if conn.dialect is POSTGRESQL:  # run once (the LIMIT caps it), skipping others' rows
        pick = f"WITH picked AS MATERIALIZED ({pick} FOR UPDATE SKIP LOCKED) "
        update = pick + "UPDATE requests SET attempts = attempts + 1, next_attempt_at = ?"
        where = " WHERE id IN (SELECT id FROM picked)"
        args: tuple[Any, ...] = (*picked, until)
    else:
        update = "UPDATE requests SET attempts = attempts + 1, next_attempt_at = ?"
        where = f" WHERE id IN ({pick})"
        args = (until, *picked)
    rows = conn.execute(
        update + where + " RETURNING id, source, received_at, body, attempts, headers", args
    ).fetchall()
    return [Hint(r[0], r[1], r[2], r[3] or b"", r[4], dict(orjson.loads(r[5]))) for r in rows]


def store_hints(conn: Conn, hints: Sequence[tuple[tuple[Any, ...], bool, int]]) -> list[str | None]:
    """Store pending hints, each given as (its request row as ingest_rows makes it, whether
    an identical hint may stand for it, its source's cap on pending hints). Returns, per hint,
    the request id it is answered as: its own; that of an identical hint of its source not yet
    fetched (merged: nothing is stored); or None when its source has `cap` hints pending
    already (refused: the provider retries later).

    Processes sharing PostgreSQL count and look up without serialising each other: under a
    flood reaching every node at once, each may store up to the cap (n nodes: n times the cap
    at most), and two identical hints may both be stored (their fetched events are
    deduplicated anyway)."""
    answers: list[str | None] = [None] * len(hints)
    stored = []
    by_source: dict[str, list[int]] = {}
    for index, (row, _, _) in enumerate(hints):
        by_source.setdefault(row[1], []).append(index)
    if conn.dialect is POSTGRESQL:
        # Planned on the pending index whatever the statistics say (see lock_destination):
        # a scan of every request for each group of hints would serve a flood well.
        conn.execute("SELECT set_config('enable_seqscan', 'off', true)")
    for source, indexes in by_source.items():
        cap = max(hints[index][2] for index in indexes)
        # Counted up to the cap only: under a flood the count stops there. Once per source
        # and group, so that a flood's hints, which come in large groups, share the scan.
        pending = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM requests WHERE state = 'pending'"
            " AND source = ? LIMIT ?) AS capped",
            (source, cap),
        ).fetchone()[0]
        bodies = list({hints[index][0][8] for index in indexes if hints[index][1]})
        waiting: dict[bytes, str] = {}
        if bodies:
            # Never fetched ones only (attempts = 0): a fetch under way may have read the
            # object before the change this hint announces, and one waiting to be retried
            # may wait for hours.
            rows = conn.execute(
                "SELECT body, min(id) FROM requests WHERE state = 'pending' AND source = ?"
                f" AND attempts = 0 AND body IN {in_list(bodies)} GROUP BY body",
                [source, *bodies],
            )
            waiting = {bytes(body): request_id for body, request_id in rows}
        for index in indexes:
            row, merge, cap = hints[index]
            if merge and row[8] in waiting:
                answers[index] = waiting[row[8]]
            elif pending < cap:
                stored.append(row)
                pending += 1
                answers[index] = row[0]
                if merge:
                    waiting[row[8]] = row[0]
    if stored:
        insert_rows(conn, INSERT_REQUEST, stored)
        conn.dialect.notify(conn, "hints")  # the fetch-back of every process wakes
    return answers


def pending_hints(conn: Conn) -> dict[str, int]:
    """Pending hints by source (for /metrics), including those of sources that no longer
    fetch, until claim_hints hands them out to fail."""
    with conn.dialect.on_indexes(conn):  # never a scan of every request
        rows = conn.execute(
            "SELECT source, count(*) FROM requests WHERE state = 'pending' GROUP BY source"
        ).fetchall()
    return {source: count for source, count in rows}


def settle_hints(
    conn: Conn, outcomes: Sequence[tuple[str, IngestRows | None, str | None, float | None]]
) -> list[list[Accepted]]:
    """Record fetched hints: (request id, the event's rows or None, error, next attempt). With
    rows, the event is stored (deduplicated like any) and the request accepted; without, it
    waits for its next attempt, or has failed when there is none. A hint whose fetched events
    are all duplicates goes, like a duplicate webhook's request: no event would ever lead
    retention to it."""
    fetched = [rows for _, rows, _, _ in outcomes if rows is not None]
    accepted = iter(ingest(conn, fetched))
    results = []
    for request_id, rows, error, next_at in outcomes:
        outcome = next(accepted) if rows is not None else []
        if outcome and all(a.duplicate for a in outcome):
            conn.execute("DELETE FROM requests WHERE id = ? AND state = 'pending'", (request_id,))
        else:
            state = (
                "accepted" if rows is not None else "pending" if next_at is not None else "failed"
            )
            conn.execute(
                "UPDATE requests SET state = ?, next_attempt_at = ?, last_error = ?"
                " WHERE id = ? AND state = 'pending'",  # a late second fetch changes nothing
                (state, next_at, error, request_id),
            )
        results.append(outcome)
    return results


RELEASE = """
UPDATE deliveries
SET status = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END,
    attempts = attempts - 1, lease_until = NULL, updated_at = ?
WHERE id = ? AND status = 'in_flight' AND lease_until = ?
"""


def release(conn: Conn, batches: Sequence[list[Claim]]) -> list[None]:
    """Give back leases of attempts that never ran to the end (clean shutdown)."""
    now = time.time()
    for claims in batches:
        conn.executemany(RELEASE, [(now, c.delivery_id, c.lease_until) for c in claims])
    return [None] * len(batches)


INSERT_ATTEMPT = (
    "INSERT INTO attempts (id, delivery_id, event_id, destination, number, started_at,"
    " duration_ms, status_code, response_excerpt, error, replay) VALUES "
)


def _finish_sql(rows: int) -> str:
    return (
        "WITH outcome (id, status, next_at, code, error, lease) AS (VALUES "
        + ",".join(["(?,?,?,?,?,?)"] * rows)
        + ") UPDATE deliveries SET status = outcome.status, next_attempt_at = outcome.next_at,"
        # A column of NULLs has no type of its own on PostgreSQL: name the types.
        " lease_until = NULL, updated_at = ?, last_status_code = CAST(outcome.code AS INTEGER),"
        " last_error = CAST(outcome.error AS TEXT) FROM outcome WHERE deliveries.id = outcome.id"
        " AND deliveries.status = 'in_flight' AND deliveries.lease_until = outcome.lease"
    )


# A destination with no failure for this long is not "failing continuously" any more, even if
# no success came in between (say it had no traffic); its next failure starts a new streak.
QUIET_RESETS_FAILING = 86400.0


def finish(conn: Conn, outcomes: Sequence[Outcome]) -> list[float | None]:
    """Record attempts and move each delivery on, in two statements for the whole group. A
    delivery whose lease was lost meanwhile keeps its new owner's state; the attempt is still
    recorded. Returns, per outcome, since when its destination has been failing (None: its
    last attempt succeeded)."""
    now = time.time()
    insert_rows(
        conn,
        INSERT_ATTEMPT,
        [
            (
                new_id("att"),
                o.claim.delivery_id,
                o.claim.event_id,
                o.claim.destination,
                o.claim.attempt,
                o.started_at,
                o.duration_ms,
                o.status_code,
                o.response_excerpt,
                o.error,
                int(o.claim.replay),
            )
            for o in outcomes
        ],
    )
    per_statement = (MAX_VARIABLES - 1) // 6
    for start in range(0, len(outcomes), per_statement):
        chunk = outcomes[start : start + per_statement]
        params: list[Any] = []
        for o in chunk:
            params += (
                o.claim.delivery_id,
                o.status,
                o.next_attempt_at,
                o.status_code,
                o.error,
                o.claim.lease_until,
            )
        conn.execute(_finish_sql(len(chunk)), [*params, now])
    failing: dict[str, float | None] = {}
    for o in outcomes:  # in order: the last outcome of a destination decides
        failing[o.claim.destination] = None if o.status == "succeeded" else o.started_at
    names = sorted(failing)  # one lock order in every process: no deadlock between them
    conn.execute(
        "INSERT INTO destination_state (name, state, changed_at, failing_since, last_failure_at)"
        " VALUES "
        + ",".join(["(?, 'active', ?, ?, ?)"] * len(names))
        + " ON CONFLICT (name) DO UPDATE SET"
        " failing_since = CASE"
        "  WHEN excluded.failing_since IS NULL THEN NULL"
        "  WHEN destination_state.last_failure_at < ? THEN excluded.failing_since"
        "  ELSE coalesce(destination_state.failing_since, excluded.failing_since) END,"
        " last_failure_at = coalesce(excluded.last_failure_at, destination_state.last_failure_at)",
        [
            *(value for name in names for value in (name, now, failing[name], failing[name])),
            now - QUIET_RESETS_FAILING,
        ],
    )
    since = dict(
        conn.execute(
            f"SELECT name, failing_since FROM destination_state WHERE name IN {in_list(names)}",
            names,
        ).fetchall()
    )
    return [since.get(o.claim.destination) for o in outcomes]


def destination_states(conn: Conn) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        "SELECT name, state, reason, changed_at, failing_since FROM destination_state"
    )
    return {
        name: {"state": state, "reason": reason, "changed_at": changed, "failing_since": since}
        for name, state, reason, changed, since in rows
    }


def set_destination_state(conn: Conn, changes: Sequence[tuple[str, str, str | None]]) -> list[bool]:
    """Move destinations to a state (active, paused, disabled); True where it changed.
    Becoming active forgets past failures, so a re-enabled destination starts afresh."""
    now = time.time()
    changed = []
    for name, state, reason in changes:
        cursor = conn.execute(
            "INSERT INTO destination_state (name, state, reason, changed_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET state = excluded.state, reason = excluded.reason,"
            " changed_at = excluded.changed_at,"
            " failing_since = CASE WHEN excluded.state = 'active' THEN NULL"
            "  ELSE destination_state.failing_since END"
            " WHERE destination_state.state != excluded.state",
            (name, state, reason, now),
        )
        changed.append(cursor.rowcount > 0)
    if any(changed):
        conn.dialect.notify(conn, "state")  # other processes refresh; resumed ones have work
        conn.dialect.notify(conn, "work")
    return changed


def _sendable(conn: Conn, event_ids: Sequence[str]) -> list[str]:
    """Those of these events whose payload is still stored, locked against retention (see
    store/retention.py) until the transaction ends."""
    found: list[str] = []
    unique = sorted(set(event_ids))  # in id order, as retention locks them: no deadlock
    for start in range(0, len(unique), 10_000):
        chunk = unique[start : start + 10_000]
        found += [
            row[0]
            for row in conn.execute(
                f"SELECT id FROM events WHERE id IN {in_list(chunk)} AND payload IS NOT NULL"
                f" ORDER BY id{conn.dialect.for_share}",
                chunk,
            )
        ]
    return found


def retry_dead(conn: Conn, destinations: Sequence[str]) -> list[int]:
    """Give dead deliveries a fresh schedule, due now. Their attempts stay recorded. Those
    whose event's payload retention removed stay dead: there is nothing to send. Of an
    event's deliveries to the destination, only the latest moves, and only if it is the dead
    one: an earlier one that died before a replay (succeeded, under way or dead itself) stays,
    so no event goes twice."""
    now = time.time()
    counts = []
    for name in destinations:
        dead = conn.execute(
            "SELECT DISTINCT event_id FROM deliveries WHERE destination = ? AND status = 'dead'",
            (name,),
        ).fetchall()
        events = _sendable(conn, [row[0] for row in dead])
        count = 0
        for start in range(0, len(events), 10_000):
            chunk = events[start : start + 10_000]
            count += conn.execute(
                "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?,"
                " updated_at = ? WHERE destination = ? AND status = 'dead'"
                f" AND event_id IN {in_list(chunk)} AND NOT EXISTS (SELECT 1 FROM deliveries"
                " later WHERE later.event_id = deliveries.event_id"
                " AND later.destination = deliveries.destination AND later.id > deliveries.id)",
                (now, now, name, *chunk),
            ).rowcount
        counts.append(count)
    if any(counts):
        conn.dialect.notify(conn, "work")
    return counts


def replay(
    conn: Conn,
    requests: Sequence[tuple[list[str], str | None, Mapping[str, str | None], str | None, bool]],
) -> list[tuple[int, int]]:
    """New deliveries (replay=1) of these events: to `destination`, or to every destination
    still configured that they were delivered to before (`configured`: each one's ordering
    setting, from which the new deliveries take their ordering keys, as at ingest). With a
    `status`, only where a delivery has that status and none to the same destination since
    is under way or succeeded (a replay of what died, run twice, sends nothing twice, even
    while the first one's deliveries wait); `destination` then narrows those rather than
    adding one, unless `redirect` (the caller chose these events: each goes to `destination`
    instead). Returns how many events got new deliveries, and how many deliveries."""
    now = time.time()
    created = []
    for requested, destination, configured, status, redirect in requests:
        event_ids = _sendable(conn, requested)  # retention removed the others' bytes
        rows = []
        only = "" if destination is None else " AND d.destination = ?"
        if status is None:
            which = " AND d.replay = 0"
        else:
            which = (
                f" AND {_delivery_status('d')} = ? AND NOT EXISTS (SELECT 1 FROM deliveries later"
                " WHERE later.event_id = d.event_id AND later.destination = d.destination"
                " AND later.id > d.id AND later.status <> 'dead')"
            )
        for start in range(0, len(event_ids), 10_000):
            chunk = event_ids[start : start + 10_000]
            rows += conn.execute(
                "SELECT DISTINCT e.id, e.source, d.destination FROM events e"
                f" LEFT JOIN deliveries d ON d.event_id = e.id{which}{only}"
                f" WHERE e.id IN {in_list(chunk)}",
                [
                    *([] if status is None else [status]),
                    *([] if destination is None else [destination]),
                    *chunk,
                ],
            ).fetchall()
        # An event the join found no delivery of (none to `destination`, or none there in the
        # status) gets one at `destination`; unless a status narrows where to replay.
        narrowed = status is not None and not redirect
        targets: list[tuple[str, str, str]] = sorted(
            (event_id, source, target)
            for event_id, source, name in rows
            if (target := name if narrowed else name or destination) is not None
            and target in configured
        )
        # Ordering keys as the destination orders now: one the event never went to had no
        # earlier delivery to take its key from, and its replays went out of order.
        deliveries = []
        for start in range(0, len(targets), 1000):  # payloads read a part at a time
            part = targets[start : start + 1000]
            by_field = [e for e, _, to in part if (configured[to] or "").startswith("field:")]
            payloads = _payloads(conn, by_field)
            deliveries += [
                (new_id("dlv"), event_id, to, "pending", now, now, now, key, 1)
                for event_id, source, to in part
                for key in [ordering_key(configured[to], source, _parsed(payloads.get(event_id)))]
            ]
        _insert_deliveries(conn, deliveries, INSERT_REPLAY)
        created.append((len({row[1] for row in deliveries}), len(deliveries)))
    return created


def _payloads(conn: Conn, event_ids: Sequence[str]) -> dict[str, bytes]:
    unique = sorted(set(event_ids))
    if not unique:
        return {}
    sql = f"SELECT id, payload FROM events WHERE id IN {in_list(unique)}"
    return {row[0]: bytes(row[1] or b"") for row in conn.execute(sql, unique)}


def _parsed(payload: bytes | None) -> Callable[[], Any]:
    """The payload as JSON for an ordering field (None if it is not JSON), as at ingest."""

    def document() -> Any:
        try:
            return orjson.loads(payload or b"")
        except orjson.JSONDecodeError:
            return None

    return document


def retry_delivery(conn: Conn, delivery_ids: Sequence[str]) -> list[str | None]:
    """Make a dead or retrying delivery due now (a dead one with a fresh schedule). Returns
    its status before, or None if there is no such delivery; only dead and retrying move.
    "gone" when retention removed its event's payload: there is nothing to send."""
    now = time.time()
    results: list[str | None] = []
    for delivery_id in delivery_ids:
        row = conn.execute(
            "SELECT status, event_id FROM deliveries WHERE id = ?", (delivery_id,)
        ).fetchone()
        if row is not None and row[0] in ("dead", "retrying") and not _sendable(conn, [row[1]]):
            results.append("gone")
            continue
        if row is not None and row[0] in ("dead", "retrying"):
            moved = conn.execute(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = ?, updated_at = ?,"
                " attempts = CASE WHEN status = 'dead' THEN 0 ELSE attempts END"
                " WHERE id = ? AND status IN ('dead', 'retrying')",
                (now, now, delivery_id),
            ).rowcount
            if not moved:  # removed (retention elsewhere) or moved on since it was read
                row = None
            else:
                conn.dialect.notify(conn, "work")
        results.append(row[0] if row else None)
    return results


def finish_groups(conn: Conn, groups: Sequence[Sequence[Outcome]]) -> list[list[float | None]]:
    """`finish` for groups of outcomes collected by the worker: one operation per group."""
    flat = [outcome for group in groups for outcome in group]
    results = iter(finish(conn, flat))
    return [[next(results) for _ in group] for group in groups]


def record_rejected(conn: Conn, batches: Sequence[tuple[list[Rejected], int]]) -> list[None]:
    """Append sampled rejections, then trim the log to its bound."""
    keep = batches[-1][1]
    for rows, _ in batches:
        conn.executemany(
            "INSERT INTO rejected (id, source, received_at, status, code, reason, method, path,"
            " query, headers, peer, body, body_size) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    r.id,
                    r.source,
                    r.received_at,
                    r.status,
                    r.code,
                    r.reason,
                    r.method,
                    r.path,
                    r.query,
                    r.headers,
                    r.peer,
                    r.body,
                    r.body_size,
                )
                for r in rows
            ],
        )
    conn.execute(
        "DELETE FROM rejected WHERE id <= "
        "(SELECT id FROM rejected ORDER BY id DESC LIMIT 1 OFFSET ?)",
        (keep,),
    )
    return [None] * len(batches)


def ensure_token(conn: Conn, name: str, token_hash: str, scope: str) -> None:
    conn.execute(
        "INSERT INTO tokens (id, name, hash, scope, created_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (hash) DO UPDATE SET scope = excluded.scope, revoked_at = NULL",
        (new_id("tok"), name, token_hash, scope, time.time()),
    )


def expire_dedup(conn: Conn, batches: Sequence[tuple[float, int]]) -> list[int]:
    """Forget dedup keys first seen before `cutoff`, at most `limit` per call (short writes)."""
    removed = []
    for cutoff, limit in batches:
        cursor = conn.execute(
            "DELETE FROM dedup WHERE (source, key) IN"
            " (SELECT source, key FROM dedup WHERE first_seen < ? LIMIT ?)",
            (cutoff, limit),
        )
        removed.append(cursor.rowcount)
    return removed


def replace_admin_token(conn: Conn, token_hash: str) -> None:
    """Make `token_hash` the configured admin token, revoking the configured or generated one
    it replaces (tokens created through the API are left alone)."""
    conn.execute(
        "UPDATE tokens SET revoked_at = ?"
        " WHERE name IN (?, ?) AND hash != ? AND revoked_at IS NULL",
        (time.time(), CONFIGURED_ADMIN, GENERATED_ADMIN, token_hash),
    )
    ensure_token(conn, CONFIGURED_ADMIN, token_hash, "admin")


def retire_configured_admin(conn: Conn) -> None:
    """The config no longer names an admin token: the one it named stops working."""
    conn.execute(
        "UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
        (time.time(), CONFIGURED_ADMIN),
    )


def has_admin_token(conn: Conn) -> bool:
    row = conn.execute(
        "SELECT 1 FROM tokens WHERE scope = 'admin' AND revoked_at IS NULL LIMIT 1"
    ).fetchone()
    return row is not None


def find_token(conn: Conn, token_hash: str) -> tuple[str, str, str] | None:
    """(id, name, scope) of a live token."""
    row = conn.execute(
        "SELECT id, name, scope FROM tokens WHERE hash = ? AND revoked_at IS NULL", (token_hash,)
    ).fetchone()
    return (row[0], row[1], row[2]) if row else None


TOKEN_COLUMNS = ("id", "name", "scope", "created_at", "revoked_at")


def create_token(conn: Conn, requests: Sequence[tuple[str, str, str]]) -> list[str]:
    now = time.time()
    ids = []
    for name, token_hash, scope in requests:
        token_id = new_id("tok")
        conn.execute(
            "INSERT INTO tokens (id, name, hash, scope, created_at) VALUES (?, ?, ?, ?, ?)",
            (token_id, name, token_hash, scope, now),
        )
        ids.append(token_id)
    return ids


def revoke_token(conn: Conn, token_ids: Sequence[str]) -> list[bool]:
    now = time.time()
    return [
        conn.execute(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, token_id)
        ).rowcount
        == 1
        for token_id in token_ids
    ]


def list_tokens(conn: Conn) -> list[dict[str, Any]]:
    rows = conn.execute(f"SELECT {', '.join(TOKEN_COLUMNS)} FROM tokens ORDER BY id")
    return [dict(zip(TOKEN_COLUMNS, row, strict=True)) for row in rows]


AUDIT_COLUMNS = ("id", "at", "token_id", "token_name", "action", "target", "detail")


def record_audit(conn: Conn, entries: Sequence[tuple[Any, ...]]) -> list[None]:
    insert_rows(
        conn,
        "INSERT INTO audit (id, at, token_id, token_name, action, target, detail) VALUES ",
        [(new_id("aud"), *e) for e in entries],
    )
    return [None] * len(entries)


def list_audit(conn: Conn, *, cursor: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    where, params = _conditions(("id < ?", cursor))
    rows = conn.execute(
        f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit WHERE {' AND '.join(where)}"
        " ORDER BY id DESC LIMIT ?",
        [*params, limit],
    )
    result = []
    for row in rows:
        item = dict(zip(AUDIT_COLUMNS, row, strict=True))
        item["detail"] = orjson.loads(item["detail"]) if item["detail"] else None
        result.append(item)
    return result


def queue_figures(conn: Conn) -> dict[tuple[str, str], tuple[int, float | None]]:
    """(destination, status) -> (count, earliest next attempt) of unfinished deliveries."""
    rows = conn.execute(
        "SELECT destination, status, count(*), min(next_attempt_at) FROM deliveries"
        " WHERE status IN ('pending', 'retrying', 'in_flight') GROUP BY destination, status"
    )
    return {(d, s): (n, t) for d, s, n, t in rows}


def next_due(conn: Conn, destinations: Sequence[str]) -> float | None:
    """When the earliest delivery that may go (see READY) or lease of these destinations falls
    due; a delivery waiting behind another with its ordering key does not count."""
    times = []
    with conn.dialect.on_indexes(conn):
        for destination in destinations:
            times += conn.execute(
                "SELECT * FROM (SELECT d.next_attempt_at FROM deliveries d"
                f" WHERE {READY} ORDER BY d.next_attempt_at LIMIT 1) AS first_due"
                " UNION ALL SELECT min(lease_until) FROM deliveries"
                " WHERE status = 'in_flight' AND destination = :destination",
                {"destination": destination},
            ).fetchall()
    return min((t for (t,) in times if t is not None), default=None)


# -- reads for the worker and the API ---------------------------------------------------------


def event_data(conn: Conn, event_ids: Sequence[str]) -> dict[str, EventData]:
    found: dict[str, EventData] = {}
    unique = list(dict.fromkeys(event_ids))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            "SELECT e.id, e.source, e.provider_event_id, e.event_type, e.content_type, e.payload,"
            " r.headers, e.trace_context FROM events e LEFT JOIN requests r ON r.id = e.request_id"
            f" WHERE e.id IN ({marks})",
            chunk,
        )
        for row in rows:
            if row[5] is None:  # retention removed the payload: there is nothing to send
                continue
            headers = [tuple(pair) for pair in orjson.loads(row[6])] if row[6] else []
            found[row[0]] = EventData(
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                row[5],
                headers,
                row[7],
            )
    return found


EVENT_COLUMNS = (
    "id",
    "source",
    "origin",
    "received_at",
    "provider_event_id",
    "event_type",
    "content_type",
    "payload_size",
    "request_id",
)


def _delivery_status(alias: str) -> str:
    """A delivery's status as shown: pending or retrying deliveries of a destination that is
    not active are held."""
    return (
        f"CASE WHEN {alias}.status IN ('pending', 'retrying') AND EXISTS (SELECT 1 FROM"
        f" destination_state s WHERE s.name = {alias}.destination AND s.state != 'active')"
        f" THEN 'held' ELSE {alias}.status END"
    )


def _field_value(text: str) -> list[Any]:
    """A query value compared with a JSON field: as text, and as the JSON scalar it spells
    (so field.amount=5 matches 5 and field.live=true matches true)."""
    candidates: list[Any] = [text]
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return candidates
    if isinstance(parsed, bool):
        candidates.append(int(parsed))
    elif isinstance(parsed, int) and not -(2**63) <= parsed < 2**63:
        candidates.append(float(parsed))  # beyond the databases' integers: as JSON reads it
    elif isinstance(parsed, int | float | str):
        candidates.append(parsed)
    return candidates


def event_where(conn: Conn, f: EventFilter) -> tuple[str, list[Any]]:
    """SQL conditions on `events e` for a filter."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("source", f.source),
        ("origin", f.origin),
        ("provider_event_id", f.provider_event_id),
    ):
        if value is not None:
            where.append(f"e.{column} = ?")
            params.append(value)
    if f.type is not None:
        where.append(conn.dialect.glob("e.event_type"))
        params.append(conn.dialect.glob_param(f.type))
    if f.since is not None:
        where.append("e.id >= ?")
        params.append(id_floor("evt", f.since))
    if f.until is not None:
        where.append("e.id < ?")
        params.append(id_floor("evt", f.until))
    if f.status == "dead":
        # Few deliveries die: their partial index finds the events without a scan.
        where.append(
            "e.id IN (SELECT d.event_id FROM deliveries d WHERE d.status = 'dead'"
            + (" AND d.destination = ?)" if f.destination is not None else ")")
        )
        params += [f.destination] if f.destination is not None else []
    elif f.status is not None or f.destination is not None:
        conditions = ["d.event_id = e.id"]
        if f.status is not None:
            conditions.append(f"{_delivery_status('d')} = ?")
            params.append(f.status)
        if f.destination is not None:
            conditions.append("d.destination = ?")
            params.append(f.destination)
        where.append(f"EXISTS (SELECT 1 FROM deliveries d WHERE {' AND '.join(conditions)})")
    for path, value in f.fields:
        candidates = conn.dialect.field_values(_field_value(value))
        where.append(f"{field_expression(conn, path)} IN {in_list(candidates)}")
        params += candidates
    return " AND ".join(where) or "TRUE", params


def field_expression(conn: Conn, dotted: str) -> str:
    """A payload field as SQL. The path is written into the SQL (it is checked to hold only
    names, digits, dashes and dots), so that an index on the same expression serves it."""
    if not FIELD_PATH.match(dotted):
        raise ValueError(f"not a dotted field path: {dotted!r}")
    return conn.dialect.field_expression(dotted)


def analyze(conn: Conn, payloads: Sequence[None]) -> list[None]:
    """Refresh the planner's statistics, sampling (analysis_limit) so that it stays cheap on
    any size (tens of ms on a million events): without them SQLite may walk the source index
    where a selective field index would answer at once."""
    for statement in conn.dialect.analyze_sql:
        conn.execute(statement)
    return [None] * len(payloads)


def sync_field_indexes(conn: Conn, paths: Sequence[Sequence[str]]) -> list[list[str]]:
    """Create an index for each configured payload field and drop those no longer configured.
    Returns the names created, per call."""
    created = []
    for wanted in paths:
        names = {f"events_field_{hashlib.sha256(p.encode()).hexdigest()[:12]}": p for p in wanted}
        conn.dialect.lock_schema(conn)  # processes starting together build each index once
        existing = {row[0] for row in conn.execute(conn.dialect.field_indexes_sql)}
        for name in existing - set(names):
            conn.execute(f"DROP INDEX IF EXISTS {name}")
        new = [name for name in names if name not in existing]
        for name in new:
            conn.execute(  # IF NOT EXISTS: several processes may start at once
                f"CREATE INDEX IF NOT EXISTS {name} ON events"
                f" ({field_expression(conn, names[name])})"
            )
        for name in conn.dialect.upgraded_field_indexes(conn):
            # Kept by the PostgreSQL upgrade to partitions (schema 12) on events_default, where
            # the parent's index of the same field adopted it: one no longer configured goes.
            if name.replace("events_default_", "events_", 1) not in names:
                conn.execute(f"DROP INDEX IF EXISTS {name}")
        created.append(new)
    return created


def list_events(
    conn: Conn,
    filters: EventFilter,
    *,
    cursor: str | None = None,
    limit: int = 50,
    order: str = "desc",
) -> list[dict[str, Any]]:
    """Events by id order (ids sort by time); the cursor is the last id of the previous page,
    so pages stay correct while new events arrive."""
    clause, params = event_where(conn, filters)
    if cursor is not None:
        clause += " AND e.id < ?" if order == "desc" else " AND e.id > ?"
        params.append(cursor)
    direction = "DESC" if order == "desc" else "ASC"
    rows = conn.execute(
        f"SELECT {', '.join('e.' + c for c in EVENT_COLUMNS)} FROM events e WHERE {clause}"
        f" ORDER BY e.id {direction} LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [dict(zip(EVENT_COLUMNS, row, strict=True)) for row in rows]


EXPORT_COLUMNS = (
    "id",
    "source",
    "origin",
    "received_at",
    "provider_event_id",
    "event_type",
    "dedup_key",
    "content_type",
    "payload",
)


def export_events(
    conn: Conn, filters: EventFilter, *, cursor: str | None, limit: int
) -> list[tuple[Any, ...]]:
    """Whole events (payload included), oldest first, for export."""
    clause, params = event_where(conn, filters)
    if cursor is not None:
        clause += " AND e.id > ?"
        params.append(cursor)
    return conn.execute(
        f"SELECT {', '.join('e.' + c for c in EXPORT_COLUMNS)} FROM events e WHERE {clause}"
        " ORDER BY e.id LIMIT ?",
        [*params, limit],
    ).fetchall()


def import_events(conn: Conn, batches: Sequence[list[tuple[Any, ...]]]) -> list[int]:
    """Insert exported events that are not here yet (by id); no deliveries. Returns how many
    were new per batch. Each event's (first) dedup key comes too, so that a provider still
    retrying after a move to this database gets a duplicate, not a second event; a key held
    by another event stays with it."""
    results = []
    now = time.time()
    for rows in batches:
        inserted = insert_rows(
            conn,
            "INSERT INTO events (id, source, origin, received_at, provider_event_id,"
            " event_type, dedup_key, content_type, payload, payload_size) VALUES ",
            [(*row, len(row[-1]) if row[-1] is not None else 0) for row in rows],
            " ON CONFLICT (id) DO NOTHING",
        )
        keys = {(row[1], key_digest(row[6])): row[0] for row in rows if row[6]}
        insert_rows(
            conn,
            INSERT_DEDUP,
            [(source, key, event_id, now) for (source, key), event_id in keys.items()],
            ON_CONFLICT_IGNORE,
        )
        results.append(inserted)
        # Imported events keep their (older) ids: retention's payload pass, which resumes
        # after the last event it stripped, starts over for their sources.
        oldest: dict[str, str] = {}
        for event_id, source, *_ in rows:
            oldest[source] = min(event_id, oldest.get(source, event_id))
        for source, event_id in oldest.items():
            conn.execute(
                "DELETE FROM retention_marks WHERE source = ? AND swept_to >= ?",
                (source, event_id),
            )
    return results


def count_events(conn: Conn, filters: EventFilter) -> int:
    clause, params = event_where(conn, filters)
    count: int = conn.execute(f"SELECT count(*) FROM events e WHERE {clause}", params).fetchone()[0]
    return count


DELIVERY_COLUMNS = (
    "id",
    "destination",
    "status",
    "attempts",
    "next_attempt_at",
    "replay",
    "created_at",
    "updated_at",
    "last_status_code",
    "last_error",
)


def _conditions(*filters: tuple[str, Any]) -> tuple[list[str], list[Any]]:
    """The SQL conditions, and their parameters, of the filters whose value is set."""
    where, params = ["TRUE"], []
    for condition, value in filters:
        if value is not None:
            where.append(condition)
            params.append(value)
    return where, params


def list_deliveries(
    conn: Conn,
    *,
    delivery_id: str | None = None,
    status: str | None = None,
    destination: str | None = None,
    event_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    cursor: str | None = None,
    limit: int = 50,
    order: str = "desc",
) -> list[dict[str, Any]]:
    dead = status == "dead"  # a literal then, so that the partial index of dead ones applies
    where, params = _conditions(
        ("d.id = ?", delivery_id),
        (f"{_delivery_status('d')} = ?", None if dead else status),
        ("d.destination = ?", destination),
        ("d.event_id = ?", event_id),
        ("d.id >= ?", None if since is None else id_floor("dlv", since)),
        ("d.id < ?", None if until is None else id_floor("dlv", until)),
        ("d.id < ?" if order == "desc" else "d.id > ?", cursor),
    )
    if dead:
        where.append("d.status = 'dead'")
    rows = conn.execute(
        f"SELECT {', '.join(DELIVERY_SELECT)}, d.event_id FROM deliveries d"
        f" WHERE {' AND '.join(where)} ORDER BY d.id {'DESC' if order == 'desc' else 'ASC'}"
        " LIMIT ?",
        [*params, limit],
    ).fetchall()
    result = []
    for row in rows:
        item = dict(zip((*DELIVERY_COLUMNS, "event_id"), row, strict=True))
        item["replay"] = bool(item["replay"])
        result.append(item)
    return result


DELIVERY_SELECT = tuple(
    _delivery_status("d") if column == "status" else f"d.{column}" for column in DELIVERY_COLUMNS
)
ATTEMPT_COLUMNS = (
    "id",
    "delivery_id",
    "number",
    "started_at",
    "duration_ms",
    "status_code",
    "response_excerpt",
    "error",
    "replay",
)


def list_attempts(
    conn: Conn,
    *,
    delivery_id: str | None = None,
    destination: str | None = None,
    failed: bool | None = None,
    since: float | None = None,
    until: float | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Attempts, newest first (attempt ids sort by time)."""
    where, params = _conditions(
        ("delivery_id = ?", delivery_id),
        ("destination = ?", destination),
        ("id >= ?", None if since is None else id_floor("att", since)),
        ("id < ?", None if until is None else id_floor("att", until)),
        ("id < ?", cursor),
    )
    if failed is not None:
        success = "error IS NULL"  # a failure always says why (HTTP 500, a refused broker)
        where.append(f"NOT {success}" if failed else success)
    columns = (*ATTEMPT_COLUMNS, "event_id", "destination")
    rows = conn.execute(
        f"SELECT {', '.join(columns)} FROM attempts WHERE {' AND '.join(where)}"
        " ORDER BY id DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [{**dict(zip(columns, r, strict=True)), "replay": bool(r[8])} for r in rows]


def get_event(conn: Conn, event_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {', '.join('e.' + c for c in EVENT_COLUMNS)}, r.method, r.path, r.query,"
        " r.headers, r.peer, e.payload IS NULL"
        " FROM events e LEFT JOIN requests r ON r.id = e.request_id WHERE e.id = ?",
        (event_id,),
    ).fetchone()
    if row is None:
        return None
    event = dict(zip(EVENT_COLUMNS, row, strict=False))
    method, path, query, headers, peer, removed = row[len(EVENT_COLUMNS) :]
    event["payload_removed"] = bool(removed)
    event["request"] = (
        None
        if method is None
        else {
            "method": method,
            "path": path,
            "query": query,
            "headers": orjson.loads(headers),
            "peer": peer,
        }
    )
    deliveries = [
        dict(zip(DELIVERY_COLUMNS, r, strict=True))
        for r in conn.execute(
            f"SELECT {', '.join(DELIVERY_SELECT)} FROM deliveries d"
            " WHERE d.event_id = ? ORDER BY d.id",
            (event_id,),
        )
    ]
    for delivery in deliveries:
        delivery["replay"] = bool(delivery["replay"])
        delivery["attempt_log"] = [
            dict(zip(ATTEMPT_COLUMNS, r, strict=True))
            for r in conn.execute(
                f"SELECT {', '.join(ATTEMPT_COLUMNS)} FROM attempts WHERE delivery_id = ?"
                " ORDER BY id",
                (delivery["id"],),
            )
        ]
        for attempt in delivery["attempt_log"]:
            attempt["replay"] = bool(attempt["replay"])
    event["deliveries"] = deliveries
    return event


def get_raw(conn: Conn, event_id: str) -> tuple[bytes | None, str | None] | None:
    row = conn.execute(
        "SELECT payload, content_type FROM events WHERE id = ?", (event_id,)
    ).fetchone()
    return None if row is None else (row[0], row[1])


REJECTED_COLUMNS = (
    "id",
    "source",
    "received_at",
    "status",
    "code",
    "reason",
    "method",
    "path",
    "query",
    "headers",
    "peer",
    "body_size",
)


def list_rejected(
    conn: Conn,
    *,
    source: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    where, params = _conditions(("source = ?", source), ("id < ?", cursor))
    clause = f"WHERE {' AND '.join(where)}"
    rows = conn.execute(
        f"SELECT {', '.join(REJECTED_COLUMNS)} FROM rejected {clause} ORDER BY id DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
    result = []
    for row in rows:
        item = dict(zip(REJECTED_COLUMNS, row, strict=True))
        item["headers"] = orjson.loads(item["headers"])
        result.append(item)
    return result
