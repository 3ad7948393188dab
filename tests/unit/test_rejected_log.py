"""The rejected log's buffer: a flush returns only once what was added before it is stored, and
what waits for a stuck database is capped."""

from __future__ import annotations

import asyncio

import pytest

from hookyard.models import Rejected
from hookyard.rejected import MAX_BUFFERED, RejectedLog


def row(n: int) -> Rejected:
    return Rejected(
        f"rej_{n}", "src", 0.0, 401, "bad_signature", "no", "POST", "/in/src", "", b"[]", None,
        b"", 0,
    )  # fmt: skip


class SlowSink:
    def __init__(self) -> None:
        self.stored: list[str] = []
        self.release = asyncio.Event()

    async def record_rejected(self, rows: list[Rejected], keep: int) -> None:
        if not self.stored and "rej_1" in [r.id for r in rows]:
            await self.release.wait()  # only the first write is slow
        self.stored += [r.id for r in rows]


async def test_a_flush_waits_for_one_already_writing() -> None:
    sink = SlowSink()
    rejected = RejectedLog(sink, keep=100, per_second=20)
    rejected.add(row(1))
    background = asyncio.create_task(rejected.flush())  # the periodic flush, mid-write
    await asyncio.sleep(0)
    rejected.add(row(2))
    asked = asyncio.create_task(rejected.flush())
    await asyncio.sleep(0.01)
    assert not asked.done()  # row 1 is not stored yet: the second flush must not return
    sink.release.set()
    await asked
    assert sink.stored == ["rej_1", "rej_2"]
    await background


async def test_while_the_database_is_stuck_the_buffer_is_capped_and_drops_are_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = SlowSink()
    rejected = RejectedLog(sink, keep=100_000, per_second=20)
    rejected.add(row(1))
    stuck = asyncio.create_task(rejected.flush())  # the database hangs on this write
    await asyncio.sleep(0)
    for n in range(2, MAX_BUFFERED + 12):  # rejections keep coming meanwhile
        rejected.add(row(n))
    assert rejected.dropped == 10
    assert "dropping more until they are written" in caplog.text
    sink.release.set()  # the database answers again
    await stuck
    await rejected.flush()
    assert sink.stored == [f"rej_{n}" for n in range(1, MAX_BUFFERED + 2)]  # the first ones
    assert "dropped 10 rejected-request samples" in caplog.text
