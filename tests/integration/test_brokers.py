"""Broker destinations against the machine's real Redis, RabbitMQ and NATS (JetStream): the
exact body and metadata arrive, the guide's consumers (docs/brokers.md, run as written) read
them, failures are retried with a clear error, and a broker stopped for a while and restarted
loses nothing. Every test uses streams, exchanges, queues and subjects of its own."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import re
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import nats
import pytest
import redis.asyncio as redis
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from standardwebhooks import Webhook

from hookyard.deliver.senders import Senders
from hookyard.models import Claim, EventData
from tests.conftest import DEADLINE, DEST_SECRET, until_deadline
from tests.integration.test_reconcile import free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "brokers.md"
QUICK = '["0", "100ms", "100ms"]'
PATIENT = "[" + ", ".join(['"0"'] + ['"250ms"'] * 100) + "]"  # 25 s of retries, for outages


def broker_config(
    url: str, keys: str, *, schedule: str = QUICK, allow: str = '["127.0.0.0/8"]'
) -> str:
    return f"""
        [server]
        listen = "127.0.0.1:0"

        [egress]
        allow = {allow}

        [sources.open]
        verify = "none"
        type_header = "x-event-type"

        [destinations.app]
        url = "{url}"
        secret = "{DEST_SECRET}"
        timeout = "2s"
        retry_schedule = {schedule}
        jitter = 0
        {keys}

        [[routes]]
        source = "open"
        destination = "app"
    """


@dataclass(frozen=True)
class Sample:
    body: bytes
    content_type: str
    event_type: str


SAMPLES = (
    Sample(b'{"type": "invoice.paid", "amount": 42}', "application/json", "invoice.paid"),
    Sample(b"\xff\xfe\x00raw \x80 bytes\n", "application/octet-stream", "blob upload"),
)


async def post(hy: Any, sample: Sample) -> str:
    answer = await hy.client.post(
        "/in/open",
        content=sample.body,
        headers={"content-type": sample.content_type, "x-event-type": sample.event_type},
    )
    assert answer.status_code == 200, answer.text
    event_id: str = answer.json()["id"]
    return event_id


async def event(hy: Any, event_id: str) -> dict[str, Any]:
    async with hy.api() as api:
        answer: dict[str, Any] = (await api.get(f"/api/v1/events/{event_id}")).json()
        return answer


async def wait_status(
    hy: Any, event_ids: list[str], status: str, timeout: float = DEADLINE, records: bool = True
) -> dict[str, dict[str, Any]]:
    """Wait until each event's delivery has `status`; then each event's record (with its
    deliveries and their attempts), unless `records` is false."""
    wanted = set(event_ids)
    deadline = time.monotonic() + timeout
    async with hy.api() as api:
        while True:
            seen: set[str] = set()
            cursor = None
            while True:
                params: dict[str, Any] = {"status": status, "limit": 1000}
                if cursor is not None:
                    params["cursor"] = cursor
                page = (await api.get("/api/v1/deliveries", params=params)).json()
                seen |= {delivery["event_id"] for delivery in page["data"]}
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            if wanted <= seen:
                break
            if time.monotonic() > deadline:
                late = sorted(wanted - seen)[:3]
                shown = [(await api.get(f"/api/v1/events/{e}")).json()["deliveries"] for e in late]
                raise AssertionError(f"{len(wanted - seen)} not {status}, e.g. {shown}")
            await asyncio.sleep(0.05)
        if not records:
            return {}
        return {e: (await api.get(f"/api/v1/events/{e}")).json() for e in event_ids}


def check_arrivals(
    samples: dict[str, Sample],
    records: dict[str, dict[str, Any]],
    arrived: list[tuple[dict[str, str], bytes]],
) -> None:
    """Each event arrived once, byte for byte, with the metadata an HTTP receiver would get,
    and a signature a Standard Webhooks library accepts."""
    by_id = {metadata["webhook-id"]: (metadata, body) for metadata, body in arrived}
    assert len(arrived) == len(samples) == len(by_id)
    for event_id, sample in samples.items():
        metadata, body = by_id[event_id]
        assert body == sample.body
        assert metadata["content-type"] == sample.content_type
        assert metadata["hookyard-source"] == "open"
        assert metadata["hookyard-event-type"] == sample.event_type
        assert metadata["hookyard-delivery-id"] == records[event_id]["deliveries"][0]["id"]
        signed = f"{event_id}.{metadata['webhook-timestamp']}.".encode() + body
        expected = hmac.new(
            base64.b64decode(DEST_SECRET.removeprefix("whsec_")), signed, hashlib.sha256
        ).digest()
        assert metadata["webhook-signature"] == "v1," + base64.b64encode(expected).decode()
        if sample.content_type == "application/json":  # the library wants text bodies
            Webhook(DEST_SECRET).verify(body, metadata)


def check_attempts(records: dict[str, dict[str, Any]], said: str) -> None:
    for record in records.values():
        (attempt,) = record["deliveries"][0]["attempt_log"]
        assert attempt["status_code"] is None and attempt["error"] is None
        assert re.match(said, attempt["response_excerpt"]), attempt


def guide_consumer(name: str, **constants: Any) -> dict[str, Any]:
    """The consumer docs/brokers.md shows for `name`, as written, with its constants set."""
    match = re.search(rf"```python\n# consumer: {name}\n(.*?)```", GUIDE.read_text(), re.S)
    assert match, f"docs/brokers.md has no `# consumer: {name}` block"
    namespace: dict[str, Any] = {"__name__": f"guide_{name}"}
    exec(compile(match.group(1), f"docs/brokers.md ({name} consumer)", "exec"), namespace)
    namespace.update(constants)
    return namespace


async def consume_until(
    consumer: dict[str, Any],
    client: Any,
    count: int,
    metadata: Callable[[Any], tuple[dict[str, str], bytes]],
    timeout: float = DEADLINE,
) -> list[tuple[dict[str, str], bytes]]:
    """Run the guide's `consume` with a `handle` that records, until `count` messages."""
    arrived: list[tuple[dict[str, str], bytes]] = []
    enough = asyncio.Event()

    async def handle(message: Any) -> None:
        arrived.append(metadata(message))
        if len(arrived) >= count:
            enough.set()

    consumer["handle"] = handle
    task = asyncio.create_task(consumer["consume"](client))
    try:
        waiting = asyncio.create_task(enough.wait())
        await asyncio.wait([task, waiting], timeout=timeout, return_when="FIRST_COMPLETED")
        waiting.cancel()
        if task.done():
            task.result()  # the consumer failed: say how
        assert enough.is_set(), f"the consumer got {len(arrived)} of {count}"
        await asyncio.sleep(0.3)  # anything beyond `count` would arrive now
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return arrived


