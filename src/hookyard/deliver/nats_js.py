"""NATS JetStream destinations: a publish with the metadata as NATS headers, confirmed by the
stream's ack. The stream must exist and cover the subject; without one nothing would store the
message, so that is a failure that names the subject.

`Nats-Msg-Id` is the delivery id: JetStream drops a retry of the same delivery within its
duplicate window (the first attempt may have been stored although its ack never arrived), while
a replay, a new delivery, goes through.

The client does not reconnect or buffer by itself (allow_reconnect off): a publish while the
server is away fails at once instead of waiting in the client's pending buffer, and a new
client connects (before sending, when the old one is found closed as a delivery starts). It
is given the addresses the egress policy checked, not the name, and the name for TLS.
"""

from __future__ import annotations

import logging
import math
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client as NATS
from nats.errors import ConnectionClosedError, NoServersError
from nats.js.errors import NoStreamResponseError

from hookyard.config import redact_destination_url
from hookyard.deliver.broker import BrokerError, BrokerSender, Unsent, endpoint
from hookyard.deliver.egress import resolve_host
from hookyard.deliver.message import Message, failure, render
from hookyard.gateway import Destination

log = logging.getLogger("hookyard.worker")


class JetStreamSender(BrokerSender[NATS]):
    async def open(self, destination: Destination) -> NATS:
        url = destination.url
        last: list[Exception] = []

        async def report(exc: Exception) -> None:  # attempts record what it meant
            last[:] = [exc]
            log.debug("NATS destination %s: %s", destination.name, failure(exc, url))

        host, port = endpoint(url)
        addresses = await resolve_host(destination.egress, host, port)
        try:
            return await nats.connect(
                # The checked addresses in their order; the URL's credentials stay.
                servers=[_at(url, address, port) for address in addresses],
                dont_randomize=True,
                tls_hostname=host,  # a tls:// URL, or a server that asks for TLS
                name=f"hookyard destination {destination.name}",
                connect_timeout=max(1, math.ceil(destination.timeout)),
                allow_reconnect=False,
                # Connecting tries the server twice at most (0 would mean forever).
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                error_cb=report,
            )
        except NoServersError:
            reason = failure(last[-1], url) if last else "no server answered"
            raise BrokerError(
                f"cannot connect to {redact_destination_url(url)}: {reason}"
            ) from None

    async def publish(self, client: NATS, destination: Destination, message: Message) -> str:
        subject = render(destination.subject, message)
        headers = {**message.metadata, "Nats-Msg-Id": message.delivery_id}
        try:
            ack = await client.jetstream().publish(
                subject, message.body, timeout=destination.timeout, headers=headers
            )
        except ConnectionClosedError as exc:
            # nats-py raises it only before taking the message: the client had closed.
            raise Unsent(failure(exc, destination.url)) from exc
        except NoStreamResponseError:
            raise BrokerError(
                f"no JetStream stream covers subject {subject!r}: create one whose subjects "
                "include it"
            ) from None
        duplicate = " (duplicate: already stored)" if ack.duplicate else ""
        return f"JetStream ack stream={ack.stream} seq={ack.seq}{duplicate}"

    def broken(self, client: NATS) -> bool:
        return not client.is_connected

    async def shut(self, client: NATS) -> None:
        await client.close()


def _at(url: str, address: str, port: int) -> str:
    """The URL with `address` for its host, its user info (credentials) as it was."""
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    host = f"[{address}]" if ":" in address else address
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}:{port}"))
