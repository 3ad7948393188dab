"""prepare(gateway, source, request) -> the request's events, dedup keys and destinations.

Pure: no HTTP and no I/O. The ASGI handler (api/ingest.py) reads the request, calls `prepare`,
and commits what it returns.
"""

from __future__ import annotations

import fnmatch
import hashlib
import time
from collections.abc import Callable
from typing import Any

import orjson

from hookyard.gateway import Gateway, Source
from hookyard.ids import new_id
from hookyard.models import NewEvent, NewRequest
from hookyard.pollers.api import dig, object_key, webhook_object_key
from hookyard.verify import Handshake, Inbound

_UNPARSED = object()


def lazy_json(body: bytes) -> Callable[[], Any]:
    """The body parsed as JSON on first call (None if it is not JSON): only routes with
    payload conditions and ordering fields pay for parsing."""
    parsed: Any = _UNPARSED

    def document() -> Any:
        nonlocal parsed
        if parsed is _UNPARSED:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = None
        return parsed

    return document


def dedup_keys(
    event_id: str | None,
    delivery_id: str | None,
    body: bytes | None,
    replay_key: str | None = None,
) -> tuple[str, ...]:
    """The provider's event id, else its delivery id; the signature's one-time value; plus the
    body hash where asked for. An event is a duplicate when any of its keys is known."""
    keys = []
    if event_id:
        keys.append("id:" + event_id)
    elif delivery_id:
        keys.append("delivery:" + delivery_id)
    if replay_key:
        keys.append("replay:" + replay_key)
    if body is not None:
        keys.append("sha256:" + hashlib.sha256(body).hexdigest())
    return tuple(keys)


def prepare(
    gateway: Gateway,
    source: Source,
    inbound: Inbound,
    *,
    headers: list[tuple[str, str]],
    path: str,
    query: str,
    peer: str | None,
) -> NewRequest | Handshake:
    """Verify the request (raising VerificationError) and build what ingest must commit."""
    verified = source.verifier.verify(inbound)
    if verified.handshake is not None:
        return verified.handshake
    body = inbound.body
    request = NewRequest(
        id=new_id("req"),
        source=source.name,
        received_at=inbound.received_at,
        method=inbound.method,
        path=path,
        query=query,
        headers=orjson.dumps(source.redact(headers)),
        peer=peer,
        body=body,  # kept for hints and batches; a single event's payload is the body itself
    )
    if verified.hint is not None:  # kept pending until the worker has fetched what it names
        request.pending = True
        return request
    body_dedup = verified.body_dedup if source.dedup_body is None else source.dedup_body
    key_of_body = body if body_dedup else None
    if verified.items:  # a batch: one event per item, the raw body kept whole in the request
        request.events = [
            _event(
                gateway,
                source,
                inbound,
                item.payload,
                item.event_id,
                item.event_type,
                # An item without an id of its own is known by its content.
                dedup_keys(
                    item.dedup_id or item.event_id,
                    None,
                    item.payload if key_of_body or not item.event_id else None,
                ),
            )
            for item in verified.items
        ]
    else:
        # Where more than the body is signed (Twilio: the URL too), the hash of what was signed
        # stands in for the body's: the same body to another signed URL is another request.
        signed = verified.content_key if body_dedup else None
        keys = dedup_keys(
            verified.event_id,
            verified.delivery_id,
            None if signed else key_of_body,
            verified.replay_key,
        )
        if signed:
            keys += ("signed:" + signed,)
        request.body = None
        request.events = [
            _event(gateway, source, inbound, body, verified.event_id, verified.event_type, keys)
        ]
    if verified.reply is not None:
        request.reply = (verified.reply.status, verified.reply.content_type, verified.reply.body)
    return request


def _event(
    gateway: Gateway,
    source: Source,
    inbound: Inbound,
    payload: bytes,
    event_id: str | None,
    event_type: str | None,
    keys: tuple[str, ...],
) -> NewEvent:
    document = lazy_json(payload)
    version = _object_version(source, event_type, document)
    return NewEvent(
        id=new_id("evt"),
        source=source.name,
        origin="webhook",
        received_at=inbound.received_at,
        provider_event_id=event_id,
        event_type=event_type,
        dedup_keys=keys,
        content_type=inbound.headers.get("content-type"),
        payload=payload,
        destinations=gateway.targets(source.name, event_type, document),
        # The same version emitted by reconciliation, a poll or a backfill makes this a
        # duplicate; another webhook of the same version does not (two updates in one second,
        # two event types of one change).
        cross_keys=(object_key(*version),) if version else (),
        marks=(webhook_object_key(*version),) if version else (),
    )


def _object_version(
    source: Source, event_type: str | None, document: Callable[[], Any]
) -> tuple[str, str] | None:
    """(object id, version) a webhook of a source with object_id carries."""
    if source.object_paths is None:
        return None
    if event_type and any(fnmatch.fnmatchcase(event_type, p) for p in source.deletion_types):
        return None  # a deletion repeats the last version: it is a change of its own
    id_path, version_path = source.object_paths
    object_id, version = dig(document(), id_path), dig(document(), version_path)
    if object_id is None or version is None or isinstance(object_id, dict | list):
        return None
    return str(object_id), str(version)


def idempotency_mark(key: str, payload: bytes) -> str:
    """Kept beside a published event's Idempotency-Key for as long as the key: a retry can be
    told from a reuse with another body after retention removed the original's payload."""
    return f"idempotency-body:{hashlib.sha256(payload).hexdigest()}:{key}"


def published(
    gateway: Gateway,
    source: str,
    payload: bytes,
    *,
    content_type: str | None,
    event_type: str | None,
    dedup_key: str | None = None,
    method: str = "POST",
    path: str,
    headers: bytes = b"[]",
    peer: str | None = None,
) -> NewRequest:
    """An event published into `source` by an application (or by Hookyard, for alerts),
    routed like a webhook."""
    now = time.time()
    document = lazy_json(payload)

    event = NewEvent(
        id=new_id("evt"),
        source=source,
        origin="publish",
        received_at=now,
        provider_event_id=None,
        event_type=event_type,
        dedup_keys=(f"idempotency:{dedup_key}",) if dedup_key else (),
        content_type=content_type,
        payload=payload,
        destinations=gateway.targets(source, event_type, document),
        marks=(idempotency_mark(dedup_key, payload),) if dedup_key else (),
    )
    return NewRequest(
        id=new_id("req"),
        source=source,
        received_at=now,
        method=method,
        path=path,
        query="",
        headers=headers,
        peer=peer,
        body=None,
        events=[event],
    )
