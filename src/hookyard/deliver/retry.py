"""When to try a failed delivery again, or to give up."""

from __future__ import annotations

import random

_rng = random.Random()


def next_delay(schedule: tuple[float, ...], attempts_made: int, jitter: float) -> float | None:
    """Seconds before the next attempt, or None when the schedule is exhausted (dead).

    `schedule[i]` is the delay before attempt i+1, the first being the initial attempt, so a
    schedule of 8 entries makes 8 attempts in all. Jitter spreads retries by ±`jitter` so that
    deliveries that failed together do not return together.
    """
    if attempts_made >= len(schedule):
        return None
    delay = schedule[attempts_made]
    return delay * (1 + _rng.uniform(-jitter, jitter)) if jitter else delay


def honour_retry_after(delay: float, retry_after: float | None, most: float) -> float:
    """A receiver's Retry-After may lengthen the scheduled wait, by at most `most` seconds, so
    that no receiver can park a delivery forever; it never shortens it."""
    if retry_after is None:
        return delay
    return max(delay, min(retry_after, delay + most))
