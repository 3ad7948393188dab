"""/api/v1/sources: the configured sources, their REST jobs (poll, reconcile, backfill) with
what each last did, the API calls they cost per day, and the actions that start them. Also an
event's object as the provider's API returns it now.

(No `from __future__ import annotations`: FastAPI resolves the dependency annotations of
handlers defined inside source_routes at runtime; see rest.py.)"""

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel

from hookyard.api.rest import API_PREFIX, ApiError, Caller, ErrorBody, _time
from hookyard.deliver.egress import GuardedSession
from hookyard.gateway import Source
from hookyard.pollers.api import dig
from hookyard.pollers.client import Calls, RestClient, RestError
from hookyard.pollers.jobs import new_backfill
from hookyard.state import AppState

CALL_HISTORY_DAYS = 30
CURRENT_TIMEOUT = 30.0  # GET /events/{id}/current: an API call made while the caller waits


class JobStatus(BaseModel):
    job: Literal["poll", "reconcile", "backfill"]
    running: bool
    last_run_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    failures: int  # consecutive failed runs
    next_run_at: datetime | None
    emitted: int  # events emitted (for reconcile: objects recovered)
    checked: int  # items examined
    skipped: int  # malformed items skipped (no id, no usable update time); see the log
    progress: dict[str, Any] | None  # a backfill's window, pages, items, total and done


class ApiCalls(BaseModel):
    day: str
    calls: int
    not_modified: int  # conditional requests answered 304: work saved


class SourceInfo(BaseModel):
    name: str
    kind: Literal["webhook", "api", "poll"]
    verify: str | None  # None for api and poll sources
    destinations: list[str]
    jobs: list[JobStatus]
    api_calls_today: ApiCalls | None


class SourceDetail(SourceInfo):
    api_calls: list[ApiCalls]  # the last 30 days that had any


class BackfillRequest(BaseModel):
    since: datetime
    until: datetime | None = None


class JobStarted(BaseModel):
    source: str
    job: str
    state: Literal["started"]


