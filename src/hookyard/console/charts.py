"""Small charts drawn on the server as inline SVG: their geometry, and the same numbers in
words and as table rows, so that a chart is never the only way to read them (the templates put
the words in the SVG's title and the rows in a visually hidden table, see _charts.html)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from hookyard.console.render import duration

WIDTH, HEIGHT = 240, 48  # the viewBox; the SVG scales to its box
GAP = 1.0  # between bars


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str  # shown on hover: "12:03: 45"


@dataclass(frozen=True)
class Chart:
    words: str  # the whole chart in a sentence, for screen readers
    rows: list[tuple[str, str]]  # (when, value) for the hidden table; empty ones left out
    bars: list[Bar]
    lines: list[tuple[str, str]]  # (css class, SVG path) of a line chart
    top: str  # the value at the top of the scale, as shown
    first: str  # the labels under the first and last bucket
    last: str
    width: int = WIDTH
    height: int = HEIGHT


def clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M")


def _bars(values: Sequence[float], titles: Sequence[str]) -> list[Bar]:
    tallest = max(values, default=0) or 1
    step = WIDTH / max(1, len(values))
    bars = []
    for i, (value, title) in enumerate(zip(values, titles, strict=True)):
        height = value / tallest * (HEIGHT - 1)
        if value and height < 1:  # a small count is still visible
            height = 1
        bars.append(Bar(i * step, HEIGHT - height, max(step - GAP, 1), height, title))
    return bars


def per_minute(counts: Sequence[int], start: float, noun: str) -> Chart:
    """A count per minute since `start`, oldest first: "events", "failed attempts"."""
    labels = [clock(start + i * 60) for i in range(len(counts))]
    total, most = sum(counts), max(counts, default=0)
    if total:
        busiest = labels[counts.index(most)]
        words = (
            f"{total} {noun} in the last hour, {labels[0]} to now (UTC); "
            f"the busiest minute, {busiest}, had {most}"
        )
    else:
        words = f"No {noun} in the last hour"
    return Chart(
        words=words,
        rows=[(label, str(n)) for label, n in zip(labels, counts, strict=True) if n],
        bars=_bars(counts, [f"{label}: {n}" for label, n in zip(labels, counts, strict=True)]),
        lines=[],
        top=str(most),
        first=labels[0] if labels else "",
        last="now",
    )


def per_day(days: Sequence[tuple[str, int]], noun: str) -> Chart:
    """A count per day (YYYY-MM-DD), oldest first; the last one is today."""
    values = [n for _, n in days]
    labels = [day[5:] for day, _ in days]  # MM-DD
    spelled = ", ".join(f"{label}: {n}" for label, n in zip(labels, values, strict=True))
    return Chart(
        words=f"{noun} per day, the last {len(days)} days (UTC): {spelled}",
        rows=[(day, str(n)) for day, n in days],
        bars=_bars(values, [f"{day}: {n}" for day, n in days]),
        lines=[],
        top=str(max(values, default=0)),
        first=labels[0] if labels else "",
        last="today",
    )


def _path(values: Sequence[float | None], tallest: float) -> str:
    """An SVG path through the values (a point at the middle of each bucket), broken where one
    is missing; a bucket alone between gaps is a short dash across its middle."""
    step = WIDTH / max(1, len(values))
    parts = []
    for i, value in enumerate(values):
        if value is None:
            continue
        x, y = (i + 0.5) * step, HEIGHT - 1 - value / tallest * (HEIGHT - 2)
        after_gap = i == 0 or values[i - 1] is None
        if after_gap and (i + 1 == len(values) or values[i + 1] is None):
            parts.append(f"M{x - step / 4:.1f},{y:.1f} h{step / 2:.1f}")
        else:
            parts.append(f"{'M' if after_gap else 'L'}{x:.1f},{y:.1f}")
    return " ".join(parts)


def latency(buckets: Sequence[tuple[float, float] | None], start: float, size: float) -> Chart:
    """p50 and p95 per bucket of `size` seconds since `start`, oldest first."""
    labels = [clock(start + i * size) for i in range(len(buckets))]
    known = [(label, b) for label, b in zip(labels, buckets, strict=True) if b is not None]
    tallest = max((p95 for _, (_, p95) in known), default=0.0) or 1.0
    if known:
        spelled = "; ".join(
            f"{label} {duration(p50)} / {duration(p95)}" for label, (p50, p95) in known
        )
        words = f"Latency p50 / p95 per 5 minutes (UTC): {spelled}"
    else:
        words = "No attempts in the last hour"
    return Chart(
        words=words,
        rows=[(label, f"{duration(p50)} / {duration(p95)}") for label, (p50, p95) in known],
        bars=[],
        lines=[
            ("p95", _path([None if b is None else b[1] for b in buckets], tallest)),
            ("p50", _path([None if b is None else b[0] for b in buckets], tallest)),
        ],
        top=duration(tallest) if known else "",
        first=labels[0] if labels else "",
        last="now",
    )
