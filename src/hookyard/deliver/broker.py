"""What the broker senders share: one client per destination, opened on demand after an egress
check and dropped once the broker went away, so the next attempt reconnects (and checks egress
again); and one attempt turned into a Response like HTTP's: confirmed, or an error that
Hookyard's own retry schedule acts on.

Clients never retry or buffer a publish by themselves: a delivery that was not confirmed
within the destination's timeout is a failed attempt, visible and retried on schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from typing import Generic, TypeVar

from yarl import URL

from hookyard.deliver.egress import EgressPolicy, EgressRefused, check_host
from hookyard.deliver.http import Response
from hookyard.deliver.message import Message, failure
from hookyard.gateway import Destination

Client = TypeVar("Client")
DEFAULT_PORTS = {
    "redis": 6379,
    "rediss": 6379,
    "amqp": 5672,
    "amqps": 5671,
    "nats": 4222,
    "tls": 4222,
}
CLOSE_TIMEOUT = 5.0  # a dropped client's close may wait on a broker that is gone


class BrokerError(Exception):
    """A failure the broker reported in its own terms, already worded for the attempt log."""


class BrokerSender(ABC, Generic[Client]):
    def __init__(self) -> None:
        # destination -> ((url, egress, timeout, concurrency) it was opened with, client)
        self._clients: dict[str, tuple[tuple[str, EgressPolicy, float, int], Client]] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._closing: set[asyncio.Task[None]] = set()

    @abstractmethod
    async def open(self, destination: Destination) -> Client:
        """Connect to the destination's broker (egress already checked)."""

    @abstractmethod
    async def publish(self, client: Client, destination: Destination, message: Message) -> str:
        """Publish and wait for the broker's confirmation; return what it said."""

    @abstractmethod
    async def shut(self, client: Client) -> None:
        """Close the client."""

    def broken(self, client: Client) -> bool:
        """After a failed attempt: must the next one reconnect?"""
        return False

    async def send(self, destination: Destination, message: Message) -> Response:
        started = time.perf_counter()
        if destination.refused is not None:
            return Response(None, None, f"EgressRefused: {destination.refused}", 0.0)
        client: Client | None = None
        try:
            async with asyncio.timeout(destination.timeout):
                client = await self._client(destination)
                said = await self.publish(client, destination, message)
        except Exception as exc:
            timed_out = isinstance(exc, TimeoutError)
            if client is not None and (timed_out or self.broken(client)):
                self._drop(destination.name, client)  # the connection's state is unknown
            if timed_out:
                error = f"timed out after {destination.timeout:g}s"
            else:
                error = _describe(exc, destination.url)
            return Response(None, None, error, _ms(started))
        return Response(None, said, None, _ms(started), confirmed=True)

    async def _client(self, destination: Destination) -> Client:
        # A reload that changes any of these opens a new client (the pool is sized by
        # concurrency).
        opened_with = (
            destination.url,
            destination.egress,
            destination.timeout,
            destination.concurrency,
        )
        current = self._clients.get(destination.name)
        if current is not None and current[0] == opened_with:
            return current[1]
        async with self._opening.setdefault(destination.name, asyncio.Lock()):
            current = self._clients.get(destination.name)
            if current is not None and current[0] == opened_with:
                return current[1]  # another attempt opened it meanwhile
            if current is not None:  # a reload changed the URL or the policy
                self._drop(destination.name, current[1])
            url = URL(destination.url)
            port = url.port or DEFAULT_PORTS[url.scheme]
            await check_host(destination.egress, url.host or "", port)
            client = await self.open(destination)
            self._clients[destination.name] = (opened_with, client)
            return client

    def _drop(self, name: str, client: Client) -> None:
        current = self._clients.get(name)
        if current is not None and current[1] is client:
            del self._clients[name]
        task = asyncio.get_running_loop().create_task(self._shut(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _shut(self, client: Client) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.shut(client), CLOSE_TIMEOUT)

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for _, client in clients.values():
            await self._shut(client)
        if self._closing:
            await asyncio.wait(list(self._closing))


def _describe(exc: BaseException, url: str) -> str:
    """The attempt's error: a refusal by the egress policy as HTTP words it, wherever in the
    chain the client library wrapped it; a broker's own words as they are."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, EgressRefused):
            return f"EgressRefused: {cause}"
        cause = cause.__cause__
    if isinstance(exc, BrokerError):
        return str(exc)
    return failure(exc, url)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
