"""Broker connections, against the machine's real Redis, RabbitMQ and NATS behind a loopback
proxy whose connections the test cuts, as a broker restart does (the shared brokers cannot be
restarted by a test): a restart while the client sat idle costs no attempt, a connection cut
while a message is on its way is never sent again within the attempt, and a broker's host name
is resolved once, through the egress policy, so a DNS answer that changes (DNS rebinding)
cannot take a client to a refused address, while TLS still verifies the name."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest
import redis.asyncio as redis
import trustme

from hookyard.deliver.amqp import AmqpSender
from hookyard.deliver.nats_js import JetStreamSender
from tests.conftest import DEADLINE, until_deadline
from tests.integration.test_brokers import (
    REDIS_URL,
    SAMPLES,
    PrivateBroker,
    Sample,
    broker_config,
    event,
    jetstream,
    post,
    rabbit_exchange,
)
from tests.integration.test_reconcile import free_port

PORTS = {"redis": 6379, "amqp": 5672, "nats": 4222}  # the machine's brokers
NAME = "broker.rebind.test"  # resolved only by the test's own DNS (`rebinding_dns`)


# -- a proxy whose connections the test cuts ------------------------------------------------------


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    broker: asyncio.StreamWriter
    cut: bool = False
    told: asyncio.Event = field(default_factory=asyncio.Event)  # the client was sent the end
    client_gone: asyncio.Event = field(default_factory=asyncio.Event)  # the client closed

    def close(self) -> None:
        self.broker.close()
        self.client.close()


class CutProxy:
    """A TCP proxy on loopback in front of a broker. `cut` closes every connection as a broker
    that goes away does, and returns once each client was sent the end of its stream (and,
    with `wait`, once each client closed its end: its library saw the close). Setting `cut_on`
    cuts the connection that carries those bytes right after passing them on, so the broker
    got the message and its answer never comes back. With `tls`, the proxy terminates TLS for
    a broker that speaks plain TCP."""

    def __init__(self, upstream: int, tls: ssl.SSLContext | None = None) -> None:
        self.upstream = upstream
        self.tls = tls
        self.port = 0
        self.cut_on: bytes | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CutProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()
        for link in list(self._links):
            link.close()
        if self._handlers:
            await asyncio.wait(list(self._handlers))

    async def cut(self, wait: bool) -> None:
        links = list(self._links)
        for link in links:
            link.cut = True
            link.broker.close()  # then _outbound ends the client's stream
        for link in links:
            await asyncio.wait_for(link.told.wait(), DEADLINE)
            if wait:
                await asyncio.wait_for(link.client_gone.wait(), DEADLINE)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            upstream = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            self._handlers.discard(task)
            return
        link = _Link(writer, upstream[1])
        self._links.add(link)
        try:
            await asyncio.gather(self._inbound(reader, link), self._outbound(upstream[0], link))
        finally:
            self._links.discard(link)
            link.close()
            for side in (link.client, link.broker):
                with contextlib.suppress(Exception):
                    await side.wait_closed()
            self._handlers.discard(task)

    async def _inbound(self, reader: asyncio.StreamReader, link: _Link) -> None:
        seen = b""  # the end of the previous read: the marker may straddle two
        with contextlib.suppress(OSError):
            while (data := await reader.read(65536)) and not link.cut:
                link.broker.write(data)
                await link.broker.drain()
                seen = seen[-64:] + data
                if self.cut_on is not None and self.cut_on in seen:
                    self.cut_on = None
                    link.cut = True
                    break
        # The client closed its end, wrote after a cut (the broker is gone), or sent the
        # message the test cuts on.
        link.client_gone.set()
        link.close()

    async def _outbound(self, reader: asyncio.StreamReader, link: _Link) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                link.client.write(data)
                await link.client.drain()
        # The broker's end closed: the client gets an end of stream; half closed where the
        # transport allows (not TLS), so `_inbound` still sees the client close its end.
        with contextlib.suppress(OSError, RuntimeError):
            if link.client.can_write_eof():
                link.client.write_eof()
            else:
                link.client.close()
        link.told.set()


# -- brokers of the test's own -----------------------------------------------------------------


@dataclass
class Target:
    """Where a destination of this test's own publishes: its URL at a host:port, its keys, and
    a count of the copies of each event (by webhook-id) the broker holds."""

    url: Callable[[str], str]
    keys: str
    copies: Callable[[], Awaitable[Counter[str]]]


@contextlib.asynccontextmanager
async def target(kind: str, *, tls: bool = False, nats_url: str = "") -> AsyncIterator[Target]:
    if kind == "redis":
        stream = f"hy-test-{uuid.uuid4().hex}"
        client = redis.Redis.from_url(REDIS_URL)

        async def xrange() -> Counter[str]:
            entries = await client.xrange(stream)
            return Counter(fields[b"webhook-id"].decode() for _, fields in entries)

        scheme = "rediss" if tls else "redis"
        try:
            yield Target(lambda at: f"{scheme}://{at}/0", f'stream = "{stream}"', xrange)
        finally:
            await client.delete(stream)
            await client.aclose()
    elif kind == "amqp":
        async with rabbit_exchange("open.#") as (exchange, channel):
            queue = await channel.get_queue(f"{exchange}-0")
            copies: Counter[str] = Counter()

            async def drain() -> Counter[str]:
                while (message := await queue.get(fail=False, no_ack=True)) is not None:
                    copies[message.message_id or ""] += 1
                return copies

            scheme = "amqps" if tls else "amqp"
            yield Target(
                lambda at: f"{scheme}://guest:guest@{at}/", f'exchange = "{exchange}"', drain
            )
    else:
        prefix = f"hytest{uuid.uuid4().hex[:12]}"
        async with nats_stream(prefix, nats_url) as (stream, js):

            async def messages() -> Counter[str]:
                state = (await js.stream_info(stream)).state
                seqs = range(state.first_seq, state.last_seq + 1) if state.messages else []
                found = [await js.get_msg(stream, seq) for seq in seqs]
                return Counter(message.headers["webhook-id"] for message in found)

            scheme = "tls" if tls else "nats"
            yield Target(
                lambda at: f"{scheme}://{at}", f'subject = "{prefix}.{{source}}"', messages
            )


@contextlib.asynccontextmanager
async def nats_stream(prefix: str, url: str) -> AsyncIterator[tuple[str, Any]]:
    """`jetstream` of test_brokers, on the machine's server or (a tls:// URL) a private one
    whose certificate names NAME, reached at its address."""
    if not url.startswith("tls://"):
        async with jetstream(prefix) as made:
            yield made
        return
    nc = await nats.connect(url, tls=ssl.create_default_context(), tls_hostname=NAME)
    js = nc.jetstream()
    name = prefix.upper()
    await js.add_stream(name=name, subjects=[f"{prefix}.>"])
    try:
        yield name, js
    finally:
        await nc.close()


async def settled(hy: Any, event_id: str) -> dict[str, Any]:
    """The event's only delivery once it succeeded or died."""
    for _ in until_deadline():
        delivery: dict[str, Any] = (await event(hy, event_id))["deliveries"][0]
        if delivery["status"] in ("succeeded", "dead"):
            return delivery
        await asyncio.sleep(0.05)
    raise AssertionError(f"still {delivery['status']}: {delivery}")


