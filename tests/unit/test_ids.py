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
