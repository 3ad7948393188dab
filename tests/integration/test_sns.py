"""Amazon SNS: ingest checks the envelope and stores a hint; the worker fetches the signing
certificate (from a stand-in for AWS on loopback, through `fetch_url`), checks the signature,
confirms subscriptions, and only then stores the message as an event."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from hookyard.verify.sns import string_to_sign
from tests.conftest import DEADLINE, Receiver, basic_config, query_database

TOPIC = "arn:aws:sns:eu-west-1:123456789012:orders"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
SUBSCRIBE_URL = (
    "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e2425c464de12884"
)
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
_NOW = datetime.datetime.now(datetime.UTC)
CERT = (
    x509.CertificateBuilder()
    .subject_name(_NAME)
    .issuer_name(_NAME)
    .public_key(KEY.public_key())
    .serial_number(1)
    .not_valid_before(_NOW - datetime.timedelta(days=1))
    .not_valid_after(_NOW + datetime.timedelta(days=30))
    .sign(KEY, hashes.SHA256())
)


@dataclass
class FakeAws:
    url: str = ""
    requests: list[str] = field(default_factory=list)


@pytest.fixture
async def aws() -> AsyncIterator[FakeAws]:
    fake = FakeAws()

    async def handle(request: web.Request) -> web.Response:
        fake.requests.append(request.path_qs)
        if request.path.endswith(".pem"):
            return web.Response(body=CERT.public_bytes(serialization.Encoding.PEM))
        if request.query.get("Action") == "ConfirmSubscription":
            return web.Response(text="<ConfirmSubscriptionResponse/>")
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    yield fake
    await runner.cleanup()


def _iso(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def message(
    kind: str = "Notification",
    version: str = "2",
    sent: datetime.datetime | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """An SNS message signed with the stand-in certificate's key, sent at `sent` (now); the
    `changes` are applied after signing, so the signature does not cover them."""
    body: dict[str, Any] = {
        "Type": kind,
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Message": '{"order": 42, "status": "paid"}',
        "Timestamp": _iso(sent or datetime.datetime.now(datetime.UTC)),
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
    }
    if kind == "Notification":
        body["Subject"] = "order paid"
    else:
        body["Token"] = "2336412f37fb687f5d51e6e2425c464de12884"
        body["SubscribeURL"] = SUBSCRIBE_URL
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signed = KEY.sign(string_to_sign(body), padding.PKCS1v15(), digest)
    body["Signature"] = base64.b64encode(signed).decode()
    body.update(changes)  # after signing: a change the signature does not cover
    return body


def _config(receiver: Receiver, aws: FakeAws) -> str:
    return basic_config(
        receiver.url,
        extra=f"""
[sources.sns]
verify = "sns"
secrets = ["{TOPIC}"]
fetch_url = "{aws.url}"

[[routes]]
source = "sns"
destination = "app"

