"""Hookyard's own events: alerts published into the built-in source `hookyard`.

Users route them like any other event, for example:

    [[routes]]
    source = "hookyard"
    destination = "chat"
    types = ["delivery.dead", "destination.*"]

Types: `delivery.dead`, `destination.disabled`, `destination.enabled`,
`source.verification_failures` (a source's verification failures in a minute reached
`[server] alert_verification_failures`). Alerts about the
deliveries of alerts are not raised, so a failing alert destination cannot feed itself.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from hookyard.config import ALERT_SOURCE
from hookyard.ids import new_id
from hookyard.models import NewEvent, NewRequest
from hookyard.state import AppState

SOURCE = ALERT_SOURCE
log = logging.getLogger("hookyard.alerts")


async def emit(state: AppState, event_type: str, data: dict[str, Any]) -> str | None:
    """Commit an alert event and its deliveries; returns its id (None if it could not be
    stored: alerts are best effort and never fail the work that raised them)."""
    now = time.time()
    payload = orjson.dumps({"type": event_type, "created_at": now, "data": data})
    event = NewEvent(
        id=new_id("evt"),
        source=SOURCE,
        origin="publish",
        received_at=now,
        provider_event_id=None,
        event_type=event_type,
        dedup_keys=(),
        content_type="application/json",
        payload=payload,
        destinations=state.gateway.targets(SOURCE, event_type, lambda: orjson.loads(payload)),
    )
    request = NewRequest(
        id=new_id("req"),
        source=SOURCE,
        received_at=now,
        method="PUBLISH",
        path=f"/{SOURCE}/alerts",
        query="",
        headers=b"[]",
        peer=None,
        body=None,
        events=[event],
    )
    try:
        await state.store.ingest(request)
    except Exception as exc:
        log.error("could not record alert %s: %s", event_type, exc)
        return None
    if event.destinations:
        state.work_ready.set()
    log.warning("alert %s: %s", event_type, orjson.dumps(data).decode())
    return event.id
