"""What a delivery carries besides the body, for every transport.

HTTP receivers and broker consumers find the same names (`webhook-id` to dedupe on, the
Standard Webhooks signature to verify), so one builder serves both: http.py adds its headers
around it, the broker senders add the source, the delivery id and the trace context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from hookyard.config import redact_destination_url
from hookyard.deliver.signing import standard_signature
from hookyard.models import EventData

# Characters a NATS subject or AMQP routing-key token cannot hold (wildcards, whitespace,
# control characters); a provider-chosen source or type never smuggles them in.
UNSAFE_TOKEN = re.compile(r"[\s*>\x00-\x1f\x7f]")


def header_safe(value: str) -> str:
    """Provider-chosen text (ids, types from a JSON body) may hold characters a header cannot;
    control characters would also let a payload inject headers."""
    return "".join(c if " " <= c <= "~" else "?" for c in value)


def signed_metadata(
    event: EventData, signing_keys: tuple[bytes, ...], timestamp: int
) -> dict[str, str]:
    """The event's identity, type and signature, named as Hookyard's HTTP headers."""
    metadata = {
        "content-type": event.content_type or "application/octet-stream",
        "webhook-id": event.id,
        "webhook-timestamp": str(timestamp),
    }
    if signing_keys:
        metadata["webhook-signature"] = " ".join(
            standard_signature(key, event.id, timestamp, event.payload) for key in signing_keys
        )
    if event.provider_event_id:
        metadata["hookyard-provider-event-id"] = header_safe(event.provider_event_id)
    if event.event_type:
        metadata["hookyard-event-type"] = header_safe(event.event_type)
    return metadata


@dataclass(frozen=True, slots=True)
class Message:
    """One delivery as a broker gets it: the exact payload bytes and the metadata."""

    body: bytes
    metadata: dict[str, str]
    event_id: str
    delivery_id: str
    source: str
    event_type: str | None
    timestamp: int


def broker_message(
    event: EventData,
    signing_keys: tuple[bytes, ...],
    delivery_id: str,
    timestamp: int,
    trace_headers: dict[str, str] | None = None,
) -> Message:
    metadata = signed_metadata(event, signing_keys, timestamp)
    metadata["hookyard-source"] = event.source
    metadata["hookyard-delivery-id"] = delivery_id
    for name, value in (trace_headers or {}).items():  # traceparent: the consumer continues
        metadata[name] = header_safe(value)
    return Message(
        event.payload, metadata, event.id, delivery_id, event.source, event.event_type, timestamp
    )


def render(template: str, message: Message) -> str:
    """A routing key or subject: {source} and {type} filled in (a missing type is `unknown`),
    wildcards, whitespace and control characters turned into `_`, no empty token between dots."""

    def token(value: str) -> str:
        dotted = UNSAFE_TOKEN.sub("_", value)
        return ".".join(part or "_" for part in dotted.split("."))

    return template.format(
        source=token(message.source), type=token(message.event_type or "unknown")
    )


def failure(exc: BaseException, url: str) -> str:
    """An exception as an attempt's error, never with a credential of the broker URL in it:
    its password, or a token that is the whole user info (nats://TOKEN@host)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = text.replace(url, redact_destination_url(url))
    userinfo = re.match(r"[^:/]+://([^@/]+)@", url)
    if userinfo:
        user, _, password = userinfo.group(1).partition(":")
        secret = password or user  # a user name beside a password is not a secret
        for shown in {secret, unquote(secret)}:
            text = text.replace(shown, "***")
    return text