[worker]
poll_interval = "100ms"
""",
    )


def _post(hy, body: dict[str, Any], kind: str | None = None):  # type: ignore[no-untyped-def]
    headers = {"content-type": "text/plain; charset=UTF-8"}
    headers["x-amz-sns-message-type"] = kind or body["Type"]
    return hy.client.post("/in/sns", content=json.dumps(body).encode(), headers=headers)


async def _eventually(check, timeout: float = DEADLINE) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("version", ["1", "2"])
async def test_a_signed_notification_becomes_an_event_once(
    hookyard_factory, receiver: Receiver, aws: FakeAws, version: str
) -> None:
    body = message(version=version)
    async with hookyard_factory(_config(receiver, aws)) as hy:
        answer = await _post(hy, body)
        assert answer.status_code == 200 and answer.json()["pending"] is True
        await receiver.wait_for(1)
        assert json.loads(receiver.received[0].body) == body
        assert receiver.received[0].headers["hookyard-provider-event-id"] == body["MessageId"]
        await _post(hy, body)  # AWS retries with the same MessageId: a duplicate
        await asyncio.sleep(0.5)
        assert len(receiver.received) == 1
    assert sum(path.endswith(".pem") for path in aws.requests) == 1  # the certificate is cached


async def test_a_subscription_is_confirmed_by_the_worker(
    hookyard_factory, receiver: Receiver, aws: FakeAws
) -> None:
    async with hookyard_factory(_config(receiver, aws)) as hy:
        assert (await _post(hy, message("SubscriptionConfirmation"))).status_code == 200
        await _eventually(lambda: any("ConfirmSubscription" in r for r in aws.requests))
        await receiver.wait_for(1)
        assert receiver.received[0].headers["hookyard-event-type"] == "SubscriptionConfirmation"


async def test_a_forged_message_never_becomes_an_event(
    hookyard_factory, receiver: Receiver, aws: FakeAws, tmp_path
) -> None:
    forged = message(Message='{"order": 42, "status": "refunded"}')
    async with hookyard_factory(_config(receiver, aws)) as hy:
        assert (await _post(hy, forged)).status_code == 200  # checked later, by the worker
        query = "SELECT state, last_error FROM requests WHERE source = 'sns'"
        await _eventually(lambda: query_database(tmp_path, query)[0][0] == "failed")
        assert "signature does not match" in query_database(tmp_path, query)[0][1]
        await asyncio.sleep(0.2)
    assert receiver.received == []


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"SigningCertURL": "https://evil.example.com/cert.pem"}, "SigningCertURL"),
        ({"SigningCertURL": "http://sns.eu-west-1.amazonaws.com/c.pem"}, "SigningCertURL"),
        ({"SigningCertURL": "https://sns.eu-west-1.amazonaws.com.evil.io/c.pem"}, "SigningCertURL"),
        ({"TopicArn": "arn:aws:sns:eu-west-1:999999999999:other"}, "not one this source accepts"),
        ({"TopicArn": []}, "not one this source accepts"),  # a list is no topic (was a 500)
        ({"SignatureVersion": "3"}, "SignatureVersion"),
        ({"Type": "Gossip"}, "expected an SNS message"),
    ],
)
async def test_ingest_refuses_what_it_can_check_alone(
    hookyard_factory, receiver: Receiver, aws: FakeAws, changes: dict[str, Any], says: str
) -> None:
    async with hookyard_factory(_config(receiver, aws)) as hy:
        answer = await _post(hy, message(**changes), kind=changes.get("Type"))
        assert answer.status_code == 401 and says in answer.json()["message"]
    assert aws.requests == []  # nothing was fetched for it


async def test_a_captured_message_replayed_after_the_tolerance_is_refused(
    hookyard_factory, receiver: Receiver, aws: FakeAws, tmp_path
) -> None:
    """Its signature is still valid, and its MessageId is forgotten after the dedup window:
    the signed Timestamp is what refuses it (one day by default)."""
    now = datetime.datetime.now(datetime.UTC)
    old = message(sent=now - datetime.timedelta(days=1, minutes=5))
    future = message(sent=now + datetime.timedelta(days=1, minutes=5))
    recent = message(sent=now - datetime.timedelta(hours=23))
    async with hookyard_factory(_config(receiver, aws)) as hy:
        for body, says in ((old, "s old"), (future, "in the future")):
            answer = await _post(hy, body)
            assert answer.status_code == 401, answer.text
            assert answer.json()["error"] == "stale_timestamp" and says in answer.json()["message"]
        assert (await _post(hy, message(Timestamp="yesterday"))).status_code == 401
        assert (await _post(hy, recent)).status_code == 200
        await receiver.wait_for(1)
    stored = query_database(tmp_path, "SELECT body FROM requests WHERE source = 'sns'")
    assert [json.loads(body)["Timestamp"] for (body,) in stored] == [recent["Timestamp"]]


async def test_a_subscribe_url_off_aws_is_refused(hookyard_factory, receiver, aws) -> None:
    body = message("SubscriptionConfirmation", SubscribeURL="https://attacker.example/x")
    async with hookyard_factory(_config(receiver, aws)) as hy:
        answer = await _post(hy, body)
        assert answer.status_code == 401 and "SubscribeURL" in answer.json()["message"]


async def test_confirming_subscriptions_can_be_left_to_the_application(
    hookyard_factory, receiver: Receiver, aws: FakeAws
) -> None:
    config = _config(receiver, aws).replace(
        f'fetch_url = "{aws.url}"', f'fetch_url = "{aws.url}"\nconfirm_subscriptions = false'
    )
    async with hookyard_factory(config) as hy:
        assert (await _post(hy, message("SubscriptionConfirmation"))).status_code == 200
        await receiver.wait_for(1)  # delivered, with its Token, for the application
        assert json.loads(receiver.received[0].body)["Token"]
    assert not any("ConfirmSubscription" in r for r in aws.requests)
