"""SQL of the REST side (pollers/): job leases, page commits and the item memory.

A page's events, the items' new fingerprints, the page validators, the call counts and the
job's checkpoint go in one transaction (promise 3), fenced by the run's id: a run whose lease
was taken over by another process commits nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hookyard.errors import WriteRefused
from hookyard.ids import new_id
from hookyard.models import Accepted
from hookyard.store import queries
from hookyard.store.db import Conn, in_list

# Whose lease may be taken. SQLite: one process owns the database, and it asks only for jobs it
# is not running, so a lease found is a dead process's. PostgreSQL: an expired lease, or one
# whose holder's connection is gone (a killed process: no need to wait for the lease to end).
CLAIM = {
    "sqlite": "UPDATE rest_jobs SET run_id = :run, lease_until = :until, last_run_at = :now"
    " WHERE source = :source AND job = :job AND next_run_at <= :now",
    "postgresql": "UPDATE rest_jobs SET run_id = :run, lease_until = :until, last_run_at = :now,"
    " holder = pg_backend_pid() WHERE source = :source AND job = :job AND next_run_at <= :now"
    " AND (lease_until IS NULL OR lease_until < :now OR NOT EXISTS"
    " (SELECT 1 FROM pg_stat_activity WHERE pid = rest_jobs.holder))",
}


class LeaseLost(WriteRefused):
    """Another process runs this job now (this run's lease ran out)."""


@dataclass(frozen=True, slots=True)
class JobRun:
    source: str
    job: str  # poll | reconcile | backfill
    run_id: str
    checkpoint: str | None  # JSON
    failures: int  # consecutive failed runs before this one
    succeeded: bool = False  # whether a run of this job has ever succeeded


@dataclass(frozen=True, slots=True)
class Remembered:
    """A polled item as last seen."""

    fingerprint: str
    changes: int  # events emitted for it so far
    page: str | None


@dataclass(slots=True)
class RestCommit:
    """What one page (or the end of a run) changes, committed together."""

    source: str
    job: str
    run_id: str
    lease_until: float
    checkpoint: str | None = None  # JSON; None keeps the stored one
    events: queries.IngestRows | None = None
    items: list[tuple[str, str, int, str | None]] = field(default_factory=list)  # upserts
    pages: list[tuple[str, str | None, str | None, str | None]] = field(default_factory=list)
    keep_pages: list[str] | None = None  # at the end of a full pass: forget the others
    calls: tuple[int, int] = (0, 0)  # API calls, of which 304s
    checked: int = 0  # items examined
    skipped: int = 0  # malformed items skipped
    next_run_at: float | None = None  # set: the run is over (None with `finished`: unscheduled)
    finished: bool = False


def claim_jobs(
    conn: Conn, requests: Sequence[tuple[float, float, list[tuple[str, str, float | None]]]]
) -> list[list[JobRun]]:
    """Lease the due jobs among (source, job, first run time); a job seen for the first time
    is created due at that time (None: only if it exists, a requested backfill). A job under
    another run's lease is skipped."""
    results = []
    for now, lease, jobs in requests:
        claimed = []
        for source, job, first_due in jobs:
            if first_due is not None:
                conn.execute(
                    "INSERT INTO rest_jobs (source, job, next_run_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (source, job) DO NOTHING",
                    (source, job, first_due),
                )
            run_id = new_id("run")
            row = conn.execute(
                CLAIM[conn.dialect.name] + " RETURNING checkpoint, failures, last_success_at",
                {"run": run_id, "until": now + lease, "now": now, "source": source, "job": job},
            ).fetchone()
            if row is not None:
                claimed.append(JobRun(source, job, run_id, row[0], row[1], row[2] is not None))
        results.append(claimed)
    return results


def commit(conn: Conn, batch: Sequence[RestCommit]) -> list[list[Accepted]]:
    results = []
    now = time.time()
    for change in batch:
        accepted = queries.ingest(conn, [change.events])[0] if change.events else []
        emitted = sum(not a.duplicate for a in accepted)
        sets = [
            "checkpoint = COALESCE(?, checkpoint)",
            "emitted = emitted + ?",
            "checked = checked + ?",
            "skipped = skipped + ?",
        ]
        params: list[Any] = [change.checkpoint, emitted, change.checked, change.skipped]
        if change.finished:  # the run is over: release the lease, schedule the next
            sets += ["run_id = NULL", "lease_until = NULL", "next_run_at = ?"]
            sets += ["last_success_at = ?", "last_error = NULL", "failures = 0"]
            params += [change.next_run_at, now]
        else:
            sets.append("lease_until = ?")
            params.append(change.lease_until)
        updated = conn.execute(
            f"UPDATE rest_jobs SET {', '.join(sets)} WHERE source = ? AND job = ? AND run_id = ?",
            [*params, change.source, change.job, change.run_id],
        ).rowcount
        if updated != 1:  # rolls the whole transaction back: nothing of this page is kept
            raise LeaseLost(f"{change.source} {change.job}: another process runs it now")
        _remember(conn, change)
        _count_calls(conn, change.source, change.calls)
        results.append(accepted)
    return results


def _remember(conn: Conn, change: RestCommit) -> None:
    """The items' and pages' new state."""
    source = change.source
    if change.items:
        # One row per item: a page listing an item twice (PostgreSQL refuses to upsert a row
        # twice in one statement) keeps the last.
        items = {item[0]: item for item in change.items}
        queries.insert_rows(
            conn,
            "INSERT INTO rest_items (source, item_id, fingerprint, changes, page) VALUES ",
            [(source, *item) for item in items.values()],
            " ON CONFLICT (source, item_id) DO UPDATE SET fingerprint = excluded.fingerprint,"
            " changes = excluded.changes, page = excluded.page",
        )
    if change.pages:
        queries.insert_rows(
            conn,
            "INSERT INTO rest_pages (source, url, etag, last_modified, next_url) VALUES ",
            [(source, *page) for page in change.pages],
            " ON CONFLICT (source, url) DO UPDATE SET etag = excluded.etag,"
            " last_modified = excluded.last_modified, next_url = excluded.next_url",
        )
    if change.keep_pages is not None:
        keep = set(change.keep_pages)
        stale = [
            url
            for (url,) in conn.execute("SELECT url FROM rest_pages WHERE source = ?", (source,))
            if url not in keep
        ]
        for url in stale:
            conn.execute("DELETE FROM rest_pages WHERE source = ? AND url = ?", (source, url))


def fail(
    conn: Conn, failures: Sequence[tuple[JobRun, str, float | None, tuple[int, int]]]
) -> list[None]:
    """End runs that failed: the error, the next run, and the API calls they made."""
    for run, error, next_run_at, calls in failures:
        conn.execute(
            "UPDATE rest_jobs SET run_id = NULL, lease_until = NULL, last_error = ?,"
            " failures = failures + 1, next_run_at = ? WHERE source = ? AND job = ? AND run_id = ?",
            (error, next_run_at, run.source, run.job, run.run_id),
        )
        _count_calls(conn, run.source, calls)
    return [None] * len(failures)


def _count_calls(conn: Conn, source: str, calls: tuple[int, int]) -> None:
    if calls[0]:
        day = time.strftime("%Y-%m-%d", time.gmtime())
        conn.execute(
            "INSERT INTO api_calls (source, day, calls, not_modified) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (source, day) DO UPDATE SET calls = api_calls.calls + excluded.calls,"
            " not_modified = api_calls.not_modified + excluded.not_modified",
            (source, day, *calls),
        )


def renew(conn: Conn, leases: Sequence[tuple[str, str, str, float]]) -> list[bool]:
    return [
        conn.execute(
            "UPDATE rest_jobs SET lease_until = ? WHERE source = ? AND job = ? AND run_id = ?",
            (until, source, job, run_id),
        ).rowcount
        == 1
        for source, job, run_id, until in leases
    ]


def schedule(conn: Conn, requests: Sequence[tuple[str, str, str | None, bool]]) -> list[str]:
    """(source, job, checkpoint, fresh): make a job due now. `fresh` replaces its checkpoint
    and counters (a new backfill). Returns "started", or "running" for a job under lease
    whose checkpoint would change."""
    now = time.time()
    results = []
    for source, job, checkpoint, fresh in requests:
        row = conn.execute(
            "SELECT checkpoint, lease_until FROM rest_jobs WHERE source = ? AND job = ?",
            (source, job),
        ).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO rest_jobs (source, job, checkpoint, next_run_at) VALUES (?, ?, ?, ?)",
                (source, job, checkpoint, now),
            )
        elif fresh and row[1] is not None and row[1] > now and row[0] != checkpoint:
            results.append("running")
            continue
        elif fresh:
            conn.execute(
                "UPDATE rest_jobs SET checkpoint = ?, next_run_at = ?, failures = 0,"
                " last_error = NULL, emitted = 0, checked = 0, skipped = 0, last_success_at = NULL"
                " WHERE source = ? AND job = ?",
                (checkpoint, now, source, job),
            )
        else:
            conn.execute(
                "UPDATE rest_jobs SET next_run_at = ? WHERE source = ? AND job = ?",
                (now, source, job),
            )
        conn.dialect.notify(conn, "rest")
        results.append("started")
    return results


