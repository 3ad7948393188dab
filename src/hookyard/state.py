"""What the request handlers and the worker share inside one process."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from hookyard.gateway import Gateway
from hookyard.rejected import RejectedLog
from hookyard.relay.presence import Presence
from hookyard.store import Store
from hookyard.tracing import Tracing


@dataclass
class AppState:
    gateway: Gateway  # replaced whole on reload
    store: Store
    rejected: RejectedLog
    work_ready: asyncio.Event = field(default_factory=asyncio.Event)  # set after commits with work
    hints_ready: asyncio.Event = field(default_factory=asyncio.Event)  # a hint waits to be fetched
    rest_ready: asyncio.Event = field(default_factory=asyncio.Event)  # a REST job was asked for
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, outcome)
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (destination, class)
    rest_calls: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, result)
    rest_events: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, origin)
    tracing: Tracing = field(default_factory=lambda: Tracing(False))
    retention_removed: Counter[str] = field(default_factory=Counter)  # rows removed, by kind
    sweep_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one sweep at a time
    # Destinations that are not active (paused or disabled); absent means active.
    destination_states: dict[str, str] = field(default_factory=dict)
    presence: Presence = field(default_factory=Presence)  # relay clients this process sees
