"""The overview's pollers: each source's REST jobs (poll, reconcile, backfill) and the API calls
they cost, read with the store calls behind `GET /api/v1/sources` (api/sources.py), so the
console and the API report the same."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hookyard.console.charts import Chart, per_day
from hookyard.state import AppState

CALL_DAYS = 7


@dataclass(frozen=True)
class JobRow:
    job: str  # poll | reconcile | backfill
    running: bool
    last_run_at: float | None
    last_success_at: float | None
    next_run_at: float | None  # None: not scheduled (a finished backfill)
    last_error: str | None
    failures: int  # consecutive failed runs
    emitted: int  # changes found: events emitted (reconcile: objects recovered)
    checked: int  # items examined
    skipped: int  # malformed items skipped


@dataclass(frozen=True)
class PollerRow:
    source: str
    jobs: list[JobRow]
    calls_today: int
    not_modified_today: int  # conditional requests answered 304
    calls: Chart  # per day, the last CALL_DAYS days


def _day(seconds: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


def _job(row: dict[str, Any], now: float) -> JobRow:
    return JobRow(
        job=row["job"],
        running=row["lease_until"] is not None and row["lease_until"] > now,
        last_run_at=row["last_run_at"],
        last_success_at=row["last_success_at"],
        next_run_at=row["next_run_at"],
        last_error=row["last_error"],
        failures=row["failures"],
        emitted=row["emitted"],
        checked=row["checked"],
        skipped=row["skipped"],
    )


async def poller_rows(state: AppState, now: float) -> list[PollerRow]:
    """A row for each source that has REST jobs, by name."""
    jobs = await state.store.rest_jobs()
    days = [_day(now - back * 86400) for back in range(CALL_DAYS - 1, -1, -1)]
    calls: dict[tuple[str, str], dict[str, Any]] = {
        (row["source"], row["day"]): row for row in await state.store.api_calls(None, days[0])
    }
    rows = []
    for source in sorted({row["source"] for row in jobs}):
        today = calls.get((source, days[-1]), {})
        per_day_calls = [(day, calls.get((source, day), {}).get("calls", 0)) for day in days]
        rows.append(
            PollerRow(
                source=source,
                jobs=[_job(row, now) for row in jobs if row["source"] == source],
                calls_today=today.get("calls", 0),
                not_modified_today=today.get("not_modified", 0),
                calls=per_day(per_day_calls, "API calls"),
            )
        )
    return rows
