"""POST /in/{source}: the ingest endpoint, as a raw ASGI callable for speed.

It reads the body (bounded), verifies, commits the event and its deliveries, and only then
answers 200 (503 when the commit takes longer than server.commit_timeout). It does no outbound
I/O. Rejections are answered at once and sampled into the rejected log, which is written off
the commit path.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from hookyard import alerts
from hookyard.errors import IngestError, StoreError, Unavailable
from hookyard.fetchback import store_hint
from hookyard.gateway import REDACTED, Source, looks_secret, redact_query
from hookyard.ids import new_id
from hookyard.ingest import prepare
from hookyard.models import Accepted, NewRequest, Rejected
from hookyard.rejected import BODY_SAMPLE
from hookyard.state import AppState
from hookyard.store.writer import bounded_wait
from hookyard.verify import Handshake, Inbound

Scope = dict[str, Any]
JSON = b"application/json"
UNKNOWN_SOURCE = "(unknown)"  # how rejections for paths that name no source are logged


class _TooLarge(IngestError):
    status = 413
    code = "body_too_large"

    def __init__(self, limit: int, partial: bytes = b"") -> None:
        super().__init__(f"the body exceeds this source's limit of {limit} bytes")
        self.partial = partial  # what was read before giving up, for the rejected log


class _UnknownSource(IngestError):
    """No webhook source by that name. A source of another kind (api, poll) is answered
    exactly as a name that is none, so the public endpoint does not tell which internal
    sources exist; only the rejected log, read with a token, says where it takes events."""

    status = 404
    code = "unknown_source"

    def __init__(self, name: str, source: Source | None) -> None:
        super().__init__(f"no webhook source named {name[:100]!r} is configured")
        self.logged = self.message
        if source is not None:
            self.logged += f"; source {name!r} takes events at POST /api/v1/sources/{name}/events"


class _Disconnected(Exception):
    pass


async def _read_body(receive: Any, limit: int) -> bytes:
    """The whole body (a body that trickles in is cut off by the HTTP protocol: 408)."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _Disconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise _TooLarge(limit, body)
        return body
    chunks = [body]
    size = len(body)
    while True:
        if size > limit:
            raise _TooLarge(limit, b"".join(chunks))
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body"):
            break
    if size > limit:
        raise _TooLarge(limit, b"".join(chunks))
    return b"".join(chunks)


