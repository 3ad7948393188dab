"""The ways an API call is refused before it is served: the rate limit and forced failures."""

from __future__ import annotations

import math
import time
from collections import deque
from http import HTTPStatus


class RateLimiter:
    """A fixed window that opens at the first call after the previous one closed.

    Opening on a call rather than on multiples of the window keeps tests deterministic: N calls
    in quick succession always share one window. Real time, not the simulator's clock, so that a
    frozen clock cannot keep a client locked out forever.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._opened = -math.inf
        self._used = 0

    def take(self) -> tuple[bool, dict[str, str]]:
        """(allowed, the X-RateLimit-* headers, plus Retry-After when refused)."""
        now = time.time()
        if now >= self._opened + self.window:
            self._opened, self._used = now, 0
        allowed = self._used < self.limit
        if allowed:
            self._used += 1
        reset = self._opened + self.window
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.limit - self._used),
            "X-RateLimit-Reset": str(math.ceil(reset)),
        }
        if not allowed:
            headers["Retry-After"] = str(max(1, math.ceil(reset - now)))
        return allowed, headers


class Failures:
    """The answers fail_next queued, oldest first."""

    def __init__(self) -> None:
        self._queue: deque[tuple[int, float | None]] = deque()

    def add(self, count: int, status: int, retry_after: float | None) -> None:
        if count < 0:
            raise ValueError("count cannot be negative")
        if not 100 <= status <= 599:
            raise ValueError(f"not an HTTP status: {status}")
        self._queue.extend([(status, retry_after)] * count)

    def take(self) -> tuple[int, dict[str, str], dict[str, str]] | None:
        """(status, headers, body) for the next forced failure, or None to serve normally."""
        if not self._queue:
            return None
        status, retry_after = self._queue.popleft()
        headers = {} if retry_after is None else {"Retry-After": _seconds(retry_after)}
        try:
            error = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
        except ValueError:
            error = f"http_{status}"
        return status, headers, {"error": error}


def _seconds(value: float) -> str:
    """Whole seconds as the RFC wants them; a fraction kept so that tests can wait briefly."""
    if value == int(value):
        return str(int(value))
    return f"{value:.3f}".rstrip("0")
