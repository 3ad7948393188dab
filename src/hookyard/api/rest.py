"""The REST API under /api/v1, with its OpenAPI document at /api/openapi.json.

(No `from __future__ import annotations` here: FastAPI must resolve the dependency
annotations, which refer to closures.)

Every route needs a bearer token: the admin token for everything, a read-only token for reads.
Errors have one shape: {"error": "<code>", "message": "..."}.
"""

import base64
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

import orjson
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from hookyard import __version__
from hookyard.api.metrics import render as render_metrics
from hookyard.config import FIELD_PATH, redact_destination_url
from hookyard.deliver.control import set_state
from hookyard.errors import StoreError
from hookyard.ids import id_time
from hookyard.ingest import idempotency_mark, published
from hookyard.models import DeliveryStatus, EventFilter, Origin
from hookyard.state import AppState
from hookyard.store.queries import EXPORT_COLUMNS
from hookyard.store.writer import bounded_wait
from hookyard.tokens import CONFIGURED_ADMIN, RESERVED_TOKEN_NAMES, hash_token, new_token

API_PREFIX = "/api/v1"
IMPORT_CLOCK_SKEW = 86400.0  # seconds an imported event may seem to come from the future

log = logging.getLogger("hookyard.api")


class ApiError(HTTPException):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, message)
        self.code = code


class ErrorBody(BaseModel):
    error: str
    message: str


class Attempt(BaseModel):
    id: str
    number: int
    started_at: datetime
    duration_ms: float
    status_code: int | None
    response_excerpt: str | None
    error: str | None
    replay: bool


class DeliveryBase(BaseModel):
    id: str
    destination: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    replay: bool
    created_at: datetime
    updated_at: datetime
    last_status_code: int | None
    last_error: str | None


class Delivery(DeliveryBase):
    """A delivery within its event, with its attempts."""

    attempt_log: list[Attempt]


class EventSummary(BaseModel):
    id: str
    source: str
    origin: str
    received_at: datetime
    provider_event_id: str | None
    event_type: str | None
    content_type: str | None
    payload_size: int


class RequestInfo(BaseModel):
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    peer: str | None


class EventDetail(EventSummary):
    payload_removed: bool  # retention removed the bytes; the record stays until `events`
    request: RequestInfo | None
    deliveries: list[Delivery]


class EventPage(BaseModel):
    data: list[EventSummary]
    next_cursor: str | None


class RejectedRequest(BaseModel):
    id: str
    source: str
    received_at: datetime
    status: int
    code: str
    reason: str
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    peer: str | None
    body_size: int


class RejectedPage(BaseModel):
    data: list[RejectedRequest]
    next_cursor: str | None


class DestinationInfo(BaseModel):
    name: str
    url: str  # "relay" for a relay destination (its clients fetch its deliveries)
    state: Literal["active", "paused", "disabled"]
    reason: str | None
    failing_since: datetime | None
    timeout: float
    retry_schedule: list[float]
    concurrency: int


class Replayed(BaseModel):
    event_id: str
    deliveries: int


