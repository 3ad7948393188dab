"""RabbitMQ (AMQP 0-9-1) destinations: a persistent message published to the destination's
exchange with publisher confirms and `mandatory`, so success means the broker took
responsibility for it, and a message no queue is bound for comes back as a failure instead of
vanishing.

A plain connection, not aio-pika's robust one: during an outage a publish fails at once and
Hookyard's schedule retries it (a robust connection would hold it, invisible, until the broker
is back). A closed connection is replaced (before sending, when it is found closed as a
delivery starts); a closed channel (a missing exchange closes it) is reopened on the same
connection. The connection goes to the addresses the egress policy checked, through a
transport of our own (amqps verifies the certificate against the URL's host name).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aio_pika.exceptions import AMQPConnectionError, DeliveryError, PublishError
from aiormq import ChannelInvalidStateError, SSLContextProvider, TransportFactory
from yarl import URL

from hookyard.deliver.broker import BrokerError, BrokerSender, Unsent, connect_first, endpoint
from hookyard.deliver.egress import resolve_host
from hookyard.deliver.message import Message, render
from hookyard.gateway import Destination

SHORTSTR = 255  # bytes: the longest AMQP property value of type shortstr (type, content type)
CLOSED = "RabbitMQ closed the connection; the next attempt reconnects"


class _Checked(TransportFactory):
    """Opens the connection to addresses the egress policy checked, in order, instead of
    letting aiormq resolve the URL's host again."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    async def create(
        self, url: URL, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        provider: SSLContextProvider = kwargs.pop("ssl_context_provider")
        tls = await provider.get_context() if url.scheme == "amqps" else None

        async def connect(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection(
                address,
                url.port,
                ssl=tls,
                server_hostname=url.host if tls is not None else None,
                **kwargs,
            )

        try:
            return await connect_first(self.addresses, connect)
        except OSError as exc:  # as aiormq's own transports word it
            raise AMQPConnectionError(*exc.args) from exc


class AmqpClient:
    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection
        self._channel: AbstractChannel | None = None
        self._opening = asyncio.Lock()
        # Returned messages are matched to their publish by message id (the event id), so two
        # publishes of one event never share the channel at once.
        self._locks: dict[str, asyncio.Lock] = {}
        self._holders: Counter[str] = Counter()

    async def exchange(self, name: str) -> AbstractExchange:
        async with self._opening:
            if self._channel is None or self._channel.is_closed:
                self._channel = await self.connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
        if name == "":
            return self._channel.default_exchange
        return await self._channel.get_exchange(name, ensure=False)

    @contextlib.asynccontextmanager
    async def exclusive(self, message_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(message_id, asyncio.Lock())
        self._holders[message_id] += 1
        try:
            async with lock:
                yield
        finally:
            self._holders[message_id] -= 1
            if not self._holders[message_id]:
                del self._holders[message_id], self._locks[message_id]


class AmqpSender(BrokerSender[AmqpClient]):
    async def open(self, destination: Destination) -> AmqpClient:
        host, port = endpoint(destination.url)
        addresses = await resolve_host(destination.egress, host, port)
        # What aio_pika.connect does, plus a transport factory (it passes on no such option).
        connection = aio_pika.Connection(
            URL(destination.url),
            client_properties={"connection_name": f"hookyard destination {destination.name}"},
        )
        connection.kwargs["transport_factory"] = _Checked(addresses)
        await connection.connect(timeout=destination.timeout)
        return AmqpClient(connection)

    async def publish(self, client: AmqpClient, destination: Destination, message: Message) -> str:
        assert destination.exchange is not None  # config.py requires it of amqp destinations
        routing_key = render(destination.routing_key, message)
        event_type = message.event_type or ""
        # The provider's Content-Type goes in the property, unless too long for it: then it
        # stays among the headers, like the rest of the metadata.
        content_type = message.metadata["content-type"]
        fits = len(content_type.encode()) <= SHORTSTR
        body = aio_pika.Message(
            message.body,
            headers={k: v for k, v in message.metadata.items() if k != "content-type" or not fits},
            content_type=content_type if fits else None,
            message_id=message.event_id,
            timestamp=datetime.fromtimestamp(message.timestamp, UTC),
            type=event_type if 0 < len(event_type.encode()) <= SHORTSTR else None,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            exchange = await client.exchange(destination.exchange)  # no message sent yet
        except Exception as exc:
            if self.broken(client):
                raise Unsent(CLOSED) from exc
            raise
        async with client.exclusive(message.event_id):
            try:
                if self.broken(client):  # it died while this publish waited for its turn
                    raise Unsent(CLOSED)
                await exchange.publish(
                    body, routing_key, mandatory=True, timeout=destination.timeout
                )
            except ChannelInvalidStateError as exc:
                # aiormq raises it only before queueing any frame of the message (the channel
                # was found closed, possibly while waiting for the channel's lock).
                if self.broken(client):
                    raise Unsent(CLOSED) from exc
                raise
            except PublishError:
                raise BrokerError(
                    f"no queue is bound to exchange {destination.exchange!r} with routing key "
                    f"{routing_key!r}: RabbitMQ returned the message"
                ) from None
            except DeliveryError as exc:
                frame = type(exc.frame).__name__ if exc.frame is not None else "no confirm"
                raise BrokerError(f"RabbitMQ refused the message ({frame})") from None
        return "RabbitMQ confirm"

    def broken(self, client: AmqpClient) -> bool:
        # A close by the broker only clears `connected`; `is_closed` follows our own close().
        connection = client.connection
        return connection.is_closed or not connection.connected.is_set()

    async def shut(self, client: AmqpClient) -> None:
        await client.connection.close()
