"""HTTPS destinations with a custom CA and a client certificate (mTLS), on loopback."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from tests.conftest import DEADLINE, basic_config


@pytest.fixture
async def tls_receiver(tmp_path: Path) -> Any:
    """An HTTPS server whose certificate a private CA signed; it requires a client
    certificate from the same CA."""
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("hookyard-client")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        seen.append("client certificate" if peer else "none")
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"https://127.0.0.1:{port}/hooks", seen
    await runner.cleanup()


async def _status(hy: Any, event_id: str, want: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    async with hy.api() as api:
        while True:
            delivery = (await api.get(f"/api/v1/events/{event_id}")).json()["deliveries"][0]
            if delivery["status"] == want:
                return delivery
            assert time.monotonic() < deadline, delivery
            await asyncio.sleep(0.05)


async def test_custom_ca_and_client_certificate(hookyard_factory, tls_receiver):
    url, seen = tls_receiver
    config = basic_config(url, destination='ca_file = "ca.pem"\nclient_cert = "client.pem"')
    async with hookyard_factory(config) as hy:
        event_id = (await hy.client.post("/in/open", content=b"over tls")).json()["id"]
        await _status(hy, event_id, "succeeded")
    assert seen == ["client certificate"]


async def test_unknown_ca_fails_the_attempt(hookyard_factory, tls_receiver):
    url, seen = tls_receiver
    async with hookyard_factory(basic_config(url)) as hy:
        event_id = (await hy.client.post("/in/open", content=b"untrusted")).json()["id"]
        delivery = await _status(hy, event_id, "dead")
    assert "certificate" in delivery["attempt_log"][0]["error"].lower()
    assert seen == []


async def test_missing_tls_files_are_a_config_error(tmp_path: Path) -> None:
    from hookyard.config import load_config
    from hookyard.errors import ConfigError
    from hookyard.gateway import Gateway

    path = tmp_path / "hookyard.toml"
    path.write_text(basic_config("https://127.0.0.1:9/x", destination='ca_file = "missing.pem"'))
    settings, base = load_config(path)
    with pytest.raises(ConfigError, match=r"destinations\.app"):
        Gateway.build(settings, base)
