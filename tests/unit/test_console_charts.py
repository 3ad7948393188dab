"""The console's charts: geometry within the viewBox, and the numbers in words and rows."""

from __future__ import annotations

from datetime import UTC, datetime

from hookyard.console import charts

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC).timestamp()


def test_per_minute_scales_to_the_busiest_minute_and_says_so() -> None:
    counts = [0] * 60
    counts[3], counts[59] = 40, 2
    chart = charts.per_minute(counts, START, "events")
    assert chart.words == (
        "42 events in the last hour, 12:00 to now (UTC); the busiest minute, 12:03, had 40"
    )
    assert chart.rows == [("12:03", "40"), ("12:59", "2")]
    assert len(chart.bars) == 60
    assert chart.bars[3].height == charts.HEIGHT - 1 and chart.bars[3].y == 1
    assert chart.bars[59].height >= 1  # a small count stays visible
    assert chart.bars[0].height == 0
    assert all(b.x + b.width <= charts.WIDTH for b in chart.bars)
    assert chart.bars[3].title == "12:03: 40"
    quiet = charts.per_minute([0] * 60, START, "failed attempts")
    assert quiet.words == "No failed attempts in the last hour"
    assert quiet.rows == []


def test_per_day_lists_every_day() -> None:
    chart = charts.per_day([("2026-01-01", 5), ("2026-01-02", 0), ("2026-01-03", 10)], "API calls")
    assert chart.words == "API calls per day, the last 3 days (UTC): 01-01: 5, 01-02: 0, 01-03: 10"
    assert [r[1] for r in chart.rows] == ["5", "0", "10"]
    assert (chart.first, chart.last, chart.top) == ("01-01", "today", "10")


def test_latency_lines_break_where_a_bucket_is_empty() -> None:
    buckets: list[tuple[float, float] | None] = [None] * 12
    buckets[0], buckets[1], buckets[5] = (10.0, 20.0), (12.0, 40.0), (30.0, 35.0)
    chart = charts.latency(buckets, START, 300)
    lines = dict(chart.lines)
    assert lines["p95"].count("M") == 2  # two runs: buckets 0-1, and 5 alone
    assert lines["p95"].startswith("M10.0,") and " L30.0," in lines["p95"]  # bucket middles
    assert lines["p95"].endswith(" M105.0,6.8 h10.0")  # the lone bucket: a dash
    assert chart.top == "40 ms"
    assert chart.words == (
        "Latency p50 / p95 per 5 minutes (UTC): 12:00 10 ms / 20 ms; 12:05 12 ms / 40 ms;"
        " 12:25 30 ms / 35 ms"
    )
    assert chart.rows[1] == ("12:05", "12 ms / 40 ms")
    empty = charts.latency([None] * 12, START, 300)
    assert empty.words == "No attempts in the last hour"
    assert dict(empty.lines) == {"p95": "", "p50": ""}