def errors(delivery: dict[str, Any]) -> list[str | None]:
    return [attempt["error"] for attempt in delivery["attempt_log"]]


# -- a broker restart ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["redis", "amqp", "nats"])
async def test_a_broker_restart_costs_no_attempt_and_makes_no_duplicate(hookyard_factory, kind):
    async with target(kind) as broker, CutProxy(PORTS[kind]) as proxy:
        config = broker_config(broker.url(f"127.0.0.1:{proxy.port}"), broker.keys)
        async with hookyard_factory(config) as hy:
            first = await post(hy, SAMPLES[0])
            assert errors(await settled(hy, first)) == [None]
            # The broker restarts while the client sits idle. A Redis client reads nothing
            # until it sends: there is no close of its to wait for.
            await proxy.cut(wait=kind != "redis")
            second = await post(hy, SAMPLES[1])
            assert errors(await settled(hy, second)) == [None]  # a new connection, at once
            # A cut while a message is on its way: the broker may have it, so that attempt
            # fails, and the next, on schedule, sends it again (at least once, as the attempt
            # log shows), never a hidden second copy within the attempt.
            marker = uuid.uuid4().hex
            proxy.cut_on = marker.encode()
            third = await post(hy, Sample(f'"{marker}"'.encode(), "application/json", "t"))
            delivery = await settled(hy, third)
        copies = await broker.copies()
    assert copies[first] == copies[second] == 1
    assert proxy.cut_on is None  # it did cut
    assert delivery["status"] == "succeeded"
    assert errors(delivery)[0] is not None and errors(delivery)[-1] is None, delivery
    assert 1 <= copies[third] <= len(errors(delivery))


