"""What the request handlers and the worker share inside one process."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from hookyard.gateway import Gateway
from hookyard.rejected import RejectedLog
from hookyard.store import Store
from hookyard.tracing import Tracing


@dataclass
class AppState:
    gateway: Gateway  # replaced whole on reload
    store: Store
    rejected: RejectedLog
    work_ready: asyncio.Event = field(default_factory=asyncio.Event)  # set after commits with work
    hints_ready: asyncio.Event = field(default_factory=asyncio.Event)  # a hint waits to be fetched
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, outcome)
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (destination, class)
    tracing: Tracing = field(default_factory=lambda: Tracing(False))
    # Destinations that are not active (paused or disabled); absent means active.
    destination_states: dict[str, str] = field(default_factory=dict)
