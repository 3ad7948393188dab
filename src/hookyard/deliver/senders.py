"""The worker's one sender: it picks the transport by the destination's kind (its URL's
scheme), HTTP or a broker, and closes them all on shutdown. A broker's sender, and its client
library, are loaded on the first delivery to such a destination: redis-py alone takes 0.3 s to
import, which no HTTP-only setup (or CLI command) should pay."""

from __future__ import annotations

import time
from typing import Any

from hookyard.deliver.broker import BrokerSender
from hookyard.deliver.http import HttpSender, Response
from hookyard.deliver.message import broker_message
from hookyard.gateway import Destination, Source
from hookyard.models import Claim, EventData


def _broker(kind: str) -> BrokerSender[Any]:
    if kind == "redis":
        from hookyard.deliver.redis_stream import RedisStreamSender

        return RedisStreamSender()
    if kind == "amqp":
        from hookyard.deliver.amqp import AmqpSender

        return AmqpSender()
    if kind == "nats":
        from hookyard.deliver.nats_js import JetStreamSender

        return JetStreamSender()
    raise ValueError(f"no sender for destinations of kind {kind!r}")


class Senders:
    def __init__(self, http: HttpSender | None = None) -> None:
        self.http = http or HttpSender()
        self._brokers: dict[str, BrokerSender[Any]] = {}

    async def send(
        self,
        claim: Claim,
        destination: Destination,
        event: EventData,
        source: Source | None,
        trace_headers: dict[str, str] | None = None,
    ) -> Response:
        if destination.kind == "http":
            return await self.http.send(destination, event, source, trace_headers)
        broker = self._brokers.get(destination.kind)
        if broker is None:
            broker = self._brokers[destination.kind] = _broker(destination.kind)
        message = broker_message(
            event, destination.signing_keys, claim.delivery_id, int(time.time()), trace_headers
        )
        return await broker.send(destination, message)

    async def close(self) -> None:
        await self.http.close()
        for broker in self._brokers.values():
            await broker.close()
