"""What the broker senders share: one client per destination, opened on demand and dropped once
the broker went away, so that it is reconnected to (and egress checked again); and one attempt
turned into a Response like HTTP's: confirmed, or an error that Hookyard's own retry schedule
acts on.

A client connects to the addresses that `resolve_host` checked against the egress policy,
never to the name (its library would resolve the name again: DNS rebinding); TLS still
verifies the name.

A broker that restarted while its client sat idle costs no attempt: a client whose
connection is found gone when a delivery starts is replaced before sending, and a publish
that failed because the connection died before any of the message was written (`Unsent`) is
sent once more on a new connection within the same attempt. Any other failure may have
reached the broker, so the attempt fails: clients never retry or buffer a publish by
themselves, and a delivery that was not confirmed within the destination's timeout is a
failed attempt, visible and retried on schedule (at least once, never a hidden duplicate).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from yarl import URL

from hookyard.deliver.egress import EgressPolicy, EgressRefused
from hookyard.deliver.http import Response
from hookyard.deliver.message import Message, failure
from hookyard.gateway import Destination

Client = TypeVar("Client")
T = TypeVar("T")
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


class Unsent(BrokerError):
    """A publish that failed before any of the message was written, because the connection
    had died: sending it again on a new connection cannot make a duplicate."""


class BrokerSender(ABC, Generic[Client]):
    def __init__(self) -> None:
        # destination -> ((url, egress, timeout, concurrency) it was opened with, client)
        self._clients: dict[str, tuple[tuple[str, EgressPolicy, float, int], Client]] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._closing: set[asyncio.Task[None]] = set()

    @abstractmethod
    async def open(self, destination: Destination) -> Client:
        """Connect to the destination's broker, at addresses from `resolve_host`."""

    @abstractmethod
    async def publish(self, client: Client, destination: Destination, message: Message) -> str:
        """Publish and wait for the broker's confirmation; return what it said. Raise Unsent
        only when the connection is gone and nothing of the message was written."""

    @abstractmethod
    async def shut(self, client: Client) -> None:
        """Close the client."""

    def broken(self, client: Client) -> bool:
        """Is the client's connection gone (closed by the broker, or cut)? Then it is replaced:
        before a delivery is sent with it, and after an attempt that failed."""
        return False

    async def send(self, destination: Destination, message: Message) -> Response:
        started = time.perf_counter()
        if destination.refused is not None:
            return Response(None, None, f"EgressRefused: {destination.refused}", 0.0)
        client: Client | None = None
        try:
            async with asyncio.timeout(destination.timeout):
                client = await self._client(destination)
                try:
                    said = await self.publish(client, destination, message)
                except Unsent:
                    # The connection died after `_client` found it alive, before the message
                    # was written: once more on a new one, within this attempt's timeout.
                    self._drop(destination.name, client)
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
        # A client whose connection died while idle (a broker restart) is replaced before
        # sending, so the restart costs no attempt.
        current = self._clients.get(destination.name)
        if current is not None and current[0] == opened_with and not self.broken(current[1]):
            return current[1]
        async with self._opening.setdefault(destination.name, asyncio.Lock()):
            current = self._clients.get(destination.name)
            if current is not None and current[0] == opened_with and not self.broken(current[1]):
                return current[1]  # another attempt opened it meanwhile
            if current is not None:  # gone, or a reload changed the URL or the policy
                self._drop(destination.name, current[1])
            client = await self.open(destination)
            self._clients[destination.name] = (opened_with, client)
            return client

    def _drop(self, name: str, client: Client) -> None:
        current = self._clients.get(name)
        if current is None or current[1] is not client:
            return  # already dropped (and being shut) by another attempt
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


def endpoint(url: str) -> tuple[str, int]:
    """A broker URL's host (brackets stripped from an IPv6 literal) and port."""
    parsed = URL(url)
    return parsed.host or "", parsed.port or DEFAULT_PORTS[parsed.scheme]


async def connect_first(addresses: list[str], connect: Callable[[str], Awaitable[T]]) -> T:
    """Connect to the first of `addresses` that takes the connection, in order, as a client
    given the name would have; the last one's failure if none does."""
    for address in addresses[:-1]:
        try:
            return await connect(address)
        except OSError:
            continue
    return await connect(addresses[-1])


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
