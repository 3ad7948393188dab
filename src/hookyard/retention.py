"""Retention: the event log stays bounded. A sweep removes, by age, the events of each source and
then the payloads it keeps for less time (its own `[sources.NAME.retention]`, else
`[retention]`), the delivery history (attempts) and the rejected-request log, then gives the
space back (SQLite's free pages to the file system; PostgreSQL's dead rows to vacuum) and
measures what is left.

Age counts from when Hookyard stored the row, read from its time-sortable id. On PostgreSQL,
whole spans of events are dropped with their partition where every event in them is past its
age (store/partitions.py), so an event there stays until all of its span is; the rest goes row
by row. Events still waiting for delivery stay, whatever their age. Every write is one chunk of
at most BATCH rows (store/retention.py), and after each the sweep rests as long as the chunk
took: ingest never queues behind more than one chunk, and a sweep takes at most about half the
writer's time. Processes sharing a database take turns: each sweep runs once per interval
across all of them (the store's job table), one at a time (an advisory lock on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from hookyard.config import RetentionConfig
from hookyard.ids import id_floor, node_name
from hookyard.state import AppState
from hookyard.store.partitions import Partition
from hookyard.store.postgres import PostgresStore
from hookyard.store.retention import Chunk, Swept

T = TypeVar("T")
log = logging.getLogger("hookyard.retention")
BATCH = 1000
RECLAIM_PAGES = 1024  # 4 MiB of free pages per write (about 25 ms)
# PostgreSQL: the tables where each kind of removal leaves dead rows (dropped partitions leave
# none; vacuum skips the pages unchanged since it last passed).
VACUUMED = {
    "events": ("events",),
    "partitions": (),
    "payloads": ("events", "requests"),
    "deliveries": ("deliveries",),
    "attempts": ("attempts",),
    "requests": ("requests",),
    "rejected": ("rejected",),
}


async def sweep(state: AppState) -> dict[str, Any]:
    """One sweep, now; returns its record (also stored, for the API and the CLI)."""
    async with state.sweep_lock, state.store.exclusively("retention"):
        started = time.time()
        removed: Counter[str] = Counter()
        record: dict[str, Any] = {"started_at": started, "removed": removed, "usage": None}
        try:
            await _sweep(state, started, removed)
            record["usage"] = await state.store.retention_usage()
        except BaseException as exc:  # cancelled (shutdown) too: the record says it stopped
            record["error"] = f"{type(exc).__name__}: {exc}".rstrip(": ")
            raise
        finally:
            record["finished_at"] = time.time()
            record["removed"] = dict(removed)
            state.retention_removed.update(removed)
            try:
                record["id"] = await state.store.record_sweep(record)
            except Exception:
                log.exception("could not record the retention sweep")
        return record


async def _sweep(state: AppState, now: float, removed: Counter[str]) -> None:
    settings = state.gateway.settings
    store = state.store
    configured = settings.sources

    def ages(source: str) -> tuple[float | None, float | None]:
        own = configured[source].retention if source in configured else None
        return settings.retention.for_source(own)

    dropped = 0  # events that went with their partition: no dead rows to vacuum
    spans: list[Partition] = []  # PostgreSQL's partitions left after the drops
    if isinstance(store, PostgresStore):
        dropped = await _drop_partitions(store, settings.retention, now, ages, removed)
        spans = await store.partitions()
    hint_cutoffs = {}  # by source: failed hints (requests without events) older than this go
    for source in sorted(set(configured) | set(await store.stored_sources())):
        events_age, payloads_age = ages(source)
        events_kept = ""  # events before this id went
        if events_age is not None:
            events_kept = _whole_spans(id_floor("evt", now - events_age), spans)
            await _remove_events(state, source, events_kept, removed)
            hint_cutoffs[source] = id_floor("req", now - events_age)
        else:
            hint_cutoffs[source] = ""  # kept forever
        payloads_kept = "" if payloads_age is None else id_floor("evt", now - payloads_age)
        if payloads_kept > events_kept:  # payloads of events kept (waiting for their span)
            await _strip_payloads(state, source, payloads_kept, removed)
    default_age = settings.retention.for_source(None)[0]
    default = "" if default_age is None else id_floor("req", now - default_age)
    await _walk(
        lambda after: store.remove_failed_hints(after, hint_cutoffs, default, BATCH), "", removed
    )
    if settings.retention.attempts is not None:
        before = id_floor("att", now - settings.retention.attempts)
        await _walk(lambda after: store.remove_attempts(after, before, BATCH), "att_", removed)
    if settings.retention.rejected is not None:
        before = id_floor("rej", now - settings.retention.rejected)
        while (count := await _paced(store.remove_rejected(before, BATCH))) > 0:
            removed["rejected"] += count
    if isinstance(store, PostgresStore):
        # Removed rows' space is reused once vacuum has passed; autovacuum may be off, or wait
        # for a fifth of a table to be dead: vacuum what this sweep removed rows from, now.
        deleted = removed.copy()
        deleted["events"] -= dropped
        touched = {table for kind, count in deleted.items() if count for table in VACUUMED[kind]}
        if touched:
            await store.vacuum(sorted(touched))
    elif sum(removed.values()):
        left = await _paced(store.reclaim(RECLAIM_PAGES))
        while left > 0:  # until every page beyond the reserve is back, or none moves
            still = await _paced(store.reclaim(RECLAIM_PAGES))
            if still >= left:
                break
            left = still


async def _paced(write: Awaitable[T]) -> T:
    """Run one chunk's write, then rest as long as it took (see the module's docstring)."""
    started = time.monotonic()
    result = await write
    await asyncio.sleep(time.monotonic() - started)
    return result


async def _walk(
    write: Callable[[str], Awaitable[Swept]], after: str, removed: Counter[str]
) -> None:
    """Chunk after chunk, each starting after the last id the one before examined."""
    while True:
        swept = await _paced(write(after))
        removed.update(swept.removed)
        if swept.last is None or swept.examined < BATCH:
            return
        after = swept.last


async def _strip_payloads(state: AppState, source: str, before: str, removed: Counter[str]) -> None:
    held = False  # a waiting event was met: the source's mark stays before it

    async def write(after: str) -> Swept:
        nonlocal held
        swept = await state.store.strip_payloads(Chunk(source, after, before, BATCH), held)
        held = held or swept.waiting
        return swept

    await _walk(write, await state.store.payload_mark(source), removed)


def _whole_spans(cutoff: str, spans: list[Partition]) -> str:
    """Where removing events row by row stops: at the cutoff, or at the start of the partition
    the cutoff falls in. Its events wait until all of it is past their age, to go with it
    (so on PostgreSQL an event stays up to one partition_span longer than its age)."""
    for span in spans:
        if span.low <= cutoff < span.high:
            return span.low
    return cutoff


async def _drop_partitions(
    store: PostgresStore,
    policy: RetentionConfig,
    now: float,
    ages: Callable[[str], tuple[float | None, float | None]],
    removed: Counter[str],
) -> int:
    """PostgreSQL: add the partitions of the spans ahead, and drop whole each past span whose
    events are all past their source's age and none waits (see store/partitions.py). Its
    events' deliveries, attempts and requests go first, chunk by chunk like any removal.
    Returns the events dropped."""
    await store.create_partitions(now, policy.partition_span, policy.interval)

    def expired(part: Partition, source: str) -> bool:
        """Whether all of `part` is past `source`'s age."""
        age = ages(source)[0]
        return age is not None and part.high <= id_floor("evt", now - age)

    dropped = 0
    for part in await store.partitions():
        if part.end > now:
            break
        if not all(expired(part, source) for source in await store.partition_sources(part)):
            continue
        if await store.partition_waits(part):
            continue
        events = 0

        async def release(after: str, part: Partition = part) -> Swept:
            nonlocal events
            swept = await store.release_span(part, after, BATCH)
            events += swept.examined
            return swept

        await _walk(release, "", removed)
        if await store.drop_partition(part, functools.partial(expired, part)):
            dropped += events
            removed["partitions"] += 1
    removed["events"] += dropped
    return dropped


async def _remove_events(state: AppState, source: str, before: str, removed: Counter[str]) -> None:
    await _walk(
        lambda after: state.store.remove_events(Chunk(source, after, before, BATCH)), "", removed
    )


async def run_retention(state: AppState) -> None:
    """Sweep once per `retention.interval` across the processes sharing the database."""
    while True:
        interval = state.gateway.settings.retention.interval  # follows a reload
        try:
            if await state.store.take_job("retention", interval, node_name()):
                record = await sweep(state)
                if any(record["removed"].values()):
                    log.info(
                        "retention removed %s",
                        ", ".join(f"{n} {k}" for k, n in sorted(record["removed"].items()) if n),
                    )
        except Exception:
            log.exception("retention sweep failed; trying again next interval")
        # Look often: when the process that swept last is gone, another takes over.
        await asyncio.sleep(min(interval / 10, 60.0))
