"""Periodic housekeeping inside `hookyard serve`: expiring dedup keys past their window, and
refreshing the query planner's statistics. Processes sharing a database take turns through the
store's job table: each run happens once per interval across all of them.

Deletes go in small batches so that each write transaction stays short and ingest never waits
long behind one.
"""

from __future__ import annotations

import asyncio
import logging
import time

from hookyard.ids import node_name
from hookyard.state import AppState

log = logging.getLogger("hookyard.maintenance")
BATCH = 5000


async def expire_dedup_keys(state: AppState) -> int:
    """Remove every dedup key older than the window; returns how many went."""
    cutoff = time.time() - state.gateway.settings.server.dedup_window
    total = 0
    while True:
        removed = await state.store.expire_dedup(cutoff, BATCH)
        total += removed
        if removed < BATCH:
            return total
        await asyncio.sleep(0)  # let queued ingest writes go first


async def run_maintenance(state: AppState, interval: float = 600.0) -> None:
    while True:
        try:
            if await state.store.take_job("maintenance", interval, node_name()):
                removed = await expire_dedup_keys(state)
                if removed:
                    log.info("expired %d dedup keys older than the window", removed)
                await state.store.analyze()  # the planner's statistics follow the data
        except Exception:
            log.exception("maintenance failed; trying again next interval")
        # Look often: when the process that ran the job last is gone, another takes over.
        await asyncio.sleep(interval / 10)
