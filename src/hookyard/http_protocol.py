"""uvicorn's httptools protocol, with each response sent in one write, and bounds on what a
client may make it hold.

uvicorn parses a request's whole head before anything can look at it, and waits as long as a
client likes for it: many small headers grew the process by hundreds of MB before ingest could
answer 431, and a client sending a head slowly (or nothing) held its connection for ever. Here
the head is counted as it arrives (431 past the limit, before it is all in memory), must
arrive within HEAD_TIMEOUT of its first byte, a webhook's body within BODY_TIMEOUT of its head
(408), and a connection that never starts a request is closed after the keep-alive timeout.

uvicorn writes a response's head and its body in two calls to the transport, and uvloop sends
each at once: two system calls and two packets for the small answers Hookyard gives (a 200 with
the event id, a 401 with its reason). Writes made in one turn of the event loop are joined and
sent at the end of it instead (64 KiB or more at once): ingest answered about 9% more
requests on the benchmark, with a lower p99. Nothing waits longer than that turn.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("hookyard.http")

MAX_HELD = 64 * 1024  # bytes gathered before a turn ends
HEAD_TIMEOUT = 30.0  # seconds from a request's first byte to the end of its head
BODY_TIMEOUT = 30.0  # seconds from the end of a webhook's head to the end of its body
LINGER = 2.0  # seconds a refused request's connection drains before it is closed
SWEEP_INTERVAL = 1.0  # seconds between looks for late heads and silent connections


class _JoinedWrites:
    """A transport that gathers the writes of one event-loop turn into one."""

    __slots__ = ("_ended", "_loop", "_pending", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0
        self._ended = False  # our side is shut (write_eof): nothing more goes out

    def write(self, data: bytes) -> None:
        if self._ended:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)
        self._size += len(data)
        if self._size >= MAX_HELD:  # a big body goes at once, and back-pressure acts on it
            self.flush()

    def writelines(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending, self._size = [], 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def write_eof(self) -> None:
        self.flush()
        self._ended = True
        self._transport.write_eof()

    def is_closing(self) -> bool:
        # uvloop's says False after write_eof: uvicorn would go on starting pipelined requests
        return self._ended or self._transport.is_closing()

    def close(self) -> None:
        self.flush()  # what was written before close() still goes out, as it would have
        self._transport.close()

    def abort(self) -> None:
        self._pending, self._size = [], 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    max_head = 64 * 1024  # bytes of request line and headers

    @classmethod
    def bounded(cls, max_head: int) -> type[HttpProtocol]:
        """The protocol with this bound on request heads (uvicorn takes a class)."""
        return type(cls.__name__, (cls,), {"max_head": max_head})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._begun = 0  # requests begun on this connection
        self._head: int | None = None  # bytes of a head still arriving, counted per read
        self._waiting_since: float | None = None  # for a head (or for a first request)
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _JoinedWrites(transport, self.loop)  # type: ignore[assignment]
        self._waiting_since = self.loop.time()
        _watch(self)

    def data_received(self, data: bytes) -> None:
        if self._refused:  # the rest of a refused request is dropped
            return
        begun = self._begun
        super().data_received(data)
        # Counted per read rather than per header (cheaper), and only reads wholly inside one
        # head (a read that began one may hold earlier pipelined requests): a head is held at
        # most the limit plus two reads.
        if self._head is not None and self._begun == begun and not self._refused:
            self._head += len(data)
            if self._head > self.max_head:
                self._refuse(
                    b"431 Request Header Fields Too Large",
                    b"headers_too_large",
                    f"the request line and headers exceed {self.max_head} bytes".encode(),
                )

    def on_message_begin(self) -> None:
        self._begun += 1
        self._head = 0
        self._waiting_since = self.loop.time()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._head = None
        self._waiting_since = self.loop.time()  # now for the body (see overdue)
        super().on_headers_complete()

    def overdue(self, now: float) -> None:
        """Called about every second: end a head that is late, or a connection that never
        sent a request in as long as an idle one is kept."""
        since = self._waiting_since
        if since is None or self._refused or self.transport.is_closing():
            return
        cycle = self.cycle
        if self._head is not None:  # a head is arriving
            if now - since > HEAD_TIMEOUT:
                message = f"the request head did not arrive within {HEAD_TIMEOUT:g}s".encode()
                self._refuse(b"408 Request Timeout", b"request_timeout", message)
        elif cycle is not None:  # the head is in; a webhook's body must follow (an API call
            # such as an import of a big file may take longer)
            late = cycle.more_body and not cycle.response_started and now - since > BODY_TIMEOUT
            if late and self.scope["path"].startswith("/in/"):
                message = f"the body did not arrive within {BODY_TIMEOUT:g}s".encode()
                self._refuse(b"408 Request Timeout", b"request_timeout", message, cycle)
        elif self._head is None and now - since > self.config.timeout_keep_alive:
            self.transport.close()  # connected, and never a byte

    def _refuse(self, status: bytes, code: bytes, message: bytes, refused: Any = None) -> None:
        """Answer `status` and end the connection; `refused`: the request cycle answered, when
        it has begun (a late body), else the answer is to a head still arriving."""
        self._refused = True
        cycle = self.cycle  # the newest request begun; those queued behind older ones wait
        owed = cycle is not None and cycle is not refused and not cycle.response_complete
        if self.pipeline or owed:
            # Answers to earlier pipelined requests are still owed: a refusal now would be
            # read as the answer to the first of them.
            self.transport.close()
            return
        body = b'{"error":"' + code + b'","message":"' + message + b'"}'
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        # Closed at once, the rest of the request still coming would make the kernel reset
        # the connection, and the client would likely never read the answer: end our side,
        # drop what still comes (data_received), and close after LINGER.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER, self.transport.close)
        else:
            self.transport.close()

    def eof_received(self) -> None:
        # The client half-closed: the transport closes itself once this returns, so an
        # answer written this turn must go out now.
        self.transport.flush()  # type: ignore[attr-defined]
        super().eof_received()


# Connections of each event loop, looked at about every second (one timer per loop, rather
# than one per request).
_OPEN: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.WeakSet[HttpProtocol]] = (
    weakref.WeakKeyDictionary()
)


def _watch(protocol: HttpProtocol) -> None:
    loop = protocol.loop
    watched = _OPEN.get(loop)
    if watched is None:
        watched = _OPEN[loop] = weakref.WeakSet()
        loop.call_later(SWEEP_INTERVAL, _sweep, loop)
    watched.add(protocol)


def _sweep(loop: asyncio.AbstractEventLoop) -> None:
    watched = _OPEN.get(loop)
    if not watched:  # nothing open: the next connection starts the timer again
        _OPEN.pop(loop, None)
        return
    now = loop.time()
    for protocol in list(watched):
        try:
            if protocol.transport.is_closing():
                watched.discard(protocol)
            else:
                protocol.overdue(now)
        except Exception:  # one connection's fault must not end the sweep for all
            log.exception("checking a connection for a late request failed")
            watched.discard(protocol)
    loop.call_later(SWEEP_INTERVAL, _sweep, loop)
