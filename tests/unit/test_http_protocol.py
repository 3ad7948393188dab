"""The HTTP protocol's joined writes: what uvicorn writes in one event-loop turn (a response's
head, then its body) goes out in one write, in order, and nothing written is lost on close."""

from __future__ import annotations

import asyncio

from hookyard.http_protocol import MAX_HELD, _JoinedWrites


class Recording(asyncio.Transport):
    """A transport that keeps what it is asked to send (a socket cannot show how many writes
    made up what it received)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 7


async def test_the_writes_of_one_turn_go_out_as_one_in_order() -> None:
    real = Recording()
    joined = _JoinedWrites(real, asyncio.get_running_loop())
    joined.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    joined.write(b"{}")
    assert real.writes == []  # not yet: the turn is not over
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    joined.write(b"next")  # a later turn is a later write
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"next"]


async def test_close_sends_what_was_written_first() -> None:
    real = Recording()
    joined = _JoinedWrites(real, asyncio.get_running_loop())
    joined.write(b"head")
    joined.write(b"body")
    joined.close()
    assert real.writes == [b"headbody"] and real.closed
    await asyncio.sleep(0)  # the scheduled flush finds nothing left to send
    assert real.writes == [b"headbody"]


async def test_a_transport_closed_meanwhile_gets_nothing_and_the_rest_passes_through() -> None:
    real = Recording()
    joined = _JoinedWrites(real, asyncio.get_running_loop())
    joined.write(b"late")
    real.closed = True  # closing before the turn ended (the peer reset the connection)
    await asyncio.sleep(0)
    assert real.writes == []
    assert joined.is_closing() and joined.get_write_buffer_size() == 7


async def test_a_big_body_goes_at_once() -> None:
    real = Recording()
    joined = _JoinedWrites(real, asyncio.get_running_loop())
    joined.write(b"head")
    joined.write(b"x" * MAX_HELD)
    assert real.writes == [b"head" + b"x" * MAX_HELD]  # sent now: pause_writing can act on it
    joined.writelines([b"a", b"b"])
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"ab"]
