"""What the request handlers and the worker share inside one process."""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter
from dataclasses import dataclass, field

from hookyard.gateway import Gateway
from hookyard.rejected import RejectedLog
from hookyard.relay.presence import Presence
from hookyard.store import Store
from hookyard.tracing import Tracing


class Wakeup:
    """Tells every consumer at once that work may be waiting. Each consumer holds a latch of
    its own and clears only that one: the worker clearing its latch hides nothing from a relay
    client waiting in the same process, and where no worker runs, nobody waits on a flag that
    no one ever clears (and so never waits at all)."""

    def __init__(self) -> None:
        self._latches: weakref.WeakSet[asyncio.Event] = weakref.WeakSet()

    def set(self) -> None:
        for latch in list(self._latches):
            latch.set()

    def latch(self) -> asyncio.Event:
        """A latch of the caller's own, set by every set() from now on until dropped."""
        event = asyncio.Event()
        self._latches.add(event)
        return event


@dataclass
class AppState:
    gateway: Gateway  # replaced whole on reload
    store: Store
    rejected: RejectedLog
    work_ready: Wakeup = field(default_factory=Wakeup)  # set after commits with work
    hints_ready: asyncio.Event = field(default_factory=asyncio.Event)  # a hint waits to be fetched
    rest_ready: asyncio.Event = field(default_factory=asyncio.Event)  # a REST job was asked for
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, outcome)
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (destination, class)
    rest_calls: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, result)
    rest_events: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, origin)
    rest_skipped: Counter[str] = field(default_factory=Counter)  # malformed items, by source
    fetches: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, outcome)
    tracing: Tracing = field(default_factory=lambda: Tracing(False))
    retention_removed: Counter[str] = field(default_factory=Counter)  # rows removed, by kind
    sweep_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one sweep at a time
    # Destinations that are not active (paused or disabled); absent means active.
    destination_states: dict[str, str] = field(default_factory=dict)
    presence: Presence = field(default_factory=Presence)  # relay clients this process sees
