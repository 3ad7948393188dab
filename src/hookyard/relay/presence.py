"""Which relay clients this process has heard from lately, per destination (the console's
"listeners connected").

A client counts as connected while one of its lease calls waits, and for `window` seconds after
its last call: `hookyard listen` calls again as soon as one returns, so a live client is never
out of sight for long. Only this process's clients are known; behind a load balancer each API
process sees its own. Clients are told apart by a hash of their token id, address and
User-Agent, so nothing identifying is kept, and at most `limit` of them are remembered.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator

WINDOW = 30.0  # seconds a client stays connected after its last call
LIMIT = 10_000  # clients remembered at most, all destinations together

Key = tuple[str, str]  # (destination, client key)


def client_key(token_id: str, peer: str | None, user_agent: str | None) -> str:
    """A short, stable digest of what tells one client from another."""
    text = "\0".join((token_id, peer or "", user_agent or ""))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


class Presence:
    def __init__(
        self,
        window: float = WINDOW,
        limit: int = LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window
        self._limit = limit
        self._clock = clock
        self._last: OrderedDict[Key, float] = OrderedDict()  # least recently seen first
        self._waiting: Counter[Key] = Counter()  # lease calls under way, by client

    def seen(self, destination: str, client_key: str) -> None:
        key = (destination, client_key)
        self._last[key] = self._clock()
        self._last.move_to_end(key)
        self._forget()
        while len(self._last) > self._limit:  # a flood of distinct clients: drop the oldest
            self._last.popitem(last=False)

    @contextlib.contextmanager
    def waiting(self, destination: str, client_key: str) -> Iterator[None]:
        """Around a lease call: connected throughout, however long it waits."""
        key = (destination, client_key)
        self.seen(destination, client_key)
        self._waiting[key] += 1
        try:
            yield
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]
            self.seen(destination, client_key)

    def connected(self, destination: str) -> int:
        self._forget()
        clients = {c for d, c in self._last if d == destination}
        clients.update(c for d, c in self._waiting if d == destination)
        return len(clients)

    def _forget(self) -> None:
        """Drop the clients not seen within the window (oldest first, so this stops early)."""
        horizon = self._clock() - self._window
        while self._last:
            key, at = next(iter(self._last.items()))
            if at >= horizon:
                break
            del self._last[key]