def redis_fields(fields: dict[bytes, bytes]) -> tuple[dict[str, str], bytes]:
    metadata = {k.decode(): v.decode() for k, v in fields.items() if k != b"payload"}
    return metadata, fields[b"payload"]


def amqp_message(message: AbstractIncomingMessage) -> tuple[dict[str, str], bytes]:
    metadata = {k: str(v) for k, v in message.headers.items()}
    metadata["content-type"] = message.content_type or ""
    assert message.message_id == metadata["webhook-id"]
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.timestamp is not None
    assert int(message.timestamp.timestamp()) == int(metadata["webhook-timestamp"])
    assert message.type == metadata["hookyard-event-type"]
    return metadata, message.body


def nats_message(msg: Any) -> tuple[dict[str, str], bytes]:
    metadata = dict(msg.headers)
    assert metadata["Nats-Msg-Id"] == metadata["hookyard-delivery-id"]
    return metadata, msg.data


# -- each broker, end to end ---------------------------------------------------------------------


async def test_redis_stream_gets_the_exact_body_and_metadata(hookyard_factory):
    stream = f"hy-test-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        async with hookyard_factory(broker_config(REDIS_URL, f'stream = "{stream}"')) as hy:
            samples = {await post(hy, sample): sample for sample in SAMPLES}
            records = await wait_status(hy, list(samples), "succeeded")
            async with hy.api() as api:
                metrics = (await api.get("/metrics")).text
        check_attempts(records, r"XADD \d+-\d+$")
        assert 'hookyard_attempts_total{destination="app",class="confirmed"} 2' in metrics
        consumer = guide_consumer("redis", STREAM=stream, GROUP="billing", CONSUMER="c1")
        arrived = await consume_until(consumer, client, len(samples), redis_fields)
        check_arrivals(samples, records, arrived)
        assert (await client.xpending(stream, "billing"))["pending"] == 0  # all acknowledged
    finally:
        await client.delete(stream)
        await client.aclose()


