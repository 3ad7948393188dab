"""What every store offers the rest of Hookyard, whatever the backend: writes go through the
group-commit writer (see writer.py), reads run on a thread with that thread's own connection.
Subclasses open the connections (sqlite.py, postgres.py); the SQL is shared (queries.py)."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar

from hookyard.models import (
    Accepted,
    Claim,
    Claimed,
    EventFilter,
    Hint,
    NewEvent,
    NewRequest,
    Outcome,
    Pace,
    Rejected,
)
from hookyard.store import queries, relay, rest, retention
from hookyard.store.db import Conn
from hookyard.store.rest import JobRun, Remembered, RestCommit
from hookyard.store.retention import Chunk, Swept
from hookyard.store.writer import Writer

T = TypeVar("T")


class BaseStore(abc.ABC):
    backend: str
    writer: Writer
    # Set by the service: called (on a store thread) when another process signals "work" or
    # "state" (PostgreSQL's LISTEN/NOTIFY; a single SQLite process has nobody to hear from).
    on_notify: Callable[[str], None] | None = None
    migrated: tuple[int | None, int] | None = None  # schema version before and after opening

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def _reader(self) -> Conn:
        """This thread's read connection."""

    async def read(self, fn: Callable[[Any], T]) -> T:
        """Run a read-only query on a worker thread, off the event loop."""
        return await asyncio.to_thread(lambda: fn(self._reader()))

    # -- writes -----------------------------------------------------------------------------

    @property
    def pending_writes(self) -> int:
        return self.writer.pending

    async def ingest(self, request: NewRequest) -> list[Accepted]:
        """Commit a request's events and their deliveries durably; duplicates are reported."""
        rows = queries.ingest_rows(request)
        result: list[Accepted] = await self.writer.run(queries.ingest, rows)
        return result

    async def claim(self, paces: dict[str, Pace], total: int, lease: float) -> Claimed:
        """Lease deliveries of each destination within its pace, `total` at most."""
        result: Claimed = await self.writer.run(
            queries.claim, (time.time(), lease, paces, total), durable=False
        )
        return result

    async def store_hint(self, row: tuple[Any, ...], merge: bool, cap: int) -> str | None:
        """Keep a pending hint (its request row) within its source's cap; see store_hints."""
        answer: str | None = await self.writer.run(queries.store_hints, (row, merge, cap))
        return answer

    async def claim_hints(self, lease: float, limit: int, rates: dict[str, float]) -> list[Hint]:
        """Lease up to `limit` due hints of these sources, each within its fetch rate (per
        second, shared by every process); see fetchback.py."""
        hints: list[Hint] = await self.writer.run(
            queries.claim_hints, (time.time(), lease, limit, rates), durable=False
        )
        return hints

    async def settle_hint(
        self,
        request_id: str,
        events: list[NewEvent] | None,
        error: str | None = None,
        next_attempt_at: float | None = None,
    ) -> list[Accepted]:
        """Store a hint's fetched events (its request row exists already), or record why
        fetching failed and when to try again (None: never, it has failed)."""
        rows = None
        if events is not None:
            rows = queries.event_rows(request_id, events)
        accepted: list[Accepted] = await self.writer.run(
            queries.settle_hints, (request_id, rows, error, next_attempt_at)
        )
        return accepted

    async def take_job(self, name: str, interval: float, owner: str) -> bool:
        """True if this process is to run the scheduled job now (once per interval across
        every process sharing the database)."""
        taken: bool = await self.writer.run(queries.take_job, (name, interval, owner))
        return taken

    # -- the REST side (pollers/) -------------------------------------------------------------

    async def claim_rest_jobs(
        self, jobs: list[tuple[str, str, float | None]], lease: float
    ) -> list[JobRun]:
        """Lease the due ones of these (source, job, first run time)."""
        runs: list[JobRun] = await self.writer.run(rest.claim_jobs, (time.time(), lease, jobs))
        return runs

    async def commit_rest(self, change: RestCommit) -> list[Accepted]:
        """A page's events and state, fenced by the run's lease (raises LeaseLost)."""
        accepted: list[Accepted] = await self.writer.run(rest.commit, change)
        return accepted

    async def fail_rest_run(
        self, run: JobRun, error: str, next_run_at: float | None, calls: tuple[int, int]
    ) -> None:
        """End a failed run: its error, when to try again (None: never), the calls it made."""
        await self.writer.run(rest.fail, (run, error, next_run_at, calls))

    async def renew_rest_lease(self, run: JobRun, until: float) -> bool:
        renewed: bool = await self.writer.run(rest.renew, (run.source, run.job, run.run_id, until))
        return renewed

    async def schedule_rest_job(
        self, source: str, job: str, checkpoint: str | None = None, *, fresh: bool = False
    ) -> str:
        outcome: str = await self.writer.run(rest.schedule, (source, job, checkpoint, fresh))
        return outcome

    async def cancel_rest_job(self, source: str, job: str) -> bool:
        cancelled: bool = await self.writer.run(rest.cancel, (source, job))
        return cancelled

    async def rest_fingerprints(self, source: str, ids: list[str]) -> dict[str, Remembered]:
        return await self.read(lambda conn: rest.fingerprints(conn, source, ids))

    async def rest_item_pages(
        self, source: str, after: str = "", limit: int = 5000
    ) -> list[tuple[str, str | None, int]]:
        return await self.read(lambda conn: rest.item_pages(conn, source, after, limit))

    async def rest_pages(self, source: str) -> dict[str, tuple[str | None, str | None, str | None]]:
        return await self.read(lambda conn: rest.pages(conn, source))

    async def known_keys(self, source: str, keys: list[str]) -> set[str]:
        return await self.read(lambda conn: rest.known_keys(conn, source, keys))

    async def rest_jobs(self, source: str | None = None) -> list[dict[str, Any]]:
        return await self.read(lambda conn: rest.jobs(conn, source))

    async def api_calls(self, source: str | None, since_day: str) -> list[dict[str, Any]]:
        return await self.read(lambda conn: rest.api_calls(conn, source, since_day))

    async def release(self, claims: list[Claim]) -> None:
        await self.writer.run(queries.release, claims)

    async def finish(self, outcomes: list[Outcome]) -> list[float | None]:
        """Record attempts; returns, for each, since when its destination has been failing."""
        failing: list[float | None] = await self.writer.run(queries.finish_groups, outcomes)
        return failing

    async def finish_held(self, outcomes: list[Outcome]) -> list[tuple[bool, float | None]]:
        """`finish` for the outcomes whose lease is still held when written (relay results
        may come twice): per outcome, whether it was recorded, and as `finish` returns."""
        answers: list[tuple[bool, float | None]] = await self.writer.run(
            relay.finish_held, outcomes
        )
        return answers

    async def set_destination_state(self, name: str, state: str, reason: str | None) -> bool:
        changed: bool = await self.writer.run(queries.set_destination_state, (name, state, reason))
        return changed

    async def retry_dead(self, destination: str) -> int:
        count: int = await self.writer.run(queries.retry_dead, destination)
        return count

    async def replay(
        self,
        event_ids: list[str],
        destination: str | None,
        configured: Mapping[str, str | None],
        status: str | None = None,
    ) -> int:
        """New deliveries of these events (to configured destinations, given with their
        ordering settings; with `status`, only where a delivery has it); returns how many."""
        return (await self.replay_counts(event_ids, destination, configured, status))[1]

    async def replay_counts(
        self,
        event_ids: list[str],
        destination: str | None,
        configured: Mapping[str, str | None],
        status: str | None = None,
        redirect: bool = False,
    ) -> tuple[int, int]:
        """`replay`, returning how many events got new deliveries, and how many deliveries.
        `redirect`: each event goes to `destination` instead (with a status, that only
        narrows where to replay what has it)."""
        counts: tuple[int, int] = await self.writer.run(
            queries.replay, (event_ids, destination, dict(configured), status, redirect)
        )
        return counts

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

    # -- retention (retention.py) -----------------------------------------------------------

    async def strip_payloads(self, chunk: Chunk, held: bool) -> Swept:
        swept: Swept = await self.writer.run(retention.strip_payloads, (chunk, held))
        return swept

    async def remove_events(self, chunk: Chunk) -> Swept:
        swept: Swept = await self.writer.run(retention.remove_events, chunk)
        return swept

    async def remove_failed_hints(
        self, after: str, cutoffs: dict[str, str], default: str, limit: int
    ) -> Swept:
        swept: Swept = await self.writer.run(
            retention.remove_failed_hints, (after, cutoffs, default, limit)
        )
        return swept

    async def remove_attempts(self, after: str, before: str, limit: int) -> Swept:
        swept: Swept = await self.writer.run(retention.remove_attempts, (after, before, limit))
        return swept

    async def remove_rejected(self, before: str, limit: int) -> int:
        count: int = await self.writer.run(retention.remove_rejected, (before, limit))
        return count

    async def reclaim(self, pages: int) -> int:
        """Free pages left after giving back up to `pages` (SQLite; 0 on PostgreSQL)."""
        left: int = await self.writer.run(retention.reclaim, pages)
        return left

    async def record_sweep(self, record: dict[str, Any]) -> str:
        sweep_id: str = await self.writer.run(retention.record_sweep, record)
        return sweep_id

    async def payload_mark(self, source: str) -> str:
        return await self.read(lambda conn: retention.payload_mark(conn, source))

    @contextlib.asynccontextmanager
    async def exclusively(self, name: str) -> AsyncIterator[None]:
        """One process at a time across the database (PostgreSQL); a SQLite file has one."""
        yield

    async def stored_sources(self) -> list[str]:
        return await self.read(retention.stored_sources)

    async def retention_usage(self) -> dict[str, Any]:
        return await self.read(retention.usage)

    async def last_sweeps(self, limit: int = 1) -> list[dict[str, Any]]:
        return await self.read(lambda conn: retention.last_sweeps(conn, limit))

    async def database_size(self) -> dict[str, int]:
        return await self.read(retention.database_size)

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

    def retire_configured_admin(self) -> None:
        self.writer.call(queries.retire_configured_admin)

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


__all__ = ["BaseStore"]
