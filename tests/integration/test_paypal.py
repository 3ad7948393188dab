"""PayPal: ingest checks the headers and keeps a hint; the worker fetches the certificate
(from a stand-in on loopback, through `fetch_url`), checks it is PayPal's and that the
signature matches one of the source's webhook ids, then stores the event."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import time
import zlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.conftest import Receiver, basic_config, query_database, until_deadline

WEBHOOK_ID = "1JE4291016473214C"
CERT_URL = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_NOW = datetime.datetime.now(datetime.UTC)


def _certificate(common_name: str) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(KEY.public_key())
        .serial_number(7)
        .not_valid_before(_NOW - datetime.timedelta(days=1))
        .not_valid_after(_NOW + datetime.timedelta(days=30))
        .sign(KEY, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


@pytest.fixture
async def paypal_certs() -> AsyncIterator[dict[str, bytes | str]]:
    served: dict[str, bytes | str] = {
        "pem": _certificate("messageverificationcerts.sandbox.paypal.com")
    }

    async def cert(request: web.Request) -> web.Response:
        return web.Response(body=served["pem"])  # type: ignore[arg-type]

    app = web.Application()
    app.router.add_get("/v1/notifications/certs/{name}", cert)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    served["url"] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    yield served
    await runner.cleanup()


def _event(event_id: str = "WH-2WR32451HC0233532-67976317FL4543714") -> bytes:
    return json.dumps(
        {"id": event_id, "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": {"id": "42"}}
    ).encode()


def _headers(body: bytes, webhook_id: str = WEBHOOK_ID) -> dict[str, str]:
    transmission_id = "69cd13f0-d67a-11e5-baa3-778b53f4ae55"
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # within the 3-day window
    signed = f"{transmission_id}|{when}|{webhook_id}|{zlib.crc32(body) & 0xFFFFFFFF}".encode()
    signature = KEY.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    return {
        "content-type": "application/json",
        "paypal-transmission-id": transmission_id,
        "paypal-transmission-time": when,
        "paypal-transmission-sig": base64.b64encode(signature).decode(),
        "paypal-cert-url": CERT_URL,
        "paypal-auth-algo": "SHA256withRSA",
    }


def _config(receiver: Receiver, fetch_url: str) -> str:
    return basic_config(
        receiver.url,
        extra=f"""
[sources.paypal]
verify = "paypal"
secrets = ["OLD-WEBHOOK-ID", "{WEBHOOK_ID}"]
fetch_url = "{fetch_url}"

[[routes]]
source = "paypal"
destination = "app"

[worker]
poll_interval = "100ms"
""",
    )


async def _failed_with(tmp_path, text: str) -> None:  # type: ignore[no-untyped-def]
    query = "SELECT state, last_error FROM requests WHERE source = 'paypal'"
    for _ in until_deadline():
        rows = query_database(tmp_path, query)
        if rows and rows[0][0] == "failed":
            assert text in rows[0][1]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the hint did not fail: {query_database(tmp_path, query)}")


async def test_a_signed_event_is_stored_after_the_worker_checks_it(
    hookyard_factory, receiver: Receiver, paypal_certs
) -> None:
    body = _event()
    async with hookyard_factory(_config(receiver, paypal_certs["url"])) as hy:
        answer = await hy.client.post("/in/paypal", content=body, headers=_headers(body))
        assert answer.status_code == 200 and answer.json()["pending"] is True
        await receiver.wait_for(1)
        assert receiver.received[0].body == body
        assert receiver.received[0].headers["hookyard-event-type"] == "PAYMENT.CAPTURE.COMPLETED"


async def test_a_tampered_body_never_becomes_an_event(
    hookyard_factory, receiver: Receiver, paypal_certs, tmp_path
) -> None:
    body = _event()
    headers = _headers(body)
    async with hookyard_factory(_config(receiver, paypal_certs["url"])) as hy:
        forged = body.replace(b"COMPLETED", b"REFUNDED!")
        assert (await hy.client.post("/in/paypal", content=forged, headers=headers)).is_success
        await _failed_with(tmp_path, "matches none of the source's webhook ids")
    assert receiver.received == []


async def test_a_certificate_that_is_not_paypals_is_refused(
    hookyard_factory, receiver: Receiver, paypal_certs, tmp_path
) -> None:
    paypal_certs["pem"] = _certificate("evil.example.com")
    body = _event()
    async with hookyard_factory(_config(receiver, paypal_certs["url"])) as hy:
        await hy.client.post("/in/paypal", content=body, headers=_headers(body))
        await _failed_with(tmp_path, "not PayPal's message-verification certificate")
    assert receiver.received == []


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("paypal-cert-url", "https://evil.example.com/cert"),
        ("paypal-cert-url", "http://api.paypal.com/v1/notifications/certs/x"),
        ("paypal-transmission-sig", ""),
        ("paypal-auth-algo", "SHA1withRSA"),
        # Older than PayPal's 3 days of retries: past the dedup window, a captured
        # transmission would pass again with any body of the same CRC32.
        (
            "paypal-transmission-time",
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 4 * 86400)),
        ),
    ],
)
async def test_ingest_refuses_what_it_can_check_alone(
    hookyard_factory, receiver: Receiver, paypal_certs, header: str, value: str
) -> None:
    body = _event()
    async with hookyard_factory(_config(receiver, paypal_certs["url"])) as hy:
        answer = await hy.client.post(
            "/in/paypal", content=body, headers={**_headers(body), header: value}
        )
        assert answer.status_code == 401
