"""`hookyard listen` forwarding one delivery: what it reports of the local receiver's answer."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import aiohttp
import pytest

from hookyard.relay.listen import REPORT_MAX, Listener


@pytest.fixture
async def odd_receiver() -> AsyncIterator[str]:
    """Answers with status 700, which aiohttp's client reads as any other three digits."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 700 Odd\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.close()
        await server.wait_closed()


async def test_a_status_http_does_not_have_is_reported_as_an_error(odd_receiver: str) -> None:
    """The server takes status codes 100 to 599: a 700 reported as such was refused (422) with
    the whole batch, and `listen` stopped for good."""
    listener = Listener("http://127.0.0.1:9", "token", "laptop", odd_receiver, as_json=True)
    delivery = {
        "delivery_id": "dlv_1",
        "lease": "1.0",
        "event_id": "evt_1",
        "source": "open",
        "event_type": None,
        "attempt": 1,
        "headers": {"content-type": "application/json"},
        "body": base64.b64encode(b"{}").decode(),
    }
    async with aiohttp.ClientSession() as local:
        result = await listener._send(local, delivery)
    assert "status_code" not in result
    assert "700" in result["error"]


def test_a_report_call_fits_the_server_s_body_limit() -> None:
    """Worst case: every result's excerpt is 1,024 bytes that are not UTF-8, each escaped to
    six characters of JSON; a call of REPORT_MAX of them stays under 4 MiB."""
    import json

    from hookyard.api.body_limit import MAX_BODY

    worst = {
        "delivery_id": "dlv_" + "X" * 26,
        "lease": repr(1.7e9 + 0.123456789),
        "status_code": 200,
        "response_excerpt": "\ufffd" * 1024,
        "duration_ms": 12345.678901234,
        "retry_after": 123456.789,
    }
    assert len(json.dumps({"results": [worst] * REPORT_MAX})) < MAX_BODY
