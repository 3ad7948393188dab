"""Redis stream destinations: each delivery is one XADD whose fields are the metadata plus the
raw body in `payload`; the entry id Redis answers is its confirmation (how durable the entry is
then depends on the server's own appendonly/save settings).

One connection pool per destination, sized by its concurrency; every connection the pool opens
resolves the host through the egress policy and connects to the address it checked (TLS still
verifies the name), so a broker that came back is reconnected to without keeping the policy
out of the loop. The pool replaces a pooled connection that the server closed while it sat
idle before sending on it (see `open`). redis-py's own retries are off (they would send a
command again whether or not it had reached the server): Hookyard's schedule retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig
from redis.typing import EncodableT, FieldT

from hookyard.deliver.broker import BrokerSender, connect_first
from hookyard.deliver.egress import EgressPolicy, resolve_host
from hookyard.deliver.message import Message
from hookyard.gateway import Destination


class _Guarded:
    """Resolves the host through the egress policy for each connection the pool opens, and
    connects to the checked address rather than the name."""

    host: str  # the name: kept for TLS and for error messages
    port: int

    def __init__(self, *, egress: EgressPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.egress = egress
        self._address = ""

    async def _connect(self) -> None:
        addresses = await resolve_host(self.egress, self.host, self.port)

        async def connect(address: str) -> None:
            self._address = address
            await super(_Guarded, self)._connect()  # type: ignore[misc]

        await connect_first(addresses, connect)

    def _connection_arguments(self) -> Mapping[str, Any]:
        arguments = dict(super()._connection_arguments())  # type: ignore[misc]
        if "ssl" in arguments:  # SNI and the certificate check are for the name
            arguments["server_hostname"] = self.host
        arguments["host"] = self._address
        return arguments


class GuardedConnection(_Guarded, Connection):
    pass


class GuardedSSLConnection(_Guarded, SSLConnection):
    pass


class RedisStreamSender(BrokerSender[Redis]):
    async def open(self, destination: Destination) -> Redis:
        options: dict[str, Any] = {
            "max_connections": destination.concurrency,
            "socket_connect_timeout": destination.timeout,
            "socket_timeout": destination.timeout,
        }
        options.update(parse_url(destination.url))  # the URL's own options win
        tls = options.pop("connection_class", Connection) is SSLConnection
        pool = ConnectionPool(
            connection_class=GuardedSSLConnection if tls else GuardedConnection,
            egress=destination.egress,
            retry=Retry(NoBackoff(), 0),
            # With maintenance notifications on (redis-py's "auto" for RESP3), the pool skips
            # its check that an idle connection is still open before handing it out, and a
            # Redis restart would fail the next attempt.
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
            **options,
        )
        return Redis.from_pool(pool)  # closing the client closes the pool

    async def publish(self, client: Redis, destination: Destination, message: Message) -> str:
        assert destination.stream is not None  # config.py requires it of redis destinations
        fields: dict[FieldT, EncodableT] = {name: value for name, value in message.metadata.items()}
        fields["payload"] = message.body
        entry = await client.xadd(
            destination.stream, fields, maxlen=destination.maxlen, approximate=True
        )
        return f"XADD {entry.decode() if isinstance(entry, bytes) else entry}"

    async def shut(self, client: Redis) -> None:
        await client.aclose()
