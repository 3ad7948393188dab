"""Broker benchmark: a queue drained to Redis, RabbitMQ and NATS JetStream next to the same
queue drained to the HTTP sink (the delivery block's drain), in the same run.

Each drain: a fresh `hookyard serve` (SQLite) with one destination `sink` (concurrency 64),
paused, filled with distinct 1 KB events, then resumed; the clock runs from the resume call
until every delivery has succeeded. HTTP: the nginx sink. Brokers: the machine's Redis
(127.0.0.1:6379, a stream of the run's own), RabbitMQ (127.0.0.1:5672, guest, a durable topic
exchange with one durable queue bound, so every message is routable and confirmed persisted)
and NATS (127.0.0.1:4222, a JetStream file stream of the run's own); afterwards the broker must
hold exactly the queued messages, and the stream, exchange, queue are deleted. Why: the broker
destinations' issue asks for their delivery throughput next to HTTP's. Run it through bench/run
(`bench/run --only brokers`); `python bench/brokers.py [QUEUED]` runs it alone.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aio_pika
import nats
import redis.asyncio as redis
import uvloop
from common import Database, build_body, cpu_seconds, stop
from delivery import (
    CONCURRENCY,
    FILL_CONCURRENCY,
    LOAD_LIMIT_S,
    MAX_IN_FLIGHT,
    admin,
    drain,
    not_all_ok,
    post_many,
    server_problems,
    start_hookyard,
    wait_succeeded,
)

QUEUED = 20_000
REDIS_URL = "redis://127.0.0.1:6379/0"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"


@dataclass
class BrokerDrain:
    label: str
    seconds: float = 0.0
    per_s: float = 0.0
    cpu_s: float = 0.0  # Hookyard's CPU time while draining
    held: int | None = None  # messages the broker holds afterwards


@dataclass
class BrokersResult:
    queued: int
    http: BrokerDrain | None = None
    brokers: list[BrokerDrain] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Broker(ABC):
    """A broker target of the run's own: the destination's keys, and setup, count, cleanup."""

    label: str
    url: str

    def __init__(self) -> None:
        self.name = f"hybench{uuid.uuid4().hex[:10]}"

    @abstractmethod
    def keys(self) -> str:
        """The destination's broker keys, as TOML lines."""

    async def setup(self) -> None:  # noqa: B027 (optional: Redis creates its stream itself)
        """Create what Hookyard publishes into."""

    @abstractmethod
    async def count(self) -> int:
        """Messages that arrived."""

    @abstractmethod
    async def cleanup(self) -> None:
        """Remove what the run created."""


class RedisStream(Broker):
    label, url = "Redis stream (XADD)", REDIS_URL

    def keys(self) -> str:
        return f'stream = "{self.name}"'

    async def count(self) -> int:
        async with redis.Redis.from_url(self.url) as client:
            return int(await client.xlen(self.name))

    async def cleanup(self) -> None:
        async with redis.Redis.from_url(self.url) as client:
            await client.delete(self.name)