def utc(value: datetime) -> float:
    """Unix seconds; a time without an offset is UTC."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _job_status(row: dict[str, Any], now: float) -> dict[str, Any]:
    progress = None
    if row["job"] == "backfill" and row["checkpoint"]:
        stored = orjson.loads(row["checkpoint"])
        progress = {key: stored.get(key) for key in ("pages", "items", "total", "done")}
        progress["since"] = _time(stored.get("since"))
        progress["until"] = _time(stored.get("until"))
    return {
        "job": row["job"],
        "running": row["lease_until"] is not None and row["lease_until"] > now,
        "last_run_at": _time(row["last_run_at"]),
        "last_success_at": _time(row["last_success_at"]),
        "last_error": row["last_error"],
        "failures": row["failures"],
        "next_run_at": _time(row["next_run_at"]),
        "emitted": row["emitted"],
        "checked": row["checked"],
        "skipped": row["skipped"],
        "progress": progress,
    }


def source_routes(
    state: AppState,
    reader: Callable[..., Awaitable[Caller]],
    admin: Callable[..., Awaitable[Caller]],
    audit: Callable[..., Awaitable[None]],
) -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)
    not_found: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}

    def named(name: str) -> Source:
        source = state.gateway.sources.get(name)
        if source is None:
            raise ApiError(404, "not_found", f"no source named {name!r}")
        return source

    def with_api(name: str) -> Source:
        source = named(name)
        if source.api is None:
            raise ApiError(409, "no_api", f"source {name!r} has no [api]: nothing to call")
        return source

    async def info(
        source: Source, jobs: list[dict[str, Any]], today: dict[str, Any]
    ) -> dict[str, Any]:
        gateway = state.gateway
        config = gateway.settings.sources[source.name]
        now = time.time()
        return {
            "name": source.name,
            "kind": config.kind,
            "verify": config.verify,
            "destinations": sorted(
                {d for r in gateway.routes[source.name] for d in r.destinations}
            ),
            "jobs": [_job_status(row, now) for row in jobs if row["source"] == source.name],
            "api_calls_today": today.get(source.name),
        }

    async def calls_today() -> dict[str, Any]:
        day = time.strftime("%Y-%m-%d", time.gmtime())
        return {row.pop("source"): row for row in await state.store.api_calls(None, day)}

    @router.get("/sources", response_model=list[SourceInfo], tags=["sources"])
    async def list_sources(_: Annotated[Caller, Depends(reader)]) -> list[dict[str, Any]]:
        """Configured sources, with their REST jobs and today's API calls."""
        jobs, today = await state.store.rest_jobs(), await calls_today()
        return [await info(s, jobs, today) for s in state.gateway.sources.values()]

    @router.get(
        "/sources/{name}", response_model=SourceDetail, tags=["sources"], responses=not_found
    )
    async def get_source(name: str, _: Annotated[Caller, Depends(reader)]) -> dict[str, Any]:
        """One source: its REST jobs and the API calls it cost per day (the last 30 days)."""
        source = named(name)
        since = time.strftime("%Y-%m-%d", time.gmtime(time.time() - CALL_HISTORY_DAYS * 86400))
        history = await state.store.api_calls(name, since)
        for row in history:
            row.pop("source")
        detail = await info(source, await state.store.rest_jobs(name), await calls_today())
        return {**detail, "api_calls": history}

    async def start(who: Caller, source: Source, job: str, checkpoint: str | None) -> None:
        outcome = await state.store.schedule_rest_job(
            source.name, job, checkpoint, fresh=checkpoint is not None
        )
        if outcome == "running":
            raise ApiError(
                409, "running", f"a {job} of {source.name!r} with another window is running"
            )
        state.rest_ready.set()
        await audit(who, f"source.{job}", source.name)

    def trigger(job: Literal["poll", "reconcile"]) -> None:
        @router.post(
            f"/sources/{{name}}/{job}",
            response_model=JobStarted,
            status_code=202,
            tags=["sources"],
            responses={**not_found, 409: {"model": ErrorBody}},
            name=f"run_{job}_now",
            summary=f"Run the source's {job} now",
        )
        async def run_now(name: str, who: Annotated[Caller, Depends(admin)]) -> dict[str, Any]:
            source = with_api(name)
            if getattr(source, job) is None:
                raise ApiError(409, "no_job", f"source {name!r} has no [{job}] job")
            await start(who, source, job, None)
            return {"source": name, "job": job, "state": "started"}

    trigger("poll")
    trigger("reconcile")

    @router.post(
        "/sources/{name}/backfill",
        response_model=JobStarted,
        status_code=202,
        tags=["sources"],
        responses={**not_found, 409: {"model": ErrorBody}},
    )
    async def backfill(
        name: str, body: BackfillRequest, who: Annotated[Caller, Depends(admin)]
    ) -> dict[str, Any]:
        """Emit the history between `since` and `until` (default: now) through the REST API,
        as events with origin `backfill`. Versions stored within the dedup window
        (`[server] dedup_window`) are skipped; older ones are emitted again. Asking again
        for the same window resumes an interrupted backfill."""
        source = with_api(name)
        since, until = utc(body.since), utc(body.until) if body.until else None
        if until is not None and until <= since:
            raise ApiError(422, "invalid_parameter", "until must be later than since")
        if since < 0 or since >= time.time():  # before 1970, a year 0 broke GET /sources
            raise ApiError(422, "invalid_parameter", "since must be between 1970 and now (UTC)")
        if until is not None and until > time.time() + 86400:  # year 10000 broke it too
            raise ApiError(
                422,
                "invalid_parameter",
                "until must not be in the future (leave it out for 'up to now')",
            )
        jobs = await state.store.rest_jobs(name)
        current = next((row for row in jobs if row["job"] == "backfill"), None)
        if current and current["checkpoint"]:
            stored = orjson.loads(current["checkpoint"])
            same = stored.get("since") == since and stored.get("until") == until
            if same and not stored.get("done"):  # resume: keep its progress
                await state.store.schedule_rest_job(name, "backfill")
                state.rest_ready.set()
                return {"source": name, "job": "backfill", "state": "started"}
        await start(who, source, "backfill", new_backfill(since, until))
        return {"source": name, "job": "backfill", "state": "started"}

    @router.get(
        "/sources/{name}/backfill", response_model=JobStatus, tags=["sources"], responses=not_found
    )
    async def backfill_status(name: str, _: Annotated[Caller, Depends(reader)]) -> dict[str, Any]:
        """The source's backfill: running or not, and its progress."""
        named(name)
        jobs = await state.store.rest_jobs(name)
        row = next((row for row in jobs if row["job"] == "backfill"), None)
        if row is None:
            raise ApiError(404, "not_found", f"source {name!r} has no backfill")
        return _job_status(row, time.time())

    @router.delete(
        "/sources/{name}/backfill", status_code=204, tags=["sources"], responses=not_found
    )
    async def cancel_backfill(name: str, who: Annotated[Caller, Depends(admin)]) -> Response:
        """Stop and forget the source's backfill (events it emitted stay)."""
        named(name)
        if not await state.store.cancel_rest_job(name, "backfill"):
            raise ApiError(404, "not_found", f"source {name!r} has no backfill")
        await audit(who, "source.backfill_cancel", name)
        return Response(status_code=204)

    @router.get(
        "/events/{event_id}/current",
        tags=["events"],
        responses={
            200: {"content": {"application/json": {}}},
            404: {"model": ErrorBody},
            409: {"model": ErrorBody},
            502: {"model": ErrorBody},
            504: {"model": ErrorBody},
        },
    )
    async def current(event_id: str, _: Annotated[Caller, Depends(admin)]) -> Response:
        """The event's object as the source's REST API returns it now ([api] object_url),
        for thin webhooks and for debugging. 404 when the API says the object is gone; 504
        when it does not answer within 30 s (a rate limit's wait is not sat out here)."""
        event = await state.store.get_event(event_id)
        if event is None:
            raise ApiError(404, "not_found", f"no event {event_id!r}")
        source = with_api(event["source"])
        assert source.api is not None
        if source.api.config.object_url is None:
            raise ApiError(409, "no_object_url", f"source {source.name!r} has no api.object_url")
        raw = await state.store.get_raw(event_id)
        webhook = event["origin"] == "webhook"
        path = source.object_paths[0] if webhook and source.object_paths else None
        try:
            document = orjson.loads(raw[0]) if raw and raw[0] else None
        except orjson.JSONDecodeError:
            document = None
        object_id = dig(document, path or source.api.config.id_field)
        if object_id is None or isinstance(object_id, dict | list):
            where = path or source.api.config.id_field
            raise ApiError(409, "no_object_id", f"the event's payload has no {where!r}")
        http = GuardedSession(lambda: state.gateway.settings.egress.allow, 60.0)
        try:
            client = RestClient(source.api, http.get, Counter())
            async with asyncio.timeout(CURRENT_TIMEOUT):
                response = await client.get(
                    source.api.object_url(str(object_id)), Calls(), gone_ok=True
                )
        except TimeoutError:
            raise ApiError(
                504,
                "api_timeout",
                f"the API did not answer within {CURRENT_TIMEOUT:g}s (or asked to wait longer)",
            ) from None
        except RestError as exc:
            raise ApiError(502, "api_failed", str(exc)) from None
        finally:
            await http.close()
        if response.status in (404, 410):
            raise ApiError(
                404,
                "object_gone",
                f"the API answers HTTP {response.status} for object {str(object_id)[:200]!r}",
            )
        if response.status == 204:  # fine for a page (an empty one), not for one object
            raise ApiError(502, "api_failed", "the API answered HTTP 204 (no content)")
        media = response.headers.get("Content-Type", "application/json")
        return Response(response.body, media_type=media)

    return router
