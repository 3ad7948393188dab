"""/metrics: one series per label set, whatever the queue's rows look like."""

from __future__ import annotations

from hookyard.api.metrics import _oldest_due


def test_one_oldest_due_series_per_destination_with_the_oldest_of_its_statuses() -> None:
    now = 1_000_000.0
    queue = {
        ("app", "pending"): (2, now - 5),
        ("app", "retrying"): (1, now - 50),  # the older: the one the series shows
        ("app", "in_flight"): (1, None),
        ("later", "retrying"): (1, now + 10),  # not due yet: no series
    }
    assert _oldest_due(queue, now) == [("app", now - 50)]
