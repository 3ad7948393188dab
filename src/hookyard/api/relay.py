"""The relay's pull API: lease a relay destination's deliveries, report each one's result.

`hookyard listen` is a client of these two calls; any consumer that cannot take inbound
connections can use them too (admin token, or a relay:DESTINATION token).

(No `from __future__ import annotations`: FastAPI resolves the dependency annotations of
handlers defined inside relay_routes at runtime; see rest.py.)
"""

import contextlib
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal, cast

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field, model_validator

from hookyard.api.rest import API_PREFIX, ApiError, Caller, ErrorBody, _time
from hookyard.relay.hub import MAX_LEASE, MAX_WAIT, DestinationGone, RelayHub, Result
from hookyard.relay.presence import client_key
from hookyard.state import AppState
from hookyard.tokens import hash_token


class LeaseRequest(BaseModel):
    max: int = Field(default=10, ge=1, le=MAX_LEASE)  # deliveries at most
    wait: float = Field(default=0.0, ge=0, le=MAX_WAIT)  # seconds to wait for one when none is due
    lease: float = Field(default=30.0, ge=1, le=3600)  # seconds until unreported ones return


class RelayedDelivery(BaseModel):
    delivery_id: str
    event_id: str
    lease: str  # give it back with the result
    lease_until: datetime
    attempt: int
    replay: bool
    source: str
    event_type: str | None
    headers: dict[str, str]  # exactly those a direct delivery carries, signature included
    body: str  # base64 of the exact payload bytes


class Leased(BaseModel):
    deliveries: list[RelayedDelivery]


class ResultIn(BaseModel):
    delivery_id: str
    lease: str
    status_code: int | None = Field(default=None, ge=100, le=599)  # the receiver's answer
    error: str | None = Field(default=None, max_length=1000)  # or why there was none
    # Bounded and finite: the attempt's start is computed from it (1e309 parsed as infinity
    # and made every later page of attempts answer 500).
    duration_ms: float = Field(default=0.0, ge=0, le=86_400_000, allow_inf_nan=False)
    response_excerpt: str | None = Field(default=None, max_length=4096)
    # The receiver's Retry-After, seconds: finite; beyond a year taken as a year (the retry
    # policy caps it far lower anyway).
    retry_after: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _answer_or_error(self) -> "ResultIn":
        if (self.status_code is None) == (self.error is None):
            raise ValueError("give either status_code (the receiver answered) or error")
        if self.retry_after is not None:
            self.retry_after = min(self.retry_after, 31_536_000.0)
        return self


class ResultsIn(BaseModel):
    results: list[ResultIn] = Field(min_length=1, max_length=1000)


class ResultOut(BaseModel):
    delivery_id: str
    # succeeded, retrying or dead as for a direct delivery; stale: the lease is no longer
    # held (it ran out and another client has the delivery, or it was reported already).
    status: Literal["succeeded", "retrying", "dead", "stale"]


class Settled(BaseModel):
    results: list[ResultOut]


MAX_OPEN_PER_TOKEN = 128  # `hookyard listen --streams` goes up to 64


class _ClosingStream(StreamingResponse):
    """Closes its generator however the response ends. A client gone while a write waits
    cancels the response task with the generator paused at a `yield`: unclosed, it would
    hold its place (and its presence) until the garbage collector found it."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await cast(AsyncGenerator[bytes, None], self.body_iterator).aclose()


class OpenCalls:
    """Streams and lease waits open at once, per token and process: one client cannot hold
    the server's connections and memory without end. Counted on the event loop, so
    check-and-take is atomic."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._open: Counter[str] = Counter()

    def full(self, token: str) -> bool:
        return self._open[token] >= self.most

    def refusal(self) -> ApiError:
        return ApiError(
            429,
            "too_many_streams",
            f"this token has {self.most} streams and lease waits open on this server "
            "already; close one",
        )

    @contextlib.contextmanager
    def holding(self, token: str) -> Iterator[None]:
        if self.full(token):
            raise self.refusal()
        self._open[token] += 1
        try:
            yield
        finally:
            self._open[token] -= 1
            if not self._open[token]:
                del self._open[token]