async def test_redis_maxlen_caps_the_stream_approximately(hookyard_factory):
    stream = f"hy-test-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(REDIS_URL)
    keys = f'stream = "{stream}"\nmaxlen = 10'
    try:
        async with hookyard_factory(broker_config(REDIS_URL, keys)) as hy:
            ids = await asyncio.gather(*(post(hy, SAMPLES[0]) for _ in range(300)))
            await wait_status(hy, list(ids), "succeeded", records=False)
        # MAXLEN ~ trims whole nodes (100 entries each): about 10, never all 300.
        assert 10 <= await client.xlen(stream) <= 110
    finally:
        await client.delete(stream)
        await client.aclose()


@contextlib.asynccontextmanager
async def rabbit_exchange(*patterns: str) -> AsyncIterator[tuple[str, AbstractChannel]]:
    """A durable topic exchange of this test's own, with a durable queue `NAME-i` bound for
    each routing-key pattern; deleted afterwards with every queue named after it."""
    name = f"hy-test-{uuid.uuid4().hex}"
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
        for n, pattern in enumerate(patterns):
            queue = await channel.declare_queue(f"{name}-{n}", durable=True)
            await queue.bind(exchange, routing_key=pattern)
        try:
            yield name, channel
        finally:
            # A fresh connection: the test may have restarted the broker meanwhile.
            async with await aio_pika.connect(AMQP_URL) as cleanup:
                channel = await cleanup.channel()
                for queue_name in [f"{name}-{n}" for n in range(len(patterns))]:
                    await channel.queue_delete(queue_name)
                await channel.exchange_delete(name)


async def test_rabbitmq_exchange_gets_the_exact_body_and_metadata(hookyard_factory):
    # The queue the guide's consumer declares and binds: it must exist before Hookyard
    # publishes (a message no queue is bound for is refused).
    async with rabbit_exchange("open.#") as (exchange, _):
        config = broker_config(AMQP_URL, f'exchange = "{exchange}"')
        async with hookyard_factory(config) as hy:
            samples = {await post(hy, sample): sample for sample in SAMPLES}
            records = await wait_status(hy, list(samples), "succeeded")
        check_attempts(records, "RabbitMQ confirm$")
        routing_keys: list[str] = []

        def metadata(message: AbstractIncomingMessage) -> tuple[dict[str, str], bytes]:
            routing_keys.append(message.routing_key or "")
            return amqp_message(message)

        consumer = guide_consumer(
            "rabbitmq", EXCHANGE=exchange, QUEUE=f"{exchange}-0", BINDING="open.#"
        )
        async with await aio_pika.connect(AMQP_URL) as connection:
            arrived = await consume_until(consumer, connection, len(samples), metadata)
        check_arrivals(samples, records, arrived)
        assert sorted(routing_keys) == ["open.blob_upload", "open.invoice.paid"]


