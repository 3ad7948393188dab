"""Hookyard's own events: alerts published into the built-in source `hookyard`.

Users route them like any other event, for example:

    [[routes]]
    source = "hookyard"
    destination = "chat"
    types = ["delivery.dead", "destination.*"]

Types: `delivery.dead`, `destination.disabled`, `destination.enabled`,
`source.verification_failures` (a source's verification failures in a minute reached
`[server] alert_verification_failures`), `source.handshake` (a provider's challenge answered
inline: Slack, Zoom, Twitch, Discord's PING, Microsoft Graph; a record, not a problem).
Alerts about the deliveries of alerts are not raised, so a failing alert destination cannot
feed itself.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from hookyard.config import ALERT_SOURCE
from hookyard.ingest import published
from hookyard.state import AppState

SOURCE = ALERT_SOURCE
log = logging.getLogger("hookyard.alerts")


async def emit(
    state: AppState, event_type: str, data: dict[str, Any], *, quiet: bool = False
) -> str | None:
    """Commit an alert event and its deliveries; returns its id (None if it could not be
    stored: alerts are best effort and never fail the work that raised them)."""
    payload = orjson.dumps({"type": event_type, "created_at": time.time(), "data": data})
    request = published(
        state.gateway,
        SOURCE,
        payload,
        content_type="application/json",
        event_type=event_type,
        method="PUBLISH",
        path=f"/{SOURCE}/alerts",
    )
    event = request.events[0]
    try:
        await state.store.ingest(request)
    except Exception as exc:
        log.error("could not record alert %s: %s", event_type, exc)
        return None
    if event.destinations:
        state.work_ready.set()
    (log.info if quiet else log.warning)(
        "alert %s: %s",
        event_type,
        orjson.dumps(data).decode(),
        extra={"event_id": event.id, "alert": event_type},
    )
    return event.id