class RabbitExchange(Broker):
    label, url = "RabbitMQ (confirms)", AMQP_URL

    def keys(self) -> str:
        return f'exchange = "{self.name}"'

    async def setup(self) -> None:
        async with await aio_pika.connect(self.url) as connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(
                self.name, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(self.name, durable=True)
            await queue.bind(exchange, routing_key="#")

    async def count(self) -> int:
        async with await aio_pika.connect(self.url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.name, passive=True)
            return int(queue.declaration_result.message_count or 0)

    async def cleanup(self) -> None:
        async with await aio_pika.connect(self.url) as connection:
            channel = await connection.channel()
            await channel.queue_delete(self.name)
            await channel.exchange_delete(self.name)


class NatsStream(Broker):
    label, url = "NATS JetStream (acks)", NATS_URL

    def keys(self) -> str:
        return f'subject = "{self.name}.{{source}}"'

    async def setup(self) -> None:
        nc = await nats.connect(self.url)
        try:
            await nc.jetstream().add_stream(name=self.name, subjects=[f"{self.name}.>"])
        finally:
            await nc.close()

    async def count(self) -> int:
        nc = await nats.connect(self.url)
        try:
            return int((await nc.jetstream().stream_info(self.name)).state.messages)
        finally:
            await nc.close()

    async def cleanup(self) -> None:
        nc = await nats.connect(self.url)
        try:
            await nc.jetstream().delete_stream(self.name)
        finally:
            await nc.close()


def broker_drain(work: Path, bodies: list[bytes], broker: Broker, result: BrokersResult) -> None:
    label = broker.label
    measured = BrokerDrain(label)
    work.mkdir()
    (work / "hookyard.toml").write_text(
        '[egress]\nallow = ["127.0.0.0/8"]\n'
        '\n[sources.bench]\nverify = "none"\n'
        f'\n[destinations.sink]\nurl = "{broker.url}"\n{broker.keys()}\n'
        f"concurrency = {CONCURRENCY}\n"
        f"\n[worker]\nmax_in_flight = {MAX_IN_FLIGHT}\n"
        '\n[[routes]]\nsource = "bench"\ndestination = "sink"\n'
    )
    db = Database.sqlite(work / "hookyard.db")
    server = None
    try:
        uvloop.run(broker.setup())
        server, port = start_hookyard(work, 0, db)
        admin(port, work, "pause")
        headers = [{"content-type": "application/json"}] * len(bodies)
        _, answers = uvloop.run(
            post_many(f"http://127.0.0.1:{port}/in/bench", bodies, headers, FILL_CONCURRENCY)
        )
        result.problems += not_all_ok(f"{label}: filling the queue", answers, len(bodies))
        cpu_before = cpu_seconds(server.pid)
        since = time.monotonic()
        admin(port, work, "resume")
        done, elapsed = wait_succeeded(db, len(bodies), since, LOAD_LIMIT_S)
        measured.cpu_s = cpu_seconds(server.pid) - cpu_before
        measured.seconds, measured.per_s = elapsed, done / elapsed
        if done < len(bodies):
            result.problems.append(f"{label}: only {done:,} of {len(bodies):,} succeeded")
        measured.held = uvloop.run(broker.count())
        if measured.held != len(bodies):
            result.problems.append(
                f"{label}: the broker holds {measured.held:,} messages, expected {len(bodies):,}"
            )
        attempts = db.value("SELECT count(*) FROM attempts")
        if attempts != done:
            result.problems.append(f"{label}: {attempts:,} attempts for {done:,} deliveries")
    except Exception as exc:  # a broker or server that failed ends this row, not the run
        result.problems.append(f"{label}: failed: {exc}")
    finally:
        if server is not None:
            stop(server)
        db.close()
        try:
            uvloop.run(broker.cleanup())
        except Exception as exc:
            result.problems.append(f"{label}: cleanup failed: {exc}")
    result.problems += server_problems(work, label)
    result.brokers.append(measured)


def run(queued: int = QUEUED) -> BrokersResult:
    result = BrokersResult(queued)
    bodies = [build_body(n, f"brokers-{n}") for n in range(queued)]
    with tempfile.TemporaryDirectory(prefix="hookyard-bench-brokers-") as scratch:
        work = Path(scratch)
        print(f"brokers: HTTP drain of {queued:,} ...", file=sys.stderr)
        http = drain(work / "http", Database.sqlite(work / "http.db"), bodies)
        result.problems += http.problems
        result.http = BrokerDrain(
            "HTTP (nginx sink)",
            http.drain_s or 0.0,
            http.drain_per_s or 0.0,
            http.drain_cpu_s or 0.0,
        )
        for n, broker in enumerate((RedisStream(), RabbitExchange(), NatsStream())):
            print(f"brokers: {broker.label} ...", file=sys.stderr)
            broker_drain(work / f"broker-{n}", bodies, broker, result)
    return result


def report(result: BrokersResult) -> None:
    print(
        f"broker drain, 1 KB JSON, {result.queued:,} queued, concurrency {CONCURRENCY}, "
        "SQLite, 1 server"
    )
    print(f"{'':28}{'deliveries/s':>13}{'time':>9}{'vs HTTP':>9}{'hookyard CPU':>14}")
    http = result.http
    for row in ([http] if http else []) + result.brokers:
        ratio = row.per_s / http.per_s if http and http.per_s else 0.0
        cpu = row.cpu_s / row.seconds if row.seconds else 0.0
        print(f"{row.label:28}{row.per_s:>13,.0f}{row.seconds:>7.1f} s{ratio:>9.2f}{cpu:>13.0%}")
    for problem in result.problems:
        print(f"!!! brokers: {problem}")


if __name__ == "__main__":
    outcome = run(int(sys.argv[1]) if len(sys.argv) > 1 else QUEUED)
    report(outcome)
    print(asdict(outcome), file=sys.stderr)
    sys.exit(1 if outcome.problems else 0)
