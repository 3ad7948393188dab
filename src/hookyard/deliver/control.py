"""Destination states: active, paused (by an operator), disabled (after a 410, or failing
continuously for too long). Deliveries of a destination that is not active are held: kept,
not claimed, shown as `held`; they flow again, at the destination's pace, once it is active."""

from __future__ import annotations

from hookyard import alerts
from hookyard.state import AppState


async def set_state(state: AppState, name: str, new: str, reason: str | None = None) -> bool:
    """Persist and apply a destination's new state; True if it changed. Disabling and
    re-enabling raise alerts."""
    old = state.destination_states.get(name, "active")
    changed = await state.store.set_destination_state(name, new, reason)
    if not changed:
        return False
    state.destination_states[name] = new
    state.work_ready.set()  # resumed destinations have work waiting
    if new == "disabled":
        await alerts.emit(state, "destination.disabled", {"destination": name, "reason": reason})
    elif old == "disabled":
        await alerts.emit(state, "destination.enabled", {"destination": name, "state": new})
    return True