async def respond(
    send: Any, status: int, body: bytes, content_type: bytes = JSON, extra: tuple[Any, ...] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": code, "message": message})


class IngestApp:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self._recording: set[asyncio.Task[Any]] = set()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        received_at = time.time()
        state = self.state
        gateway = state.gateway
        name = scope["path"][4:].rstrip("/")
        source = gateway.sources.get(name)
        raw_headers = scope["headers"]
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw_headers]
        body = b""
        try:
            header_bytes = sum(len(k) + len(v) + 4 for k, v in raw_headers)
            if header_bytes > gateway.settings.server.max_header_bytes:
                raise IngestError(
                    f"request headers are {header_bytes} bytes; the limit is "
                    f"{gateway.settings.server.max_header_bytes}",
                    code="headers_too_large",
                    status=431,
                )
            if source is None or source.kind != "webhook":
                raise _UnknownSource(name, source)
            if scope["method"] != "POST":
                raise IngestError(
                    f"{scope['method']} is not allowed; webhooks are POSTed",
                    code="method_not_allowed",
                    status=405,
                )
            limit = source.max_body
            header_map: dict[str, str] = {}
            for key, value in headers:
                header_map[key] = f"{header_map[key]}, {value}" if key in header_map else value
            declared = header_map.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _TooLarge(limit)
            if state.store.pending_writes >= gateway.settings.server.max_pending:
                raise Unavailable("ingest is overloaded; retry later", retry_after=1)
            body = await _read_body(receive, limit)
            query = scope.get("query_string", b"").decode("latin-1")
            inbound = Inbound(
                method="POST",
                url=_public_url(gateway.settings.server.public_url, scope, header_map, query),
                headers=header_map,
                body=body,
                received_at=received_at,
            )
            prepared = prepare(
                gateway,
                source,
                inbound,
                headers=headers,
                path=scope["path"],
                query=redact_query(query),
                peer=_peer(scope),
            )
            if isinstance(prepared, Handshake):
                state.counts[(name, "handshake")] += 1
                await respond(
                    send, prepared.status, prepared.body, prepared.content_type.encode("latin-1")
                )
                self._record_handshake(name, source, prepared)
                return
            if prepared.pending:  # a hint: kept for the worker to fetch what it names
                await self._answer_hint(send, name, source, prepared)
                return
            try:
                # Bounded: a database that hangs (a partition, a stuck server) must not hold
                # providers until they time out while requests pile up here. Past the bound
                # nothing was acked: the provider retries (see bounded_wait).
                with bounded_wait(gateway.settings.server.commit_timeout):
                    if state.tracing.enabled:
                        accepted = await self._commit_traced(prepared)
                    else:
                        accepted = await state.store.ingest(prepared)
            except StoreError:  # the writer logged why; callers learn only to retry
                raise Unavailable("the event could not be stored; retry later") from None
        except _Disconnected:
            return
        except IngestError as exc:
            extra: tuple[Any, ...] = ()
            if isinstance(exc, Unavailable):
                extra = ((b"retry-after", str(exc.retry_after).encode()),)
                state.counts[(name, "unavailable")] += 1
            else:
                seen = exc.partial if isinstance(exc, _TooLarge) else body
                self._reject(
                    scope, name if source else UNKNOWN_SOURCE, headers, seen, received_at, exc
                )
            if exc.status == 405:
                extra = ((b"allow", b"POST"),)
            await respond(send, exc.status, error_body(exc.code, exc.message), extra=extra)
            return
        for event, outcome in zip(prepared.events, accepted, strict=True):
            state.counts[(name, "duplicate" if outcome.duplicate else "accepted")] += 1
            if event.destinations and not outcome.duplicate:
                state.work_ready.set()  # committed deliveries: wake the worker now
        if prepared.reply is not None:  # the provider expects an answer of its own
            status, content_type, reply = prepared.reply
            await respond(send, status, reply, content_type.encode("latin-1"))
            return
        # A batch answers as one whatever its length (a batch of one included): prepare keeps
        # the raw body beside the events only when the verifier split the body into items.
        if prepared.body is None:
            answer = {"id": accepted[0].event_id, "duplicate": accepted[0].duplicate}
        else:
            answer = {
                "ids": [a.event_id for a in accepted],
                "duplicates": sum(a.duplicate for a in accepted),
            }
        await respond(send, 200, orjson.dumps(answer))

    async def _answer_hint(self, send: Any, name: str, source: Source, hint: NewRequest) -> None:
        """Keep a hint, or answer it as the identical one still waiting to be fetched. Past
        the source's bound on waiting hints, store_hint raises Unavailable: 503."""
        state = self.state
        attributes = {"hookyard.source": name, "hookyard.request_id": hint.id}
        try:
            with (
                state.tracing.span("hookyard.ingest", attributes),
                bounded_wait(state.gateway.settings.server.commit_timeout),
            ):
                request_id = await store_hint(state, source, hint)
        except StoreError:  # the writer logged why; callers learn only to retry
            raise Unavailable("the hint could not be stored; retry later") from None
        if request_id == hint.id:
            state.counts[(name, "hint")] += 1
            state.hints_ready.set()
        else:
            state.counts[(name, "hint_merged")] += 1
        # As ARCHITECTURE.md says: {"id", "pending"}; request_id kept for older clients.
        answer = {"id": request_id, "pending": True, "request_id": request_id}
        await respond(send, 200, orjson.dumps(answer))

    def _record_handshake(self, name: str, source: Source, answer: Handshake) -> None:
        """Keep a record of the challenge answered (an event of the built-in source, after the
        answer went out, so the provider's deadline never waits on a commit)."""
        data = {"source": name, "scheme": source.verifier.scheme, "status": answer.status}
        task = asyncio.create_task(alerts.emit(self.state, "source.handshake", data, quiet=True))
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _commit_traced(self, prepared: NewRequest) -> list[Accepted]:
        attributes = {"hookyard.source": prepared.source, "hookyard.request_id": prepared.id}
        with self.state.tracing.span("hookyard.ingest", attributes) as carrier:
            for event in prepared.events:
                event.trace_context = carrier.get("traceparent")
            return await self.state.store.ingest(prepared)

    def _reject(
        self,
        scope: Scope,
        name: str,
        headers: list[tuple[str, str]],
        body: bytes,
        received_at: float,
        error: IngestError,
    ) -> None:
        """Count the rejection; keep a sample of it in the rejected log. Requests for unknown
        sources share one name, so made-up paths cannot grow memory or dodge sampling."""
        if not self.state.rejected.sample(name, error.code, received_at):
            return
        gateway = self.state.gateway
        source = gateway.sources.get(name)
        shown = source.redact(headers) if source else _redact(headers, gateway.credential_headers)
        self.state.rejected.add(
            Rejected(
                id=new_id("rej"),
                source=name,
                received_at=received_at,
                status=error.status,
                code=error.code,
                reason=error.logged if isinstance(error, _UnknownSource) else error.message,
                method=scope["method"],
                path=scope["path"][:1000],
                query=redact_query(scope.get("query_string", b"").decode("latin-1")),
                headers=orjson.dumps(shown),
                peer=_peer(scope),
                body=body[:BODY_SAMPLE],
                body_size=len(body),
            )
        )


def _redact(headers: list[tuple[str, str]], secret: frozenset[str]) -> list[tuple[str, str]]:
    """Values of credential headers masked: the known ones, and any whose name says so."""
    return [(k, REDACTED if k in secret or looks_secret(k) else v) for k, v in headers]


def _peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


def _public_url(base: str | None, scope: Scope, headers: dict[str, str], query: str) -> str:
    """The URL the provider called, for schemes that sign it (Twilio, Square, HubSpot)."""
    path = str(scope["path"]) + (f"?{query}" if query else "")
    if base:
        return base.rstrip("/") + path
    host = headers.get("host", "localhost")
    scheme: str = scope.get("scheme", "http")
    return f"{scheme}://{host}{path}"
