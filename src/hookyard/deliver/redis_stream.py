"""Redis stream destinations: each delivery is one XADD whose fields are the metadata plus the
raw body in `payload`; the entry id Redis answers is its confirmation (how durable the entry is
then depends on the server's own appendonly/save settings).

One connection pool per destination, sized by its concurrency; every connection the pool opens
checks the egress policy first, so a broker that came back is reconnected to without keeping
the policy out of the loop. redis-py's own retries are off: Hookyard's schedule retries.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection, SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.typing import EncodableT, FieldT

from hookyard.deliver.broker import BrokerSender
from hookyard.deliver.egress import EgressPolicy, check_host
from hookyard.deliver.message import Message
from hookyard.gateway import Destination


class _Guarded:
    """Checks the egress policy before each connection the pool opens."""

    host: str
    port: int

    def __init__(self, *, egress: EgressPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.egress = egress

    async def _connect(self) -> None:
        await check_host(self.egress, self.host, self.port)
        await super()._connect()  # type: ignore[misc]


class GuardedConnection(_Guarded, Connection):
    pass


class GuardedSSLConnection(_Guarded, SSLConnection):
    pass


class RedisStreamSender(BrokerSender[Redis]):
    async def open(self, destination: Destination) -> Redis:
        options: dict[str, Any] = dict(parse_url(destination.url))
        tls = options.pop("connection_class", Connection) is SSLConnection
        pool = ConnectionPool(
            connection_class=GuardedSSLConnection if tls else GuardedConnection,
            egress=destination.egress,
            max_connections=destination.concurrency,
            socket_connect_timeout=destination.timeout,
            socket_timeout=destination.timeout,
            retry=Retry(NoBackoff(), 0),
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
