"""The simulator's clock (freezable, skewable) and the time formats its API speaks."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime


class Clock:
    """Real time unless frozen by set_time; the skew applies to object timestamps only."""

    def __init__(self, skew: float = 0.0) -> None:
        self.skew = skew
        self.frozen: float | None = None

    def now(self) -> float:
        return time.time() if self.frozen is None else self.frozen

    def stamp(self) -> int:
        """updated_at/created_at: whole seconds, so that many changes share one timestamp."""
        return math.floor(self.now() + self.skew)


def iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def parse_http_date(value: str) -> float | None:
    """None for an unparseable date: RFC 9110 says to ignore such an If-Modified-Since."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def parse_when(value: str) -> float:
    """Unix seconds (int or float) or ISO 8601; naive ISO times are taken as UTC.

    An unencoded `+00:00` arrives as ` 00:00` (a query string's + is a space): accept that too.
    """
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise ValueError(f"not a time: {value!r}")
        return number
    if len(value) > 6 and value[-6] == " " and value[-3] == ":":
        value = value[:-6] + "+" + value[-5:]
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time or unix seconds: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
