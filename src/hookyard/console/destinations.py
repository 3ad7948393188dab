"""Destinations as the console shows them, and the actions an operator can take on one.

The actions make the same calls as `POST /api/v1/destinations/{name}/pause|resume|enable|
retry-dead` (api/rest.py): the same state change through deliver/control.py, the same reason
text and the same audit action names, so the audit log reads alike whichever was used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hookyard.config import redact_destination_url
from hookyard.console.context import Console, Visitor
from hookyard.deliver.control import set_state
from hookyard.state import AppState

WAITING = ("pending", "retrying", "in_flight")


@dataclass(frozen=True)
class Action:
    slug: str
    label: str
    question: str  # asked on the confirmation page; {name} is the destination
    done: str  # the message afterwards


ACTIONS = {
    "pause": Action(
        "pause",
        "Pause",
        "Pause {name}? Its deliveries are held, not dropped, until it is resumed.",
        "{name} is paused.",
    ),
    "resume": Action(
        "resume",
        "Resume",
        "Resume {name}? Held deliveries go out again at its pace.",
        "{name} is active again.",
    ),
    "enable": Action(
        "enable",
        "Re-enable",
        "Re-enable {name}? It was disabled; its held deliveries go out again at its pace.",
        "{name} is enabled again.",
    ),
    "retry-dead": Action(
        "retry-dead",
        "Retry dead deliveries",
        "Retry every dead delivery of {name}? Each gets a fresh schedule, due now.",
        "{count} dead deliveries of {name} will be tried again.",
    ),
}


@dataclass(frozen=True)
class DestinationRow:
    name: str
    url: str
    state: str  # active | paused | disabled, or failing (active, failing since a time)
    reason: str | None
    failing_since: float | None
    queued: int  # pending, retrying and in flight
    oldest_due: float | None  # when the oldest waiting delivery fell due (None: none waits)

    @property
    def actions(self) -> list[Action]:
        offered = {
            "paused": ["resume"],
            "disabled": ["enable"],
        }.get(self.state, ["pause"])
        return [ACTIONS[slug] for slug in [*offered, "retry-dead"]]


async def destination_rows(state: AppState) -> list[DestinationRow]:
    states = await state.store.destination_states()
    queue = await state.store.queue_figures()
    now = time.time()
    rows = []
    for destination in state.gateway.destinations.values():
        name = destination.name
        known = states.get(name, {})
        shown = known.get("state", "active")
        if shown == "active" and known.get("failing_since") is not None:
            shown = "failing"
        due = [
            t
            for (d, status), (_, t) in queue.items()
            if d == name and status in ("pending", "retrying") and t is not None and t <= now
        ]
        rows.append(
            DestinationRow(
                name=name,
                url="relay" if destination.relay else redact_destination_url(destination.url),
                state=shown,
                reason=known.get("reason"),
                failing_since=known.get("failing_since"),
                queued=sum(n for (d, s), (n, _) in queue.items() if d == name and s in WAITING),
                oldest_due=min(due, default=None),
            )
        )
    return rows


async def perform(console: Console, visitor: Visitor, name: str, action: Action) -> str:
    """Do the action (the destination is a configured one); returns the message to show."""
    state, who = console.state, visitor.caller
    if action.slug == "retry-dead":
        retried = await state.store.retry_dead(name)
        state.work_ready.set()
        await console.audit(visitor, "destination.retry_dead", name, retried=retried)
        return action.done.format(name=name, count=retried)
    new, reason = {
        "pause": ("paused", f"paused by {who.name}"),
        "resume": ("active", f"resumed by {who.name}"),
        "enable": ("active", f"re-enabled by {who.name}"),
    }[action.slug]
    changed = await set_state(state, name, new, reason)
    await console.audit(visitor, f"destination.{new}", name, changed=changed)
    if not changed:
        return f"{name} was already {new}; nothing changed."
    return action.done.format(name=name)