@pytest.mark.parametrize("kind", ["amqp", "nats"])
async def test_a_connection_seen_closed_only_when_publishing_is_replaced_within_the_attempt(
    hookyard_factory, monkeypatch, kind
):
    # The fault: the connection died, but the client saw it only after the delivery started
    # (between the sender's check and the publish). It cannot be timed on demand with a real
    # connection, so the first check after the cut is told the connection is fine.
    sender = AmqpSender if kind == "amqp" else JetStreamSender
    real = sender.broken
    blind = {"armed": False, "fooled": False}  # armed: the next check answers "not broken"

    def broken(self: Any, client: Any) -> bool:
        if blind["armed"]:
            blind.update(armed=False, fooled=real(self, client))
            return False
        return real(self, client)

    monkeypatch.setattr(sender, "broken", broken)
    async with target(kind) as broker, CutProxy(PORTS[kind]) as proxy:
        config = broker_config(broker.url(f"127.0.0.1:{proxy.port}"), broker.keys)
        async with hookyard_factory(config) as hy:
            first = await post(hy, SAMPLES[0])
            assert errors(await settled(hy, first)) == [None]
            await proxy.cut(wait=True)  # the client library has seen the close
            blind["armed"] = True
            second = await post(hy, SAMPLES[1])
            assert errors(await settled(hy, second)) == [None]
        copies = await broker.copies()
    assert blind == {"armed": False, "fooled": True}  # a broken client was passed as fine
    assert copies[first] == copies[second] == 1


# -- DNS rebinding -------------------------------------------------------------------------------


@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A DNS of the test's own for NAME (other names resolve as usual, and nothing asks a real
    DNS server about NAME): 127.0.0.1 the first time, 127.0.0.2 every time after, as an
    attacker's server with a TTL of 0 answers. Returns the answers it gave."""
    real = socket.getaddrinfo
    answers: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != NAME:
            return real(host, port, *args, **kwargs)
        answers.append("127.0.0.2" if answers else "127.0.0.1")
        return real(answers[-1], port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


@contextlib.asynccontextmanager
async def recorder(port: int) -> AsyncIterator[list[object]]:
    """127.0.0.2:`port`, the refused address, recording every connection made to it."""
    connections: list[object] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer.get_extra_info("peername"))
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.2", port)
    try:
        yield connections
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def tls_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A certificate for NAME (not for any address) from a CA this process trusts as if it
    were a system CA (broker TLS trusts the system CAs); its chain and key files."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    leaf = ca.issue_cert(NAME)
    chain, key = tmp_path / "broker.pem", tmp_path / "broker.key"
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return chain, key


@pytest.fixture
def tls_nats(tmp_path: Path, tls_files: tuple[Path, Path]) -> Iterator[int]:
    """A NATS server (JetStream) of the test's own requiring TLS, with the certificate for
    NAME (the machine's server has no TLS, and TLS is NATS's own, so no proxy can add it)."""
    port = free_port()
    data = tmp_path / "nats-data"
    argv = ["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(data)]
    argv += ["--tls", "--tlscert", str(tls_files[0]), "--tlskey", str(tls_files[1])]
    broker = PrivateBroker(argv, port, tmp_path / "nats.log")
    broker.start()
    try:
        yield port
    finally:
        broker.stop(signal.SIGKILL)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("kind", ["redis", "amqp", "nats"])
async def test_a_broker_name_is_resolved_once_through_the_egress_policy(
    hookyard_factory, rebinding_dns, request, kind, tls
):
    upstream, proxy_tls, nats_url = PORTS[kind], None, ""
    if tls and kind == "nats":
        upstream = request.getfixturevalue("tls_nats")  # TLS passes through the proxy
        nats_url = f"tls://127.0.0.1:{upstream}"
    elif tls:  # the proxy adds TLS in front of the machine's broker
        chain, key = request.getfixturevalue("tls_files")
        proxy_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        proxy_tls.load_cert_chain(chain, key)
    async with (
        target(kind, tls=tls, nats_url=nats_url) as broker,
        CutProxy(upstream, proxy_tls) as proxy,
        recorder(proxy.port) as refused_connections,
    ):
        config = broker_config(
            broker.url(f"{NAME}:{proxy.port}"),
            broker.keys,
            schedule='["0", "100ms"]',
            allow='["127.0.0.1/32"]',
        )
        async with hookyard_factory(config) as hy:
            # The client connects to the address that was checked, 127.0.0.1, and TLS
            # verifies the certificate against the name (it names no address).
            first = await post(hy, SAMPLES[0])
            assert errors(await settled(hy, first)) == [None]
            # Reconnecting looks the name up again: the new answer is checked, and refused.
            await proxy.cut(wait=kind != "redis" and proxy_tls is None)
            second = await post(hy, SAMPLES[1])
            delivery = await settled(hy, second)
        assert refused_connections == []
    assert delivery["status"] == "dead"
    for error in errors(delivery):
        assert error is not None
        assert error.startswith(
            f"EgressRefused: {NAME} resolves to 127.0.0.2, which the egress policy refuses"
        ), error
    assert rebinding_dns == ["127.0.0.1"] + ["127.0.0.2"] * (len(rebinding_dns) - 1)