async def test_rabbitmq_takes_a_content_type_too_long_for_its_property(hookyard_factory):
    long = Sample(b'{"n": 1}', "application/json; profile=" + "x" * 300, "long.content.type")
    async with rabbit_exchange("open.#") as (exchange, channel):
        config = broker_config(AMQP_URL, f'exchange = "{exchange}"')
        async with hookyard_factory(config) as hy:
            await wait_status(hy, [await post(hy, long)], "succeeded")
        queue = await channel.get_queue(f"{exchange}-0")
        message = await queue.get(timeout=DEADLINE)
        assert message.content_type is None and message.headers["content-type"] == long.content_type
        assert message.body == long.body


async def test_rabbitmq_unroutable_message_is_retried_with_a_clear_error(hookyard_factory):
    async with rabbit_exchange() as (exchange, channel):
        config = broker_config(AMQP_URL, f'exchange = "{exchange}"', schedule=PATIENT)
        async with hookyard_factory(config) as hy:
            event_id = await post(hy, SAMPLES[0])
            record = (await wait_status(hy, [event_id], "retrying"))[event_id]
            error = record["deliveries"][0]["last_error"]
            assert error == (
                f"no queue is bound to exchange '{exchange}' with routing key "
                "'open.invoice.paid': RabbitMQ returned the message"
            )
            queue = await channel.declare_queue(f"{exchange}-late", durable=True)
            try:
                await queue.bind(exchange, routing_key="open.*.*")  # now it has somewhere to go
                await wait_status(hy, [event_id], "succeeded")
                message = await queue.get(timeout=5)
                assert message.body == SAMPLES[0].body
            finally:
                await queue.delete()


async def test_rabbitmq_missing_exchange_is_a_clear_error(hookyard_factory):
    missing = f"hy-missing-{uuid.uuid4().hex}"
    async with hookyard_factory(broker_config(AMQP_URL, f'exchange = "{missing}"')) as hy:
        event_id = await post(hy, SAMPLES[0])
        record = (await wait_status(hy, [event_id], "dead"))[event_id]
    errors = {a["error"] for a in record["deliveries"][0]["attempt_log"]}
    assert all(f"no exchange '{missing}'" in error for error in errors), errors


