"""The console's own reads: the overview's figures and charts for the last hour, and the
delivery statuses of a page of events. Every query is bounded by an id range (ids sort by time, see
hookyard/ids.py) or by a list of ids, so none of them grows with the size of the log."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from hookyard.ids import id_floor
from hookyard.store.db import Conn, in_list
from hookyard.store.queries import DELIVERY_COLUMNS, DELIVERY_SELECT

MINUTES = 60  # the overview covers the last hour, a bucket a minute
LATENCY_SAMPLE = 10_000  # p50/p95 come from at most this many recent attempts per destination
BUCKET = 300  # seconds: the latency chart's bucket
BUCKETS = MINUTES * 60 // BUCKET
BUCKET_SAMPLE = 1_000  # a bucket's p50/p95 come from at most this many of its latest attempts

_STATUS_SHOWN = DELIVERY_SELECT[DELIVERY_COLUMNS.index("status")]  # pending of a paused: held


@dataclass
class SourceFigures:
    per_minute: list[int] = field(default_factory=lambda: [0] * MINUTES)  # oldest first
    rejected: int = 0
    duplicates: int = 0  # repeats of the hour's events, acknowledged and not delivered

    @property
    def events(self) -> int:
        return sum(self.per_minute)


@dataclass
class AttemptFigures:
    attempts: int = 0
    succeeded: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    # (p50, p95) per 5-minute bucket, oldest first; None where nothing was attempted.
    buckets: list[tuple[float, float] | None] = field(default_factory=lambda: [None] * BUCKETS)

    @property
    def success_rate(self) -> float | None:
        return None if not self.attempts else self.succeeded / self.attempts


def source_figures(conn: Conn, now: float) -> dict[str, SourceFigures]:
    """Events per minute, rejections and duplicates of the last hour, by source."""
    start = now - MINUTES * 60
    figures: dict[str, SourceFigures] = defaultdict(SourceFigures)
    # Whole milliseconds, so that the bucket is an integer division on both backends
    # (PostgreSQL rounds a float cast to an integer where SQLite truncates).
    rows = conn.execute(
        "SELECT source, (CAST(received_at * 1000 AS BIGINT) - ?) / 60000, count(*)"
        " FROM events WHERE id >= ? GROUP BY 1, 2",
        (int(start * 1000), id_floor("evt", start)),
    )
    for source, minute, count in rows:
        if 0 <= minute < MINUTES:
            figures[source].per_minute[minute] += count
    for source, count in conn.execute(
        "SELECT source, count(*) FROM rejected WHERE id >= ? GROUP BY source",
        (id_floor("rej", start),),
    ):
        figures[source].rejected = count
    for source, hits in conn.execute(
        "SELECT source, sum(hits) FROM dedup WHERE first_seen >= ? GROUP BY source", (start,)
    ):
        figures[source].duplicates = int(hits or 0)
    return dict(figures)


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending, non-empty sequence."""
    rank = max(1, round(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def attempt_figures(
    conn: Conn, destinations: Sequence[str], now: float
) -> dict[str, AttemptFigures]:
    """Success rate (attempts answered 2xx or confirmed by a broker) and latency of the last
    hour, by destination."""
    floor = id_floor("att", now - MINUTES * 60)
    figures = {name: AttemptFigures() for name in destinations}
    for name, attempts, succeeded in conn.execute(
        "SELECT destination, count(*),"
        " sum(CASE WHEN error IS NULL THEN 1 ELSE 0 END)"  # failures always say why
        " FROM attempts WHERE id >= ? GROUP BY destination",
        (floor,),
    ):
        if name in figures:
            figures[name].attempts, figures[name].succeeded = attempts, int(succeeded or 0)
    for name, found in figures.items():
        if not found.attempts:
            continue
        durations = sorted(
            duration
            for (duration,) in conn.execute(
                "SELECT duration_ms FROM attempts WHERE destination = ? AND id >= ?"
                " ORDER BY id DESC LIMIT ?",
                (name, floor, LATENCY_SAMPLE),
            )
        )
        if durations:
            found.p50_ms = _percentile(durations, 0.5)
            found.p95_ms = _percentile(durations, 0.95)
        found.buckets = _latency_buckets(conn, name, now)
    return figures


def _latency_buckets(conn: Conn, name: str, now: float) -> list[tuple[float, float] | None]:
    """The destination's p50/p95 per bucket of the last hour. Each bucket is its own id range
    with its own sample, so a busy last few minutes cannot crowd out the rest of the hour."""
    start = now - MINUTES * 60
    # The last bucket ends a little after now: an attempt recorded meanwhile belongs in it.
    ends = [start + i * BUCKET for i in range(BUCKETS)] + [now + BUCKET]
    bounds = [id_floor("att", at) for at in ends]
    buckets: list[tuple[float, float] | None] = []
    for low, high in itertools.pairwise(bounds):
        durations = sorted(
            duration
            for (duration,) in conn.execute(
                "SELECT duration_ms FROM attempts WHERE destination = ? AND id >= ? AND id < ?"
                " ORDER BY id DESC LIMIT ?",
                (name, low, high, BUCKET_SAMPLE),
            )
        )
        buckets.append(
            (_percentile(durations, 0.5), _percentile(durations, 0.95)) if durations else None
        )
    return buckets


def failures_per_minute(conn: Conn, now: float) -> list[int]:
    """Failed attempts (an error status or no answer) per minute of the last hour, every
    destination together, oldest first."""
    start = now - MINUTES * 60
    counts = [0] * MINUTES
    for minute, count in conn.execute(
        "SELECT (CAST(started_at * 1000 AS BIGINT) - ?) / 60000, count(*)"
        " FROM attempts WHERE id >= ? AND error IS NOT NULL GROUP BY 1",
        (int(start * 1000), id_floor("att", start)),
    ):
        if 0 <= minute < MINUTES:
            counts[minute] += count
    return counts


def delivery_statuses(conn: Conn, event_ids: Sequence[str]) -> dict[str, list[str]]:
    """The statuses of each event's deliveries, as the API shows them, for one page of events."""
    statuses: dict[str, list[str]] = defaultdict(list)
    if event_ids:
        for event_id, status in conn.execute(
            f"SELECT d.event_id, {_STATUS_SHOWN} FROM deliveries d"
            f" WHERE d.event_id IN {in_list(event_ids)} ORDER BY d.id",
            list(event_ids),
        ):
            statuses[event_id].append(status)
    return dict(statuses)