def relay_routes(
    state: AppState,
    caller: Callable[..., Awaitable[Caller]],
) -> APIRouter:
    router = APIRouter(prefix=API_PREFIX, tags=["relay"])
    hub = RelayHub(state)
    open_calls = OpenCalls(MAX_OPEN_PER_TOKEN)
    errors: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorBody},
        409: {"model": ErrorBody},
    }
    waits = {**errors, 429: {"model": ErrorBody}}  # the calls that hold a place

    def relay_destination(name: str, who: Caller) -> str:
        if who.scope not in ("admin", f"relay:{name}"):
            raise ApiError(403, "forbidden", f"a {who.scope} token cannot relay {name!r}")
        destination = state.gateway.destinations.get(name)
        if destination is None:
            raise ApiError(404, "not_found", f"no destination named {name!r}")
        if not destination.relay:
            raise ApiError(409, "not_relay", f"{name!r} is not a relay destination")
        return name

    def relay_client(request: Request, who: Caller) -> tuple[Callable[[], Awaitable[bool]], str]:
        """Whether the caller's token still holds (checked while a call waits: a revoked
        token stops it at once), and the client's key for the console's listener count."""
        token_hash = hash_token(request.headers.get("authorization", "").partition(" ")[2].strip())

        async def allowed() -> bool:
            return await state.store.find_token(token_hash) is not None

        peer = request.client.host if request.client else None
        return allowed, client_key(who.id, peer, request.headers.get("user-agent"))

    @router.post("/destinations/{name}/lease", response_model=Leased, responses=waits)
    async def lease(
        name: str, body: LeaseRequest, request: Request, who: Annotated[Caller, Depends(caller)]
    ) -> dict[str, Any]:
        """Lease up to `max` due deliveries, waiting up to `wait` seconds for one. Report
        each with `results` before `lease` seconds pass; an unreported one is due again then
        (for this client or another). Each carries the headers and the exact body (base64) a
        direct delivery would."""
        name = relay_destination(name, who)
        allowed, client = relay_client(request, who)
        with open_calls.holding(who.id), state.presence.waiting(name, client):
            try:
                messages = await hub.lease(
                    name, body.max, body.wait, body.lease, allowed, request.is_disconnected
                )
            except DestinationGone:
                relay_destination(name, who)  # says how: 404, or 409 if no longer a relay
                messages = []  # back already (a second reload): nothing leased this time
        if messages is None:
            raise ApiError(401, "unauthorized", "the token was revoked")
        for message in messages:
            message["lease_until"] = _time(message["lease_until"])
        return {"deliveries": messages}

    @router.get(
        "/destinations/{name}/stream",
        response_class=StreamingResponse,
        responses={
            **waits,
            200: {
                "description": "Server-sent events: `delivery` (data: a leased delivery, as "
                "the lease call returns each), `heartbeat`, and `revoked`, `unanswered` or "
                "`refused` (the stream ends: the token was revoked, leases ran out twice with "
                "no result between, or the token's streams opened together exceeded its "
                "bound; see 429).",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
        },
    )
    async def stream(
        name: str,
        request: Request,
        who: Annotated[Caller, Depends(caller)],
        max: Annotated[int, Query(ge=1, le=MAX_LEASE)] = 10,
        lease: Annotated[float, Query(ge=1, le=3600)] = 30.0,
        heartbeat: Annotated[float, Query(ge=0.1, le=120)] = 5.0,
    ) -> StreamingResponse:
        """Deliveries pushed as server-sent events as soon as they fall due, with at most
        `max` unreported at a time; report each with `results` before `lease` seconds pass.
        A `heartbeat` event follows every `heartbeat` seconds of silence, so a client that
        hears nothing for longer knows the link is dead. `hookyard listen` uses this. One
        token holds at most 128 streams and lease waits at once on one server process; more
        are answered 429."""
        name = relay_destination(name, who)
        allowed, client = relay_client(request, who)
        if open_calls.full(who.id):
            raise open_calls.refusal()

        async def frames() -> AsyncIterator[bytes]:
            yield b"retry: 1000\n\n"  # EventSource's reconnection delay, milliseconds
            # Taken once the stream runs (a response that never starts must not hold a place),
            # so streams opened together may pass the check above: the late ones end here.
            if open_calls.full(who.id):
                refusal = open_calls.refusal()
                body = {"error": refusal.code, "message": refusal.detail}
                yield b"event: refused\ndata: %s\n\n" % orjson.dumps(body)
                return
            with open_calls.holding(who.id), state.presence.waiting(name, client):
                async for kind, messages in hub.stream(name, max, lease, heartbeat, allowed):
                    if kind != "deliveries":
                        yield b"event: %s\ndata: {}\n\n" % kind.encode()
                        continue
                    batch = []  # one event each, written together
                    for message in messages:
                        message["lease_until"] = _time(message["lease_until"])
                        batch.append(b"event: delivery\ndata: %s\n\n" % orjson.dumps(message))
                    yield b"".join(batch)

        return _ClosingStream(
            frames(),
            media_type="text/event-stream",
            # Proxies must pass each event on at once, not buffer the stream.
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    @router.post("/destinations/{name}/results", response_model=Settled, responses=errors)
    async def results(
        name: str, body: ResultsIn, who: Annotated[Caller, Depends(caller)]
    ) -> dict[str, Any]:
        """Report what the receiver answered (`status_code`) or why it did not (`error`):
        recorded as the attempt; 2xx succeeds, anything else is retried on the destination's
        schedule, as for a direct delivery."""
        name = relay_destination(name, who)
        reported = [Result(**item.model_dump()) for item in body.results]
        statuses = await hub.settle(name, reported)
        return {
            "results": [
                {"delivery_id": r.delivery_id, "status": status}
                for r, status in zip(reported, statuses, strict=True)
            ]
        }

    return router
