"""Templates and the small formatting helpers they use.

Autoescaping is on for every template and nothing from a provider, a request or the database
is ever marked safe: an event type or a body holding markup is shown as text.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.responses import HTMLResponse

SPARK_WIDTH, SPARK_HEIGHT = 120, 28


def utc(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(seconds: float | None) -> str:
    return "" if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


def age(seconds: float | None) -> str:
    """How long ago, in the largest whole unit: 45 s, 12 min, 3 h, 2 d."""
    if seconds is None:
        return "—"
    elapsed = max(0.0, time.time() - seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if elapsed >= size:
            return f"{int(elapsed // size)} {unit}"
    return f"{int(elapsed)} s"


def ahead(seconds: float | None) -> str:
    """How long until, in the largest whole unit: in 12 min; "due now" once it has passed."""
    if seconds is None:
        return "—"
    remaining = seconds - time.time()
    if remaining < 1:
        return "due now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if remaining >= size:
            return f"in {int(remaining // size)} {unit}"
    return f"in {int(remaining)} s"


def duration(ms: float | None) -> str:
    if ms is None:
        return "—"
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{fraction * 100:.1f} %"


def spark_points(counts: Sequence[int]) -> str:
    """An SVG polyline's points for counts, oldest left, scaled to the tallest."""
    tallest = max(counts, default=0) or 1
    step = SPARK_WIDTH / max(1, len(counts) - 1)
    return " ".join(
        f"{i * step:.1f},{SPARK_HEIGHT - 1 - (n / tallest) * (SPARK_HEIGHT - 2):.1f}"
        for i, n in enumerate(counts)
    )


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("hookyard.console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,  # a misspelt name fails the tests instead of rendering ""
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(utc=utc, iso=iso, age=age, ahead=ahead, duration=duration, percent=percent)
    env.globals.update(
        spark_points=spark_points, spark_width=SPARK_WIDTH, spark_height=SPARK_HEIGHT
    )
    return env


ENVIRONMENT = _environment()


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = ENVIRONMENT.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status)
