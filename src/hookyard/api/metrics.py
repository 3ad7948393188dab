"""GET /metrics in the Prometheus text format, from counters kept in memory and a few queries.

Counters restart at zero with the process, as Prometheus expects; queue figures are read from
the database at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from hookyard import fetchback
from hookyard.state import AppState
from hookyard.store import queries

Sample = tuple[dict[str, str], float]


def _family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")
    return lines


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def render(state: AppState) -> str:
    writer = state.store.writer
    queue = await state.store.queue_figures()
    hints = await state.store.read(queries.pending_hints)
    now = time.time()
    lines = [
        *_family(
            "hookyard_ingest_total",
            "counter",
            "Requests answered by ingest, by source and outcome.",
            [({"source": s, "outcome": o}, n) for (s, o), n in sorted(state.counts.items())],
        ),
        *_family(
            "hookyard_rejected_total",
            "counter",
            "Requests rejected by ingest, by source and reason.",
            [
                ({"source": s, "reason": r}, n)
                for (s, r), n in sorted(state.rejected.counts.items())
            ],
        ),
        *_family(
            "hookyard_rejected_samples_dropped_total",
            "counter",
            "Rejected-request samples not kept for the rejected log: its buffer was full (the "
            "database was too slow to take them); the rejections are still counted above.",
            [({}, state.rejected.dropped)],
        ),
        *_family("hookyard_commits_total", "counter", "Group commits.", [({}, writer.commits)]),
        *_family(
            "hookyard_committed_operations_total",
            "counter",
            "Writes committed; divided by commits, the mean group size.",
            [({}, writer.committed_ops)],
        ),
        *_family(
            "hookyard_commit_seconds_total",
            "counter",
            "Time spent in write transactions; divided by commits, the mean commit latency.",
            [({}, writer.commit_seconds)],
        ),
        *_family(
            "hookyard_pending_writes",
            "gauge",
            "Writes queued for the writer (ingest answers 503 at server.max_pending).",
            [({}, writer.pending)],
        ),
        *_family(
            "hookyard_deliveries",
            "gauge",
            "Unfinished deliveries, by destination and status.",
            [({"destination": d, "status": s}, n) for (d, s), (n, _) in sorted(queue.items())],
        ),
        *_family(
            "hookyard_oldest_due_delivery_seconds",
            "gauge",
            "Age of the oldest delivery that is due and not yet attempted, by destination.",
            [({"destination": d}, max(0.0, now - due)) for d, due in _oldest_due(queue, now)],
        ),
        *_family(
            "hookyard_attempts_total",
            "counter",
            "Delivery attempts, by destination and status class (2xx ... 5xx, confirmed by a "
            "broker, error).",
            [({"destination": d, "class": c}, n) for (d, c), n in sorted(state.attempts.items())],
        ),
        *_family(
            "hookyard_rest_calls_total",
            "counter",
            "Calls to sources' REST APIs, by result (ok, not_modified, rate_limited, error).",
            [({"source": s, "result": r}, n) for (s, r), n in sorted(state.rest_calls.items())],
        ),
        *_family(
            "hookyard_rest_events_total",
            "counter",
            "Events emitted from REST APIs, by source and origin (poll, reconcile, backfill).",
            [({"source": s, "origin": o}, n) for (s, o), n in sorted(state.rest_events.items())],
        ),
        *_family(
            "hookyard_rest_items_skipped_total",
            "counter",
            "Items of REST pages skipped as malformed (no usable id, no update time), by source.",
            [({"source": s}, n) for s, n in sorted(state.rest_skipped.items())],
        ),
        *_family(
            "hookyard_fetches_total",
            "counter",
            "Fetch-back hints settled, by source and outcome (ok: a new event, duplicate: the "
            "fetched object was known, retry: failed and tried again later, failed: for good).",
            [({"source": s, "outcome": o}, n) for (s, o), n in sorted(state.fetches.items())],
        ),
        *_family(
            "hookyard_pending_hints",
            "gauge",
            "Fetch-back hints waiting to be fetched, by source (including sources that no "
            f"longer fetch; past {fetchback.MAX_PENDING}, ingest refuses a source's new hints).",
            [({"source": s}, n) for s, n in sorted(hints.items())],
        ),
        *_family(
            "hookyard_retention_removed_total",
            "counter",
            "Rows retention removed (by this process's sweeps), by kind (events, payloads, "
            "deliveries, attempts, requests, rejected).",
            [({"kind": k}, n) for k, n in sorted(state.retention_removed.items())],
        ),
        *_family(
            "hookyard_destination_state",
            "gauge",
            "1 for each destination's current state (active, paused, disabled).",
            (
                ({"destination": d, "state": state.destination_states.get(d, "active")}, 1)
                for d in sorted(state.gateway.destinations)
            ),
        ),
    ]
    return "\n".join(lines) + "\n"


def _oldest_due(
    queue: dict[tuple[str, str], tuple[int, float | None]], now: float
) -> list[tuple[str, float]]:
    """Per destination, when its oldest due delivery fell due (pending or retrying alike: one
    series each)."""
    oldest: dict[str, float] = {}
    for (destination, status), (_, due) in queue.items():
        if status in ("pending", "retrying") and due is not None and due <= now:
            oldest[destination] = min(due, oldest.get(destination, due))
    return sorted(oldest.items())
