"""The rejected-request log: bounded, sampled, and written off the commit path.

Every rejection is counted; at most `per_second` per source (and a few times that in total) are
kept as samples, and samples reach the database in one write per flush interval. A flood of bad
requests therefore costs the writer one small transaction per interval, not one per request.
While the database is slow or stuck, a bounded number of samples wait in memory; the rest are
dropped (the rejections are still counted), and the drops logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Protocol

from hookyard.models import Rejected

log = logging.getLogger("hookyard.rejected")
BODY_SAMPLE = 64 * 1024
GLOBAL_FACTOR = 5  # all sources together keep at most this many times the per-source rate
# Samples waiting for the database, at most: ten seconds of the default sampling of all sources
# together (20 per source, GLOBAL_FACTOR times that), up to 64 MiB with bodies of BODY_SAMPLE.
# A higher per_second raises it to two seconds of sampling: a healthy database, written every
# half second, never sees a drop.
MAX_BUFFERED = 1000


class _Sink(Protocol):
    async def record_rejected(self, rows: list[Rejected], keep: int) -> None: ...


VERIFICATION_CODES = frozenset(
    {"missing_signature", "bad_signature", "stale_timestamp", "bad_credentials"}
)
SpikeHandler = Callable[[str, int, float], Awaitable[None]]  # source, failures, window seconds


class RejectedLog:
    def __init__(
        self,
        sink: _Sink,
        *,
        keep: int,
        per_second: int,
        interval: float = 0.5,
        spike_threshold: int = 0,
        spike_window: float = 60.0,
        on_spike: SpikeHandler | None = None,
    ) -> None:
        self._sink = sink
        self.keep = keep
        self.per_second = per_second
        self._interval = interval
        self._buffer: list[Rejected] = []
        self.dropped = 0  # samples dropped with the buffer full, since the start
        self._dropping = 0  # of them, since the last flush logged them
        self._second = 0
        self._taken: Counter[str] = Counter()
        self._taken_total = 0
        self.counts: Counter[tuple[str, str]] = Counter()  # (source, code) -> rejections
        self._task: asyncio.Task[None] | None = None
        # Verification failures per source in the current window, for the spike alert.
        self.spike_threshold = spike_threshold  # 0: no alert
        self._spike_window = spike_window
        self._on_spike = on_spike
        self._failures: Counter[str] = Counter()
        self._window_start = time.monotonic()
        self._alerted: dict[str, float] = {}
        self._flushing = asyncio.Lock()

    def sample(self, source: str, code: str, received_at: float) -> bool:
        """Count a rejection; True when it should be kept (then pass its row to `add`). Asked
        first so that a flood costs no more than a counter for the rejections not kept."""
        self.counts[(source, code)] += 1
        if code in VERIFICATION_CODES:
            self._failures[source] += 1
        if self.keep == 0:
            return False
        second = int(received_at)
        if second != self._second:
            self._second = second
            self._taken.clear()
            self._taken_total = 0
        if (
            self._taken[source] >= self.per_second
            or self._taken_total >= self.per_second * GLOBAL_FACTOR
        ):
            return False
        self._taken[source] += 1
        self._taken_total += 1
        return True

    def add(self, row: Rejected) -> None:
        if len(self._buffer) >= max(MAX_BUFFERED, 2 * self.per_second * GLOBAL_FACTOR):
            if not self._dropping:
                log.warning(
                    "%d rejected-request samples wait for the database; dropping more until "
                    "they are written",
                    len(self._buffer),
                )
            self.dropped += 1
            self._dropping += 1
            return
        self._buffer.append(row)

    async def flush(self) -> None:
        """Write what is buffered; on return, every row added before the call is stored (a
        flush already writing is waited for, not taken for done)."""
        async with self._flushing:
            if not self._buffer:
                return
            rows, self._buffer = self._buffer, []
            if self._dropping:  # room again (more may be dropped while these are written)
                log.warning(
                    "dropped %d rejected-request samples: the buffer was full", self._dropping
                )
                self._dropping = 0
            try:
                await self._sink.record_rejected(rows, self.keep)
            except Exception as exc:  # losing samples must never affect ingest
                log.warning("could not record %d rejected requests: %s", len(rows), exc)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hookyard-rejected-log")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()
            await self.check_spikes()

    async def check_spikes(self, now: float | None = None) -> None:
        """At the end of each window, alert for sources whose verification failures reached
        the threshold: once per source per ten windows, so a sustained attack is one alert."""
        now = time.monotonic() if now is None else now
        if now - self._window_start < self._spike_window:
            return
        failures, self._failures = self._failures, Counter()
        window, self._window_start = now - self._window_start, now
        if not self.spike_threshold or self._on_spike is None:
            return
        for source, count in failures.items():
            quiet_since = self._alerted.get(source)
            if count < self.spike_threshold or (
                quiet_since is not None and now - quiet_since < 10 * self._spike_window
            ):
                continue
            self._alerted[source] = now
            await self._on_spike(source, count, window)