class ReplayRequest(BaseModel):
    """Bulk replay: the event list's filters, a page of matching events per call. An unknown
    key is refused: dropped, a misspelt filter would replay every event."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = None
    type: str | None = None
    origin: Origin | None = None
    status: DeliveryStatus | None = None
    destination: str | None = None
    since: str | None = None
    until: str | None = None
    provider_event_id: str | None = None
    fields: dict[str, str] = {}
    to: str | None = None  # replay to this destination instead of the earlier ones
    dry_run: bool = False
    limit: int = Field(default=1000, ge=1, le=10_000)
    cursor: str | None = None  # next_cursor of the previous call


class BulkReplayed(BaseModel):
    matched: int  # events matching the filters in all (counted on the first call only)
    replayed: int  # events of this call's page that got new deliveries
    skipped: int  # events of the page with nothing to send (payload removed, nothing in status)
    deliveries: int
    next_cursor: str | None


class DeliveryRow(DeliveryBase):
    """A delivery in the deliveries list."""

    event_id: str


class AttemptRow(Attempt):
    event_id: str
    delivery_id: str
    destination: str


class AttemptPage(BaseModel):
    data: list[AttemptRow]
    next_cursor: str | None


class DeliveryPage(BaseModel):
    data: list[DeliveryRow]
    next_cursor: str | None


class TokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scope: str = Field(description="admin, read, publish:SOURCE or relay:DESTINATION")


class TokenInfo(BaseModel):
    id: str
    name: str
    scope: str
    created_at: datetime
    revoked_at: datetime | None


class NewToken(TokenInfo):
    token: str = Field(description="shown once; only its hash is stored")


class AuditEntry(BaseModel):
    id: str
    at: datetime
    token_id: str | None
    token_name: str | None
    action: str
    target: str | None
    detail: dict[str, Any] | None


class AuditPage(BaseModel):
    data: list[AuditEntry]
    next_cursor: str | None


class Published(BaseModel):
    id: str
    duplicate: bool


class StateChange(BaseModel):
    destination: str
    state: Literal["active", "paused", "disabled"]
    changed: bool


class Retried(BaseModel):
    destination: str
    retried: int


@dataclass(frozen=True, slots=True)
class Caller:
    id: str
    name: str
    scope: str  # admin | read | publish:SOURCE | relay:DESTINATION


def _page(rows: list[dict[str, Any]], limit: int, *time_keys: str) -> dict[str, Any]:
    """A page from `limit + 1` rows: the extra row only says whether another page follows."""
    shown = rows[:limit]
    return {
        "data": [_times(row, *time_keys) for row in shown],
        "next_cursor": shown[-1]["id"] if len(rows) > limit else None,
    }


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _times(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {**row, **{k: _time(row[k]) for k in keys if k in row}}


def parse_time(value: str | None, name: str) -> float | None:
    """ISO 8601 (a missing offset means UTC) or unix seconds. Eight digits are a date in ISO
    8601's basic form (20260131), not a time in 1970."""
    if value is None:
        return None
    problem = ApiError(
        422, "invalid_parameter", f"{name}: expected ISO 8601 or unix seconds, got {value!r}"
    )
    try:
        if len(value) == 8 and value.isdigit():
            raise ValueError("a date")
        seconds = float(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise problem from None
        seconds = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(seconds) or seconds < 0:
        raise problem
    return min(seconds, MAX_TIME)


# Ids hold 47 bits of milliseconds (about the year 6429): a later time (`until=9999-12-31`)
# means "no end".
MAX_TIME = (2**47 - 1) / 1000
ID_CHARACTERS = "[0-9A-HJKMNP-TV-Z]{26}"


def check_cursor(cursor: str | None, prefix: str) -> str | None:
    """A cursor is the last id of the page before. Anything else gave the first page again (or
    an empty one), and a script paging on it looped for ever."""
    if cursor is not None and not re.fullmatch(f"{prefix}_{ID_CHARACTERS}", cursor):
        raise ApiError(
            422,
            "invalid_parameter",
            f"cursor: expected the next_cursor of this list's previous page ({prefix}_...), "
            f"got {cursor!r}",
        )
    return cursor


def field_filters(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """`field.<dotted.path>=value` filters, with paths checked (they become JSON paths)."""
    checked = []
    for path, value in pairs:
        if not FIELD_PATH.match(path):
            raise ApiError(
                422,
                "invalid_parameter",
                f"field.{path}: expected a dotted path of names or indexes, like data.items.0.id",
            )
        checked.append((path, value))
    return tuple(checked)


class Imported(BaseModel):
    imported: int
    skipped: int  # already present


def export_line(row: tuple[Any, ...]) -> bytes:
    record = dict(zip(EXPORT_COLUMNS, row, strict=True))
    payload = record.pop("payload")
    record["payload_base64"] = None if payload is None else base64.b64encode(payload).decode()
    return orjson.dumps(record) + b"\n"


class ExportedEvent(BaseModel):
    """One line of an export, checked before it is stored."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(pattern=r"^evt_[0-9A-HJKMNP-TV-Z]{26}$")]
    source: Annotated[str, Field(min_length=1, max_length=200)]
    origin: Origin
    received_at: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    provider_event_id: str | None
    event_type: str | None
    dedup_key: str | None
    content_type: str | None
    payload_base64: str | None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # Ids sort by time, and lists, time filters and retention read the time from the id:
        # an id from the future would top every list and never expire.
        latest = time.time() + IMPORT_CLOCK_SKEW
        if id_time(self.id) > latest:
            raise ValueError("its id was made in the future")
        if self.received_at > latest:
            raise ValueError("received_at is in the future")
        texts = (self.source, self.provider_event_id, self.event_type, self.dedup_key)
        if any(text is not None and "\x00" in text for text in (*texts, self.content_type)):
            raise ValueError("a text field holds a NUL character")  # PostgreSQL refuses it
        return self


class BadImportLine(Exception):
    def __init__(self, number: int, problem: str) -> None:
        super().__init__(f"line {number}: not an exported event ({problem})")


def import_row(line: bytes, number: int) -> tuple[Any, ...]:
    try:
        record = ExportedEvent.model_validate_json(line)
        payload = record.payload_base64
        body = None if payload is None else base64.b64decode(payload, validate=True)
    except (ValidationError, ValueError) as exc:
        problem = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise BadImportLine(number, problem) from None
    values = record.model_dump()
    return (*(values[column] for column in EXPORT_COLUMNS[:-1]), body)


async def bounded_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it grows past `limit` (never read whole)."""
    declared = request.headers.get("content-length", "")
    too_large = ApiError(413, "body_too_large", f"the body exceeds {limit} bytes")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def event_filter(
    request: Request,
    source: str | None = None,
    type: Annotated[str | None, Query(description="event type glob, e.g. invoice.*")] = None,
    origin: Origin | None = None,
    status: DeliveryStatus | None = None,
    destination: str | None = None,
    since: Annotated[str | None, Query(description="ISO 8601 or unix seconds")] = None,
    until: Annotated[str | None, Query(description="ISO 8601 or unix seconds")] = None,
    provider_event_id: str | None = None,
) -> EventFilter:
    fields = field_filters(
        (key.removeprefix("field."), value)
        for key, value in request.query_params.multi_items()
        if key.startswith("field.")
    )
    return EventFilter(
        source=source,
        type=type,
        origin=origin,
        status=status,
        destination=destination,
        since=parse_time(since, "since"),
        until=parse_time(until, "until"),
        provider_event_id=provider_event_id,
        fields=fields,
    )


def build_api(state: AppState) -> FastAPI:
    api = FastAPI(
        title="Hookyard",
        version=__version__,
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
        responses={
            400: {"model": ErrorBody},
            401: {"model": ErrorBody},
            403: {"model": ErrorBody},
            422: {"model": ErrorBody},
        },
    )

    async def caller(request: Request) -> Caller:
        """The token's owner; looked up on every request, so a revoked token stops at once."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>")
        found = await state.store.find_token(hash_token(token.strip()))
        if found is None:
            raise ApiError(401, "unauthorized", "unknown or revoked token")
        return Caller(*found)

    async def reader(who: Annotated[Caller, Depends(caller)]) -> Caller:
        if who.scope not in ("admin", "read"):
            raise ApiError(403, "forbidden", f"a {who.scope} token cannot read")
        return who

    async def admin(who: Annotated[Caller, Depends(caller)]) -> Caller:
        if who.scope != "admin":
            raise ApiError(403, "forbidden", f"this needs the admin token, not a {who.scope} token")
        return who

    async def audit(who: Caller, action: str, target: str | None, **detail: Any) -> None:
        """Record an administrative action: who (token), what, when."""
        await state.store.record_audit(
            (
                time.time(),
                who.id,
                who.name,
                action,
                target,
                orjson.dumps(detail).decode() if detail else None,
            )
        )

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or {
            400: "bad_request",
            404: "not_found",
            405: "method_not_allowed",
        }.get(exc.status_code, "error")
        return JSONResponse({"error": code, "message": str(exc.detail)}, exc.status_code)

    @api.exception_handler(StoreError)
    async def _unavailable(_: Request, exc: StoreError) -> JSONResponse:
        # The database is away (a PostgreSQL restart): a retryable answer, not a 500.
        log.warning("API request failed: %s", exc)
        return JSONResponse(
            {"error": "unavailable", "message": "the database is unavailable; retry later"},
            503,
            headers={"retry-after": "1"},
        )

    @api.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"error": "invalid_parameter", "message": problems}, 422)

    @api.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        if state.store.pending_writes >= state.gateway.settings.server.max_pending:
            return JSONResponse({"status": "overloaded"}, 503)
        if not state.store.writer.available:
            return JSONResponse({"status": "database unavailable"}, 503)
        return JSONResponse({"status": "ready"})

    @api.get("/metrics", include_in_schema=False)
    async def metrics(_: Annotated[Caller, Depends(reader)]) -> Response:
        """Prometheus metrics; the admin or a read-only token."""
        text = await render_metrics(state)
        return Response(text, media_type="text/plain; version=0.0.4")

    @api.get(f"{API_PREFIX}/events", response_model=EventPage, tags=["events"])
    async def list_events(
        _: Annotated[Caller, Depends(reader)],
        filters: Annotated[EventFilter, Depends(event_filter)],
        order: Literal["asc", "desc"] = "desc",
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Events, newest first by default. Pass `next_cursor` back as `cursor` for the next
        page; pages stay correct while new events arrive. Besides the listed filters,
        `field.<dotted.path>=value` matches a JSON payload field (repeatable)."""
        rows = await state.store.list_events(
            filters, cursor=check_cursor(cursor, "evt"), limit=limit + 1, order=order
        )
        return _page(rows, limit, "received_at")

    @api.get(
        f"{API_PREFIX}/events/export",
        tags=["events"],
        responses={200: {"content": {"application/x-ndjson": {}}}},
    )
    async def export(
        who: Annotated[Caller, Depends(admin)],
        filters: Annotated[EventFilter, Depends(event_filter)],
    ) -> StreamingResponse:
        """Every matching event, oldest first, as NDJSON (one JSON object a line), streamed in
        constant memory. Payloads travel base64-encoded, so any bytes survive; `events/import`
        on another instance loads the file."""

        # What is there now: under steady ingest, an export without an end never finished.
        until = filters.until if filters.until is not None else time.time()
        bounded = replace(filters, until=until)

        async def lines() -> AsyncIterator[bytes]:
            cursor = None
            while True:
                rows = await state.store.export_events(bounded, cursor=cursor, limit=500)
                if not rows:
                    return
                yield b"".join(export_line(row) for row in rows)
                cursor = rows[-1][0]

        await audit(who, "events.export", None, filters=asdict(filters))
        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @api.post(
        f"{API_PREFIX}/events/import",
        response_model=Imported,
        tags=["events"],
        responses={422: {"model": ErrorBody}},
        openapi_extra={
            "requestBody": {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}}
        },
    )
    async def import_(request: Request, who: Annotated[Caller, Depends(admin)]) -> dict[str, Any]:
        """Load an NDJSON export. Events already here (same id) are skipped; imported events
        keep their ids and get no deliveries (replay them with `to` a destination)."""
        imported = skipped = number = 0
        batch: list[tuple[Any, ...]] = []
        buffer = b""

        async def flush() -> None:
            nonlocal imported, skipped, batch
            if batch:
                new = await state.store.import_events(batch)
                imported += new
                skipped += len(batch) - new
                batch = []

        try:
            async for chunk in request.stream():
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    number += 1
                    if line.strip():
                        batch.append(import_row(line, number))
                if len(batch) >= 500:
                    await flush()
            if buffer.strip():
                batch.append(import_row(buffer, number + 1))
        except BadImportLine as exc:
            await flush()  # the good lines before the bad one are kept, as the message says
            await audit(
                who, "events.import", None, imported=imported, skipped=skipped, error=str(exc)
            )
            raise ApiError(
                422, "invalid_import", f"{exc}; the {imported} events before it were imported"
            ) from None
        await flush()
        await audit(who, "events.import", None, imported=imported, skipped=skipped)
        return {"imported": imported, "skipped": skipped}

    @api.get(
        f"{API_PREFIX}/events/{{event_id}}",
        response_model=EventDetail,
        tags=["events"],
        responses={404: {"model": ErrorBody}},
    )
    async def get_event(event_id: str, _: Annotated[Caller, Depends(reader)]) -> dict[str, Any]:
        """One event with the request that carried it (credentials redacted), its deliveries
        and their attempts."""
        event = await state.store.get_event(event_id)
        if event is None:
            raise ApiError(404, "not_found", f"no event {event_id!r}")
        event = _times(event, "received_at")
        event["deliveries"] = [
            {
                **_times(d, "next_attempt_at", "created_at", "updated_at"),
                "attempt_log": [_times(a, "started_at") for a in d["attempt_log"]],
            }
            for d in event["deliveries"]
        ]
        return event

    @api.get(
        f"{API_PREFIX}/events/{{event_id}}/raw",
        tags=["events"],
        responses={
            200: {"content": {"application/octet-stream": {}}},
            404: {"model": ErrorBody},
            410: {"model": ErrorBody},
        },
    )
    async def get_raw(event_id: str, _: Annotated[Caller, Depends(admin)]) -> Response:
        """The payload exactly as received, with its original content type. Admin only: a body
        can carry credentials that cannot be cut out without breaking its bytes."""
        found = await state.store.get_raw(event_id)
        if found is None:
            raise ApiError(404, "not_found", f"no event {event_id!r}")
        payload, content_type = found
        if payload is None:
            raise ApiError(410, "payload_removed", "retention removed this event's payload")
        return Response(payload, media_type=content_type or "application/octet-stream")

    def known_destination(name: str | None) -> str | None:
        if name is not None and name not in state.gateway.destinations:
            raise ApiError(422, "invalid_parameter", f"no destination named {name!r}")
        return name

    @api.post(
        f"{API_PREFIX}/events/replay",
        response_model=BulkReplayed,
        tags=["events"],
        responses={422: {"model": ErrorBody}},
    )
    async def replay_matching(
        body: ReplayRequest, who: Annotated[Caller, Depends(admin)]
    ) -> dict[str, Any]:
        """Replay every event matching the filters, a page (`limit`) per call, oldest first:
        call again with `next_cursor` until it is null. `dry_run` only counts."""
        filters = EventFilter(
            source=body.source,
            type=body.type,
            origin=body.origin,
            status=body.status,
            destination=body.destination,
            since=parse_time(body.since, "since"),
            until=parse_time(body.until, "until"),
            provider_event_id=body.provider_event_id,
            fields=field_filters(body.fields.items()),
        )
        # Filtering on a destination replays to it alone, not to every earlier destination.
        to = known_destination(body.to or body.destination)
        if body.status not in (None, "dead", "succeeded"):
            # Still on its way: a replay would be a second copy of it (and every further run
            # another, each copy being in that status too).
            raise ApiError(
                422,
                "invalid_parameter",
                f"status: a replay takes dead or succeeded deliveries; {body.status} ones are "
                "still on their way (POST /api/v1/deliveries/{id}/retry sends a retrying one now)",
            )
        cursor = check_cursor(body.cursor, "evt")
        matched = await state.store.count_events(filters) if cursor is None else 0
        if body.dry_run:
            return {
                "matched": matched,
                "replayed": 0,
                "skipped": 0,
                "deliveries": 0,
                "next_cursor": None,
            }
        rows = await state.store.list_events(filters, cursor=cursor, limit=body.limit, order="asc")
        ids = [row["id"] for row in rows]
        configured = {name: d.ordering for name, d in state.gateway.destinations.items()}
        # With a status, only the deliveries in it go again (not the ones that succeeded).
        replayed, created = (
            await state.store.replay_counts(
                ids, to, configured, body.status, redirect=body.to is not None
            )
            if ids
            else (0, 0)
        )
        if created:
            state.work_ready.set()
        await audit(
            who,
            "events.replay",
            None,
            events=len(ids),
            deliveries=created,
            filters=body.model_dump(exclude={"dry_run", "cursor", "limit"}),
        )
        return {
            "matched": matched,
            "replayed": replayed,
            "skipped": len(ids) - replayed,
            "deliveries": created,
            "next_cursor": ids[-1] if len(ids) == body.limit else None,
        }

    @api.post(
        f"{API_PREFIX}/events/{{event_id}}/replay",
        response_model=Replayed,
        tags=["events"],
        responses={404: {"model": ErrorBody}, 410: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    )
    async def replay_event(
        event_id: str,
        who: Annotated[Caller, Depends(admin)],
        destination: Annotated[
            str | None, Query(description="only this destination (default: the earlier ones)")
        ] = None,
    ) -> dict[str, Any]:
        """Deliver the event again: new deliveries with the same webhook-id, marked replay."""
        found = await state.store.get_raw(event_id)
        if found is None:
            raise ApiError(404, "not_found", f"no event {event_id!r}")
        if found[0] is None:
            raise ApiError(410, "payload_removed", "retention removed this event's payload")
        configured = {name: d.ordering for name, d in state.gateway.destinations.items()}
        created = await state.store.replay([event_id], known_destination(destination), configured)
        if created:
            state.work_ready.set()
        await audit(who, "event.replay", event_id, destination=destination, deliveries=created)
        return {"event_id": event_id, "deliveries": created}

    @api.get(f"{API_PREFIX}/deliveries", response_model=DeliveryPage, tags=["deliveries"])
    async def list_deliveries(
        _: Annotated[Caller, Depends(reader)],
        status: DeliveryStatus | None = None,
        destination: str | None = None,
        event_id: str | None = None,
        since: Annotated[str | None, Query(description="ISO 8601 or unix seconds")] = None,
        until: Annotated[str | None, Query(description="ISO 8601 or unix seconds")] = None,
        order: Literal["asc", "desc"] = "desc",
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Deliveries, newest first by default, with the event list's paging."""
        rows = await state.store.list_deliveries(
            status=status,
            destination=destination,
            event_id=event_id,
            since=parse_time(since, "since"),
            until=parse_time(until, "until"),
            cursor=check_cursor(cursor, "dlv"),
            limit=limit + 1,
            order=order,
        )
        return _page(rows, limit, "next_attempt_at", "created_at", "updated_at")

    @api.get(f"{API_PREFIX}/attempts", response_model=AttemptPage, tags=["deliveries"])
    async def list_attempts(
        _: Annotated[Caller, Depends(reader)],
        delivery_id: str | None = None,
        destination: str | None = None,
        failed: Annotated[bool | None, Query(description="only failed (or only 2xx)")] = None,
        since: Annotated[str | None, Query(description="ISO 8601 or unix seconds")] = None,
        until: Annotated[str | None, Query(description="ISO 8601 or unix seconds")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Delivery attempts, newest first: status, duration, response excerpt, error."""
        rows = await state.store.list_attempts(
            delivery_id=delivery_id,
            destination=destination,
            failed=failed,
            since=parse_time(since, "since"),
            until=parse_time(until, "until"),
            cursor=check_cursor(cursor, "att"),
            limit=limit + 1,
        )
        return _page(rows, limit, "started_at")

    @api.post(
        f"{API_PREFIX}/deliveries/{{delivery_id}}/retry",
        response_model=DeliveryRow,
        tags=["deliveries"],
        responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 410: {"model": ErrorBody}},
    )
    async def retry_delivery(
        delivery_id: str, who: Annotated[Caller, Depends(admin)]
    ) -> dict[str, Any]:
        """Try a dead or retrying delivery again now (a dead one with a fresh schedule)."""
        before = await state.store.retry_delivery(delivery_id)
        if before is None:
            raise ApiError(404, "not_found", f"no delivery {delivery_id!r}")
        if before == "gone":
            raise ApiError(410, "payload_removed", "retention removed this event's payload")
        if before not in ("dead", "retrying"):
            hint = "replay its event instead" if before == "succeeded" else "it is queued"
            raise ApiError(409, "conflict", f"the delivery is {before}; {hint}")
        state.work_ready.set()
        await audit(who, "delivery.retry", delivery_id, was=before)
        row = await state.store.get_delivery(delivery_id)
        return _times(row or {}, "next_attempt_at", "created_at", "updated_at")

    async def publisher(source: str, who: Annotated[Caller, Depends(caller)]) -> Caller:
        if who.scope not in ("admin", f"publish:{source}"):
            raise ApiError(403, "forbidden", f"a {who.scope} token cannot publish to {source!r}")
        return who

    @api.post(
        f"{API_PREFIX}/sources/{{source}}/events",
        response_model=Published,
        status_code=201,
        tags=["publish"],
        responses={
            200: {"model": Published, "description": "a repeat of an Idempotency-Key"},
            404: {"model": ErrorBody},
            409: {"model": ErrorBody},
            413: {"model": ErrorBody},
            503: {"model": ErrorBody},
        },
        openapi_extra={
            "requestBody": {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}
        },
    )
    async def publish(
        source: str,
        request: Request,
        _: Annotated[Caller, Depends(publisher)],
        hookyard_event_type: Annotated[str | None, Header()] = None,
        idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    ) -> JSONResponse:
        """Publish an event into a source of kind `api`: the body is the payload, kept byte for
        byte with its content type. It routes, delivers and replays like a webhook. A repeated
        Idempotency-Key answers 200 with the original id; reused with another body, 409."""
        found = state.gateway.sources.get(source)
        if found is None or found.kind != "api":
            raise ApiError(404, "not_found", f"no source of kind api named {source!r}")
        if state.store.pending_writes >= state.gateway.settings.server.max_pending:
            raise ApiError(503, "unavailable", "overloaded; retry later")
        body = await bounded_body(request, found.max_body)
        prepared = published(
            state.gateway,
            source,
            body,
            content_type=request.headers.get("content-type"),
            event_type=hookyard_event_type,
            dedup_key=idempotency_key,
            path=request.url.path,
            peer=request.client.host if request.client else None,
        )
        try:
            # As for webhooks: a 503 past the bound, rather than a wait on a database that hangs.
            with bounded_wait(state.gateway.settings.server.commit_timeout):
                accepted = (await state.store.ingest(prepared))[0]
        except StoreError:
            raise ApiError(
                503, "unavailable", "the event could not be stored; retry later"
            ) from None
        if not accepted.duplicate:
            if prepared.events[0].destinations:
                state.work_ready.set()
            return JSONResponse({"id": accepted.event_id, "duplicate": False}, 201)
        assert idempotency_key is not None  # an event without a key is never a duplicate
        mark = idempotency_mark(idempotency_key, body)
        same = mark in await state.store.known_keys(source, [mark])
        if not same:  # published before marks were kept: compare with the stored payload
            original = await state.store.get_raw(accepted.event_id)
            same = original is not None and original[0] == body
        if not same:
            raise ApiError(
                409,
                "idempotency_key_reused",
                f"Idempotency-Key {idempotency_key!r} was used for another body "
                f"(event {accepted.event_id})",
            )
        return JSONResponse({"id": accepted.event_id, "duplicate": True}, 200)

    def valid_scope(scope: str) -> str:
        kind, _, name = scope.partition(":")
        if scope in ("admin", "read"):
            return scope
        source = state.gateway.sources.get(name)
        if kind == "publish" and source is not None and source.kind == "api":
            return scope
        if kind == "relay" and name in state.gateway.destinations:
            return scope
        raise ApiError(
            422,
            "invalid_parameter",
            f"scope {scope!r}: expected admin, read, publish:<source> or relay:<destination>"
            " naming a configured source or destination",
        )

    @api.post(
        f"{API_PREFIX}/tokens",
        response_model=NewToken,
        status_code=201,
        tags=["tokens"],
        responses={422: {"model": ErrorBody}},
    )
    async def create_token(
        body: TokenRequest, who: Annotated[Caller, Depends(admin)]
    ) -> dict[str, Any]:
        """A new scoped token. The token is in this answer only; Hookyard keeps its hash."""
        if body.name in RESERVED_TOKEN_NAMES:
            raise ApiError(422, "invalid_parameter", f"the name {body.name!r} is reserved")
        token = new_token()
        token_id = await state.store.create_token(
            body.name, hash_token(token), valid_scope(body.scope)
        )
        await audit(who, "token.create", token_id, name=body.name, scope=body.scope)
        row = next(t for t in await state.store.list_tokens() if t["id"] == token_id)
        return {**_times(row, "created_at", "revoked_at"), "token": token}

    @api.get(f"{API_PREFIX}/tokens", response_model=list[TokenInfo], tags=["tokens"])
    async def list_tokens(_: Annotated[Caller, Depends(admin)]) -> list[dict[str, Any]]:
        """Every token with its scope (never the token itself)."""
        return [_times(t, "created_at", "revoked_at") for t in await state.store.list_tokens()]

    @api.delete(
        f"{API_PREFIX}/tokens/{{token_id}}",
        status_code=204,
        tags=["tokens"],
        responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
    )
    async def revoke_token(token_id: str, who: Annotated[Caller, Depends(admin)]) -> Response:
        """Revoke a token; requests carrying it are refused from now on. The admin token that
        `server.admin_token` names is revoked by changing the config (409 here)."""
        listed = {t["id"]: t for t in await state.store.list_tokens()}
        if listed.get(token_id, {}).get("name") == CONFIGURED_ADMIN:
            raise ApiError(
                409,
                "configured_token",
                "this is the admin token server.admin_token names: change or remove it in the "
                "configuration and restart, and it stops working",
            )
        if not await state.store.revoke_token(token_id):
            raise ApiError(404, "not_found", f"no live token {token_id!r}")
        await audit(who, "token.revoke", token_id)
        return Response(status_code=204)

    @api.get(f"{API_PREFIX}/audit", response_model=AuditPage, tags=["audit"])
    async def list_audit(
        _: Annotated[Caller, Depends(reader)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Administrative actions, newest first: who (token), what, when."""
        rows = await state.store.list_audit(cursor=check_cursor(cursor, "aud"), limit=limit + 1)
        return _page(rows, limit, "at")

    @api.get(f"{API_PREFIX}/rejected", response_model=RejectedPage, tags=["rejected"])
    async def list_rejected(
        _: Annotated[Caller, Depends(reader)],
        source: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Sampled rejected requests, newest first, with the reason each was refused."""
        rows = await state.store.list_rejected(
            source=source, cursor=check_cursor(cursor, "rej"), limit=limit + 1
        )
        return _page(rows, limit, "received_at")

    from hookyard.api.relay import relay_routes  # they import this module's helpers
    from hookyard.api.retention import retention_routes
    from hookyard.api.sources import source_routes

    api.include_router(source_routes(state, reader, admin, audit))
    api.include_router(relay_routes(state, caller))
    api.include_router(retention_routes(state, reader, admin, audit))

    @api.get(
        f"{API_PREFIX}/destinations", response_model=list[DestinationInfo], tags=["destinations"]
    )
    async def list_destinations(_: Annotated[Caller, Depends(reader)]) -> list[dict[str, Any]]:
        """Configured destinations with their state (credentials in URLs masked)."""
        states = await state.store.destination_states()
        return [
            {
                "name": d.name,
                "url": "relay" if d.relay else redact_destination_url(d.url),
                "state": states.get(d.name, {}).get("state", "active"),
                "reason": states.get(d.name, {}).get("reason"),
                "failing_since": _time(states.get(d.name, {}).get("failing_since")),
                "timeout": d.timeout,
                "retry_schedule": list(d.retry_schedule),
                "concurrency": d.concurrency,
            }
            for d in state.gateway.destinations.values()
        ]

    def destination_named(name: str) -> str:
        if name not in state.gateway.destinations:
            raise ApiError(404, "not_found", f"no destination named {name!r}")
        return name

    async def change(who: Caller, name: str, new: str, reason: str) -> dict[str, Any]:
        changed = await set_state(state, destination_named(name), new, reason)
        await audit(who, f"destination.{new}", name, changed=changed)
        return {"destination": name, "state": new, "changed": changed}

    action = {
        "response_model": StateChange,
        "tags": ["destinations"],
        "responses": {404: {"model": ErrorBody}},
    }

    @api.post(f"{API_PREFIX}/destinations/{{name}}/pause", **action)  # type: ignore[arg-type]
    async def pause(name: str, who: Annotated[Caller, Depends(admin)]) -> dict[str, Any]:
        """Hold the destination's deliveries until it is resumed; nothing is dropped."""
        return await change(who, name, "paused", f"paused by {who.name}")

    @api.post(f"{API_PREFIX}/destinations/{{name}}/resume", **action)  # type: ignore[arg-type]
    async def resume(name: str, who: Annotated[Caller, Depends(admin)]) -> dict[str, Any]:
        """Deliver again, at the destination's pace (a paused or disabled destination)."""
        return await change(who, name, "active", f"resumed by {who.name}")

    @api.post(f"{API_PREFIX}/destinations/{{name}}/enable", **action)  # type: ignore[arg-type]
    async def enable(name: str, who: Annotated[Caller, Depends(admin)]) -> dict[str, Any]:
        """Re-enable a destination that was disabled (after a 410 or failing too long)."""
        return await change(who, name, "active", f"re-enabled by {who.name}")

    @api.post(
        f"{API_PREFIX}/destinations/{{name}}/retry-dead",
        response_model=Retried,
        tags=["destinations"],
        responses={404: {"model": ErrorBody}},
    )
    async def retry_dead(name: str, who: Annotated[Caller, Depends(admin)]) -> dict[str, Any]:
        """Give every dead delivery of the destination a fresh schedule, due now."""
        retried = await state.store.retry_dead(destination_named(name))
        state.work_ready.set()
        await audit(who, "destination.retry_dead", name, retried=retried)
        return {"destination": name, "retried": retried}

    return api
