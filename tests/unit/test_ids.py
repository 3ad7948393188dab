from __future__ import annotations

import time

from hookyard.ids import id_floor, new_id


def test_ids_are_unique_increasing_and_time_ordered() -> None:
    ids = [new_id("evt") for _ in range(10_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 30 and i.startswith("evt_") for i in ids)
    now = time.time()
    assert id_floor("evt", now - 5) < ids[0] < ids[-1] < id_floor("evt", now + 5)


def test_id_floor_clamps_times_outside_the_ids_range() -> None:
    """A retention age longer than the epoch puts the cutoff before 1970: it must sort below
    every id (it wrapped to a negative number's bits, above them all, and a sweep removed
    everything)."""
    now = time.time()
    an_id = new_id("evt")
    assert id_floor("evt", now - 100 * 365 * 86400) < an_id
    assert id_floor("evt", -1e12) == id_floor("evt", 0) < an_id
    assert id_floor("evt", 1e15) > an_id
    assert id_floor("evt", 1e15) == id_floor("evt", 1e16)