@contextlib.asynccontextmanager
async def jetstream(prefix: str, *, url: str = NATS_URL) -> AsyncIterator[tuple[str, Any]]:
    """A stream of this test's own covering `prefix.>`, deleted afterwards."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    name = prefix.upper().replace("-", "_")
    await js.add_stream(name=name, subjects=[f"{prefix}.>"])
    try:
        yield name, js
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream(name)
        await nc.close()


async def test_nats_jetstream_gets_the_exact_body_and_metadata(hookyard_factory):
    prefix = f"hytest{uuid.uuid4().hex[:12]}"
    async with jetstream(prefix) as (stream, _):
        keys = f'subject = "{prefix}.{{source}}.{{type}}"'
        async with hookyard_factory(broker_config(NATS_URL, keys)) as hy:
            samples = {await post(hy, sample): sample for sample in SAMPLES}
            records = await wait_status(hy, list(samples), "succeeded")
        check_attempts(records, rf"JetStream ack stream={stream} seq=\d+$")
        subjects: list[str] = []

        def metadata(msg: Any) -> tuple[dict[str, str], bytes]:
            subjects.append(msg.subject)
            return nats_message(msg)

        consumer = guide_consumer("nats", STREAM=stream, SUBJECTS=[f"{prefix}.>"], DURABLE="b")
        nc = await nats.connect(NATS_URL)
        try:
            arrived = await consume_until(consumer, nc, len(samples), metadata)
        finally:
            await nc.close()
        check_arrivals(samples, records, arrived)
        assert sorted(subjects) == [f"{prefix}.open.blob_upload", f"{prefix}.open.invoice.paid"]


async def test_nats_subject_without_a_stream_is_a_clear_error(hookyard_factory):
    subject = f"hynone{uuid.uuid4().hex[:12]}.{{source}}"
    async with hookyard_factory(broker_config(NATS_URL, f'subject = "{subject}"')) as hy:
        event_id = await post(hy, SAMPLES[0])
        record = (await wait_status(hy, [event_id], "dead"))[event_id]
    expected = subject.format(source="open")
    for attempt in record["deliveries"][0]["attempt_log"]:
        assert attempt["error"] == (
            f"no JetStream stream covers subject '{expected}': create one whose subjects include it"
        )


async def test_nats_drops_a_retried_delivery_but_not_a_replay(hookyard_factory, tmp_path):
    prefix = f"hytest{uuid.uuid4().hex[:12]}"
    async with jetstream(prefix) as (stream, js):
        keys = f'subject = "{prefix}.{{source}}"'
        async with hookyard_factory(broker_config(NATS_URL, keys)) as hy:
            event_id = await post(hy, SAMPLES[0])
            first = (await wait_status(hy, [event_id], "succeeded"))[event_id]
            async with hy.api() as api:
                assert (await api.post(f"/api/v1/events/{event_id}/replay")).status_code == 200
            for _ in until_deadline():
                deliveries = (await event(hy, event_id))["deliveries"]
                if len(deliveries) == 2 and {d["status"] for d in deliveries} == {"succeeded"}:
                    break
                await asyncio.sleep(0.05)
            gateway = hy.service.state.gateway
        assert (await js.stream_info(stream)).state.messages == 2  # the replay went through
        # The same delivery sent again (a retry whose first ack was lost) is dropped by
        # JetStream within its duplicate window, and still counts as confirmed.
        senders = Senders()
        try:
            data = EventData(event_id, "open", None, None, None, SAMPLES[0].body, [])
            claim = Claim(first["deliveries"][0]["id"], event_id, "app", 2, False, 0)
            again = await senders.send(claim, gateway.destinations["app"], data, None)
        finally:
            await senders.close()
        assert again.confirmed and again.excerpt and again.excerpt.endswith("already stored)")
        assert (await js.stream_info(stream)).state.messages == 2


# -- credentials and egress ----------------------------------------------------------------------


async def test_a_broker_password_never_shows(hookyard_factory, monkeypatch, caplog):
    password = "s3cret-broker-pa55"
    monkeypatch.setenv("HY_TEST_BROKER_URL", f"redis://hy-nobody:{password}@127.0.0.1:6379/0")
    config = broker_config("env:HY_TEST_BROKER_URL", 'stream = "hy-never-written"')
    async with hookyard_factory(config) as hy:
        event_id = await post(hy, SAMPLES[0])
        record = (await wait_status(hy, [event_id], "dead"))[event_id]
        async with hy.api() as api:
            listed = (await api.get("/api/v1/destinations")).json()
    error = record["deliveries"][0]["last_error"]
    assert "AuthenticationError" in error  # the machine's Redis has no such user
    assert listed[0]["url"] == "redis://***@127.0.0.1:6379/0"
    assert password not in str(record) + str(listed) + caplog.text


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[object]]]:
    """A port that records every connection made to it."""
    connections: list[object] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer.get_extra_info("peername"))
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], connections
    server.close()
    await server.wait_closed()


async def test_a_broker_outside_the_egress_policy_is_refused_without_connecting(
    hookyard_factory, listener
):
    port, connections = listener
    config = f"""
        [server]
        listen = "127.0.0.1:0"

        [sources.open]
        verify = "none"

        [destinations.redis]
        url = "redis://127.0.0.1:{port}"
        stream = "s"
        retry_schedule = ["0", "100ms"]

        [destinations.rabbit]
        url = "amqp://guest:guest@localhost:{port}/"
        exchange = ""
        retry_schedule = ["0", "100ms"]

        [destinations.nats]
        url = "nats://localhost:{port}"
        retry_schedule = ["0", "100ms"]

        [[routes]]
        source = "open"
        destination = ["redis", "rabbit", "nats"]
    """
    async with hookyard_factory(config) as hy:
        event_id = await post(hy, SAMPLES[0])
        for _ in until_deadline():
            deliveries = (await event(hy, event_id))["deliveries"]
            if {d["status"] for d in deliveries} == {"dead"}:
                break
            await asyncio.sleep(0.05)
    assert len(deliveries) == 3
    for delivery in deliveries:
        assert delivery["status"] == "dead", delivery
        for attempt in delivery["attempt_log"]:
            assert attempt["error"].startswith("EgressRefused: "), attempt
            assert "which the egress policy refuses" in attempt["error"]
    assert connections == []


# -- outages ----------------------------------------------------------------------------------


@dataclass
class PrivateBroker:
    """A broker process of this test's own on a free port: stopping it affects nothing else."""

    argv: list[str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    stopped_at: list[float] = field(default_factory=list)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, DEADLINE)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(30)
        self.stopped_at.append(time.monotonic())


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing answers on port {port}") from None
            time.sleep(0.05)


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[Callable[[str], PrivateBroker]]:
    started: list[PrivateBroker] = []

    def make(kind: str) -> PrivateBroker:
        port = free_port()
        data = tmp_path / f"{kind}-data"
        data.mkdir()
        if kind == "redis":
            # Append-only file: what Redis confirmed before it stopped is there after it
            # restarts, so the test can count exactly what arrived.
            argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            argv += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(data)]
        else:
            argv = ["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(data)]
        broker = PrivateBroker(argv, port, tmp_path / f"{kind}.log")
        started.append(broker)
        return broker

    yield make
    for broker in started:
        if broker.proc is not None and broker.proc.poll() is None:
            broker.proc.kill()
            broker.proc.wait(30)


async def ride_out_an_outage(
    hy: Any,
    stop: Callable[[], Awaitable[None]],
    start: Callable[[], Awaitable[None]],
    down_for: float = 3.0,
) -> tuple[list[str], dict[str, dict[str, Any]], str]:
    """Ingest an event every 50 ms throughout; stop the broker after a second, check that
    deliveries wait as `retrying` with the broker's error, start it again `down_for` seconds
    later; returns the event ids, their records once all succeeded, and the error seen."""
    ids: list[str] = []

    async def ingest() -> None:
        for n in range(int((1.5 + down_for + 1.0) / 0.05)):
            ids.append(await post(hy, Sample(f'{{"n": {n}}}'.encode(), "application/json", "t")))
            await asyncio.sleep(0.05)

    steady = asyncio.create_task(ingest())
    try:
        await asyncio.sleep(1.0)
        await stop()
        down_since = time.monotonic()
        await asyncio.sleep(0.5)
        waiting = ids[-1]  # posted while the broker is down
        record = (await wait_status(hy, [waiting], "retrying"))[waiting]
        error = record["deliveries"][0]["last_error"]
        await asyncio.sleep(max(0.0, down_for - (time.monotonic() - down_since)))
        await start()
        await steady
    finally:
        steady.cancel()
    records = await wait_status(hy, ids, "succeeded")
    return ids, records, error


def check_at_least_once(
    ids: list[str], records: dict[str, dict[str, Any]], copies: Counter[str]
) -> None:
    """Every event arrived; an event arrived more than once only because an attempt whose
    confirmation was lost was retried (never more copies than attempts)."""
    assert set(copies) == set(ids)
    for event_id in ids:
        attempts = records[event_id]["deliveries"][0]["attempts"]
        assert 1 <= copies[event_id] <= attempts, (event_id, copies[event_id], attempts)
    assert any(r["deliveries"][0]["attempts"] > 1 for r in records.values())  # some waited


@pytest.mark.slow
async def test_redis_stopped_and_restarted_loses_nothing(hookyard_factory, private_broker):
    broker = private_broker("redis")
    broker.start()
    url = f"redis://127.0.0.1:{broker.port}/0"

    async def stop() -> None:
        broker.stop(signal.SIGKILL)  # no goodbye: connections just break

    async def start() -> None:
        broker.start()

    config = broker_config(url, 'stream = "events"', schedule=PATIENT)
    async with hookyard_factory(config) as hy:
        ids, records, error = await ride_out_an_outage(hy, stop, start)
    assert re.match(rf"ConnectionError: Error 111 connecting to 127.0.0.1:{broker.port}", error)
    client = redis.Redis.from_url(url)
    try:
        entries = await client.xrange("events")
    finally:
        await client.aclose()
    check_at_least_once(ids, records, Counter(f[b"webhook-id"].decode() for _, f in entries))


@pytest.mark.slow
async def test_nats_stopped_and_restarted_loses_nothing(hookyard_factory, private_broker):
    broker = private_broker("nats")
    broker.start()
    url = f"nats://127.0.0.1:{broker.port}"
    prefix = f"hytest{uuid.uuid4().hex[:12]}"

    async def stop() -> None:
        broker.stop(signal.SIGTERM)

    async def start() -> None:
        broker.start()  # the stream comes back from the storage directory

    async with jetstream(prefix, url=url) as (stream, _):
        config = broker_config(url, f'subject = "{prefix}.{{source}}"', schedule=PATIENT)
        async with hookyard_factory(config) as hy:
            ids, records, error = await ride_out_an_outage(hy, stop, start)
        assert error == (
            f"cannot connect to {url}: ConnectionRefusedError: [Errno 111] Connect call "
            f"failed ('127.0.0.1', {broker.port})"
        ) or error.startswith("ConnectionClosedError"), error
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            count = (await js.stream_info(stream)).state.messages
            messages = await (await js.pull_subscribe(f"{prefix}.>", stream=stream)).fetch(
                count, timeout=5
            )
        finally:
            await nc.close()
    check_at_least_once(ids, records, Counter(m.headers["webhook-id"] for m in messages))


async def rabbitmqctl(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, err = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {' '.join(args)}: {err.decode()}"


@pytest.mark.slow
async def test_rabbitmq_stopped_and_restarted_loses_nothing(hookyard_factory):
    async with rabbit_exchange("open.#") as (exchange, _):
        queue = f"{exchange}-0"

        async def stop() -> None:
            await rabbitmqctl("stop_app")

        async def start() -> None:
            await rabbitmqctl("start_app")
            await asyncio.to_thread(wait_for_port, 5672, DEADLINE)

        config = broker_config(AMQP_URL, f'exchange = "{exchange}"', schedule=PATIENT)
        try:
            async with hookyard_factory(config) as hy:
                ids, records, error = await ride_out_an_outage(hy, stop, start)
        finally:
            await start()  # whatever happened, the machine's RabbitMQ runs again
        assert "connect" in error.lower() or "closed the connection" in error, error
        copies: Counter[str] = Counter()
        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            durable = await channel.declare_queue(queue, passive=True)
            while (message := await durable.get(fail=False, no_ack=True)) is not None:
                copies[message.message_id or ""] += 1
    check_at_least_once(ids, records, copies)


async def test_redis_url_may_set_its_own_connection_options(hookyard_factory):
    """Options in the URL (redis-py's own) take the place of Hookyard's defaults for them;
    they clashed with those and every attempt failed."""
    stream = f"hy-test-{uuid.uuid4().hex}"
    url = f"{REDIS_URL}?socket_timeout=5&socket_connect_timeout=2&max_connections=4"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        async with hookyard_factory(broker_config(url, f'stream = "{stream}"')) as hy:
            event_id = await post(hy, SAMPLES[0])
            await wait_status(hy, [event_id], "succeeded", records=False)
        assert await client.xlen(stream) == 1
    finally:
        await client.delete(stream)
        await client.aclose()
