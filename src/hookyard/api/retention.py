"""/api/v1/retention: how long each source's events and payloads are kept, what the last sweep
removed, and what is stored (per source: events, the oldest one, payload bytes); and a sweep
on demand.

(No `from __future__ import annotations`: FastAPI resolves the dependency annotations of
handlers defined inside retention_routes at runtime; see rest.py.)"""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from hookyard.api.rest import API_PREFIX, Caller, _time
from hookyard.retention import sweep
from hookyard.state import AppState


class SourcePolicy(BaseModel):
    events_seconds: float | None  # None: kept forever
    payloads_seconds: float | None


class Policy(BaseModel):
    default: SourcePolicy  # for sources without their own, configured or not
    sources: dict[str, SourcePolicy]  # configured sources
    attempts_seconds: float | None
    rejected_seconds: float | None
    rejected_log_size: int  # the rejected log's bound in rows, whatever their age
    interval_seconds: float


class SourceUsage(BaseModel):
    source: str
    events: int
    oldest_event_at: datetime | None
    payload_bytes: int  # payload bytes still held (retention may have removed others)


class Usage(BaseModel):
    measured_at: datetime
    database_bytes: int
    free_bytes: int  # SQLite pages free inside the file (a reserve stays for new rows)
    sources: list[SourceUsage]


class Sweep(BaseModel):
    id: str | None
    started_at: datetime
    finished_at: datetime | None
    removed: dict[str, int]  # events, payloads, deliveries, attempts, requests, rejected;
    # partitions: PostgreSQL spans of events dropped whole (their events are in `events`)
    error: str | None


class RetentionStatus(BaseModel):
    policy: Policy
    last_sweep: Sweep | None
    usage: Usage | None  # as the last sweep measured it (reading every event takes a while)


def _sweep_out(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": record.get("id"),
        "started_at": _time(record["started_at"]),
        "finished_at": _time(record.get("finished_at")),
        "removed": record["removed"],
        "error": record.get("error"),
    }


def _usage_out(measured_at: float, usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "measured_at": _time(measured_at),
        "database_bytes": usage["database_bytes"],
        "free_bytes": usage["free_bytes"],
        "sources": [
            {"source": name, **figures, "oldest_event_at": _time(figures["oldest_event_at"])}
            for name, figures in sorted(usage["sources"].items())
        ],
    }


def retention_routes(
    state: AppState,
    reader: Callable[..., Awaitable[Caller]],
    admin: Callable[..., Awaitable[Caller]],
    audit: Callable[..., Awaitable[None]],
) -> APIRouter:
    router = APIRouter(prefix=API_PREFIX, tags=["retention"])

    def policy() -> dict[str, Any]:
        settings = state.gateway.settings
        retention = settings.retention

        def ages(events: float | None, payloads: float | None) -> dict[str, Any]:
            return {"events_seconds": events, "payloads_seconds": payloads}

        return {
            "default": ages(*retention.for_source(None)),
            "sources": {
                name: ages(*retention.for_source(source.retention))
                for name, source in settings.sources.items()
            },
            "attempts_seconds": retention.attempts,
            "rejected_seconds": retention.rejected,
            "rejected_log_size": settings.server.rejected_log_size,
            "interval_seconds": retention.interval,
        }

    @router.get("/retention", response_model=RetentionStatus)
    async def retention_status(_: Annotated[Caller, Depends(reader)]) -> dict[str, Any]:
        """The retention policy, the last sweep, and what was stored after it."""
        last = await state.store.last_sweeps(1)
        record = last[0] if last else None
        return {
            "policy": policy(),
            "last_sweep": _sweep_out(record) if record else None,
            "usage": _usage_out(record["finished_at"], record["usage"]) if record else None,
        }

    @router.post("/retention/sweep", response_model=RetentionStatus)
    async def sweep_now(who: Annotated[Caller, Depends(admin)]) -> dict[str, Any]:
        """Sweep now (waits for a sweep under way to end first), then report as GET does."""
        try:
            record = await sweep(state)
        except Exception as exc:  # chunks committed before the failure are gone: say who asked
            await audit(who, "retention.sweep", None, error=f"{type(exc).__name__}: {exc}")
            raise
        await audit(who, "retention.sweep", None, removed=record["removed"])
        return {
            "policy": policy(),
            "last_sweep": _sweep_out(record),
            "usage": _usage_out(record["finished_at"], record["usage"]),
        }

    return router
