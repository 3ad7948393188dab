"""The retry policy: the schedule, jitter and Retry-After."""

from __future__ import annotations

from hookyard.deliver.retry import next_delay


def test_retry_schedule_counts_the_first_attempt_and_jitters():
    schedule = (0.0, 5.0, 300.0)
    assert next_delay(schedule, 1, 0) == 5.0
    assert next_delay(schedule, 2, 0) == 300.0
    assert next_delay(schedule, 3, 0) is None
    delays = [next_delay(schedule, 2, 0.2) for _ in range(200)]
    assert all(240 <= d <= 360 for d in delays if d is not None)
    assert len(set(delays)) > 1
