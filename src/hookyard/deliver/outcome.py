"""What an attempt's result means, wherever the attempt ran: the worker's own HTTP request, or
a relay client's request to its local receiver. Same retry policy, same consequences."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from hookyard import alerts
from hookyard.deliver.control import set_state
from hookyard.deliver.http import Response
from hookyard.deliver.retry import honour_retry_after, next_delay
from hookyard.gateway import Destination
from hookyard.models import Claim, Outcome
from hookyard.state import AppState

DEAD_ALERT_EVERY = 60.0  # seconds between delivery.dead alerts of one destination


def decide(
    claim: Claim,
    destination: Destination,
    response: Response,
    started_at: float,
    *,
    event_known: bool = True,
) -> Outcome:
    """2xx, or a broker's confirmation, succeeds; anything else is retried on the destination's
    schedule (a 429/503's Retry-After may lengthen the wait) until it is dead. An event no
    longer stored is dead."""
    code = response.status_code
    if response.succeeded:
        status, next_at = "succeeded", started_at
    else:
        delay = None
        if event_known:
            delay = next_delay(destination.retry_schedule, claim.attempt, destination.jitter)
            if delay is not None:
                delay = honour_retry_after(delay, response.retry_after, destination.retry_after_max)
        status, next_at = (
            ("dead", started_at) if delay is None else ("retrying", time.time() + delay)
        )
        if response.error is None:
            error = f"HTTP {code}" if code is not None else "no answer and no confirmation"
            response = Response(code, response.excerpt, error, response.duration_ms)
    return Outcome(
        claim=claim,
        started_at=started_at,
        duration_ms=response.duration_ms,
        status_code=code,
        response_excerpt=response.excerpt,
        error=response.error,
        status=status,  # type: ignore[arg-type]
        next_attempt_at=next_at,
    )


def attempt_class(code: int | None, confirmed: bool = False) -> str:
    """An attempt's label in the attempts metric: 2xx ... 5xx, confirmed (a broker's), error."""
    if confirmed:
        return "confirmed"
    return f"{code // 100}xx" if code else "error"


class Aftermath:
    """What follows an attempt: a destination that answered 410 Gone, or kept failing too
    long, is disabled; a delivery that went dead raises an alert (at most one per destination
    per minute; the alert counts the others)."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self._dead_alerts: dict[str, tuple[float, int]] = {}  # destination -> (when, suppressed)

    async def follow(
        self,
        outcome: Outcome,
        destination: Destination,
        failing_since: float | None,
        event_source: str | None,
    ) -> None:
        name = destination.name
        if outcome.status_code == 410:
            await set_state(self.state, name, "disabled", "the destination answered 410 Gone")
        elif failing_since is not None and time.time() - failing_since >= destination.disable_after:
            since = datetime.fromtimestamp(failing_since, UTC).isoformat(timespec="seconds")
            await set_state(self.state, name, "disabled", f"failing continuously since {since}")
        if outcome.status == "dead" and event_source != alerts.SOURCE:
            await self._dead_alert(outcome, name)

    async def _dead_alert(self, outcome: Outcome, destination: str) -> None:
        now = time.monotonic()
        last, suppressed = self._dead_alerts.get(destination, (-DEAD_ALERT_EVERY, 0))
        if now - last < DEAD_ALERT_EVERY:
            self._dead_alerts[destination] = (last, suppressed + 1)
            return
        self._dead_alerts[destination] = (now, 0)
        await alerts.emit(
            self.state,
            "delivery.dead",
            {
                "delivery_id": outcome.claim.delivery_id,
                "event_id": outcome.claim.event_id,
                "destination": destination,
                "attempts": outcome.claim.attempt,
                "last_status_code": outcome.status_code,
                "last_error": outcome.error,
                "also_dead_since_last_alert": suppressed,
            },
        )
