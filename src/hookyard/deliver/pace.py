"""Per-destination rate limits: a token bucket refilled at the destination's rate, holding at
most one second's worth, so a destination that comes back after an outage (or a bulk retry)
receives a steady stream, not a burst."""

from __future__ import annotations

import time


class TokenBucket:
    def __init__(self, rate: float) -> None:
        self.rate = rate  # tokens per second
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self._stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def available(self) -> int:
        self._refill()
        return int(self.tokens)

    def take(self, count: int) -> None:
        self.tokens -= count

    def wait(self) -> float:
        """Seconds until one more token is available."""
        self._refill()
        return max(0.0, (1 - self.tokens) / self.rate)