def cancel(conn: Conn, requests: Sequence[tuple[str, str]]) -> list[bool]:
    """Forget a job (a backfill): a run under way loses its lease and stops at its next page."""
    return [
        conn.execute("DELETE FROM rest_jobs WHERE source = ? AND job = ?", pair).rowcount == 1
        for pair in requests
    ]


# -- reads ----------------------------------------------------------------------------------


def fingerprints(conn: Conn, source: str, item_ids: Sequence[str]) -> dict[str, Remembered]:
    """What is remembered of the known items among these."""
    known: dict[str, Remembered] = {}
    for start in range(0, len(item_ids), 500):
        chunk = item_ids[start : start + 500]
        rows = conn.execute(
            "SELECT item_id, fingerprint, changes, page FROM rest_items WHERE source = ?"
            f" AND item_id IN {in_list(chunk)}",
            [source, *chunk],
        )
        known.update((row[0], Remembered(row[1], row[2], row[3])) for row in rows)
    return known


def item_pages(
    conn: Conn, source: str, after: str, limit: int
) -> list[tuple[str, str | None, int]]:
    """The source's remembered items (not those remembered as deleted) after `after` in id
    order, `limit` at most: (id, the page that listed it, changes). Read in chunks, so a
    pass's end holds one chunk."""
    rows = conn.execute(
        "SELECT item_id, page, changes FROM rest_items WHERE source = ? AND item_id > ?"
        " AND fingerprint <> 'deleted' ORDER BY item_id LIMIT ?",
        (source, after, limit),
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def pages(conn: Conn, source: str) -> dict[str, tuple[str | None, str | None, str | None]]:
    rows = conn.execute(
        "SELECT url, etag, last_modified, next_url FROM rest_pages WHERE source = ?", (source,)
    )
    return {url: (etag, modified, next_url) for url, etag, modified, next_url in rows}


def known_keys(conn: Conn, source: str, keys: Sequence[str]) -> set[str]:
    """Which of these dedup keys the source has seen (by any path)."""
    digests = {queries.key_digest(key): key for key in keys}
    known = queries.known_keys(conn, [(source, digest) for digest in digests])
    return {digests[digest] for _, digest in known}


JOB_COLUMNS = (
    "source",
    "job",
    "checkpoint",
    "next_run_at",
    "lease_until",
    "last_run_at",
    "last_success_at",
    "last_error",
    "failures",
    "emitted",
    "checked",
    "skipped",
)


def jobs(conn: Conn, source: str | None = None) -> list[dict[str, Any]]:
    sql = f"SELECT {', '.join(JOB_COLUMNS)} FROM rest_jobs"
    rows = conn.execute(sql + " WHERE source = ?", (source,)) if source else conn.execute(sql)
    return sorted((dict(zip(JOB_COLUMNS, row, strict=True)) for row in rows), key=_job_order)


def _job_order(row: dict[str, Any]) -> tuple[str, str]:
    return (row["source"], row["job"])


def api_calls(conn: Conn, source: str | None, since_day: str) -> list[dict[str, Any]]:
    sql = "SELECT source, day, calls, not_modified FROM api_calls WHERE day >= ?"
    params: list[Any] = [since_day]
    if source:
        sql += " AND source = ?"
        params.append(source)
    rows = conn.execute(sql + " ORDER BY source, day", params)
    return [{"source": s, "day": d, "calls": c, "not_modified": n} for s, d, c, n in rows]
