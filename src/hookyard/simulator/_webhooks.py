"""Change webhooks, signed like Standard Webhooks, with the unreliability knobs applied.

Every fate (dropped, duplicated, held back, delayed) is drawn from the seeded RNG when the change
happens, so a seed reproduces them. POSTs go out one at a time, in order, through a FIFO lock:
without knobs the receiver sees changes in the order they happened, so any disorder a test sees
comes from the knobs it turned.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from hookyard.deliver.signing import standard_signature
from hookyard.simulator._types import SimulatorOptions, Stats

log = logging.getLogger("hookyard.simulator")

RETRY_INTERVAL = 1.0  # seconds between attempts when webhook_retries > 0


@dataclass(slots=True)
class _Webhook:
    id: str
    body: bytes
    record: dict[str, Any]  # what Stats lists: webhook_id, type, object_id, version
    duplicate: bool
    hold: bool
    delay: float


class WebhookSender:
    def __init__(self, options: SimulatorOptions, key: bytes, stats: Stats, rng: random.Random):
        assert options.webhook_url is not None
        self._url = options.webhook_url
        self._options = options
        self._key = key
        self._stats = stats
        self._rng = rng
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: list[_Webhook] = []  # reordered: sent once the next webhook has been
        self._pending: list[_Webhook] = []  # changes made before start()

    def schedule(self, type_: str, obj: dict[str, Any]) -> None:
        """Decide the webhook's fate now (the object is serialized as it is now), send later."""
        drop, duplicate, hold, delay = (self._rng.random() for _ in range(4))
        webhook_id = "evt_" + secrets.token_hex(12)  # unique across runs: receivers dedup on it
        record = {
            "webhook_id": webhook_id,
            "type": type_,
            "object_id": obj["id"],
            "version": obj["version"],
        }
        if drop < self._options.drop:
            self._stats.webhooks_dropped.append(record)
            return
        payload = {"id": webhook_id, "type": type_, "created_at": obj["updated_at"], "data": obj}
        webhook = _Webhook(
            webhook_id,
            orjson.dumps(payload),
            record,
            duplicate=duplicate < self._options.duplicate,
            hold=hold < self._options.reorder,
            delay=delay * self._options.delay,
        )
        if self._session is None:
            self._pending.append(webhook)
        else:
            self._spawn(webhook, released=False)

    async def start(self) -> None:
        self._lock = asyncio.Lock()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        pending, self._pending = self._pending, []
        for webhook in pending:
            self._spawn(webhook, released=False)

    async def stop(self) -> None:
        """Cancel whatever has not been sent yet; idempotent."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._held.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def flush(self, timeout: float) -> None:
        """Wait until every scheduled webhook was sent; held ones go when nothing else will."""
        if self._pending:
            raise RuntimeError("webhooks are waiting for the simulator to start")
        async with asyncio.timeout(timeout):
            while self._tasks or self._held:
                if self._tasks:
                    await asyncio.wait(set(self._tasks))
                else:
                    self._release()

    def _spawn(self, webhook: _Webhook, *, released: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._run(webhook, released))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _release(self) -> None:
        held, self._held = self._held, []
        for webhook in held:
            self._spawn(webhook, released=True)

    async def _run(self, webhook: _Webhook, released: bool) -> None:
        if not released:
            if webhook.delay:
                await asyncio.sleep(webhook.delay)
            if webhook.hold:
                self._held.append(webhook)
                return
        if await self._send(webhook):
            self._stats.webhooks_sent.append(webhook.record)
            if webhook.duplicate and await self._send(webhook):
                self._stats.duplicates_sent.append(webhook.id)
        if not released:
            self._release()

    async def _send(self, webhook: _Webhook) -> bool:
        """POST with the configured retries; True if the receiver answered at all."""
        answered = False
        for attempt in range(self._options.webhook_retries + 1):
            if attempt:
                await asyncio.sleep(RETRY_INTERVAL)
            async with self._lock:  # not held while waiting to retry: others go meanwhile
                status = await self._post(webhook)
            answered = answered or status is not None
            if status is not None and 200 <= status < 300:
                break
        return answered

    async def _post(self, webhook: _Webhook) -> int | None:
        assert self._session is not None
        timestamp = int(time.time())  # at send time, as receivers check it against their clock
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "hookyard-simulator",
            "webhook-id": webhook.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_signature(self._key, webhook.id, timestamp, webhook.body),
        }
        try:
            async with self._session.post(self._url, data=webhook.body, headers=headers) as resp:
                await resp.read()
                return resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("webhook %s to %s failed: %r", webhook.id, self._url, exc)
            return None
