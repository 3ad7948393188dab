"""A relay stream's place (one of a token's bounded streams) is freed however it ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from hookyard.api.relay import OpenCalls, _ClosingStream


async def test_a_stream_cancelled_mid_write_frees_its_place() -> None:
    """A client gone while a write waits (a half-open link) cancels the response task with
    the generator paused at a `yield`: the place must not wait for the garbage collector."""
    calls = OpenCalls(1)

    async def frames() -> AsyncIterator[bytes]:
        with calls.holding("token"):
            while True:
                yield b"event: heartbeat\ndata: {}\n\n"

    stalled = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            stalled.set()
            await asyncio.Event().wait()  # a write that never completes

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    response = _ClosingStream(frames(), media_type="text/event-stream")
    scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
    task = asyncio.create_task(response(scope, receive, send))
    await stalled.wait()
    assert calls.full("token")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert not calls.full("token")  # `response` still holds the generator: no GC helped
