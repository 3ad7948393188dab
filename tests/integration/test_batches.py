"""Providers that send several events in one request (SendGrid's Event Webhook): each element
becomes an event of its own, deduplicated and delivered alone; the raw request is kept whole."""

from __future__ import annotations

import base64
import json
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import Receiver, basic_config

KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC = base64.b64encode(
    KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


def _signed(body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    signature = KEY.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "content-type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


SENDGRID = f"""
[sources.sendgrid]
verify = "sendgrid"
secrets = ["{PUBLIC}"]

[[routes]]
source = "sendgrid"
destination = "app"
"""


async def test_a_batch_becomes_one_event_per_element(hookyard_factory, receiver: Receiver):
    events = [
        {"email": "a@example.com", "event": "delivered", "sg_event_id": "sg-1"},
        {"email": "b@example.com", "event": "open", "sg_event_id": "sg-2"},
        {"email": "c@example.com", "event": "bounce", "sg_event_id": "sg-3"},
    ]
    body = json.dumps(events).encode()
    async with hookyard_factory(basic_config(receiver.url, extra=SENDGRID)) as hy:
        answer = await hy.client.post("/in/sendgrid", content=body, headers=_signed(body))
        assert answer.status_code == 200, answer.text
        ids = answer.json()["ids"]
        assert len(ids) == 3 and answer.json()["duplicates"] == 0
        await receiver.wait_for(3)
        delivered = {r.headers["webhook-id"]: json.loads(r.body) for r in receiver.received}
        assert sorted(e["sg_event_id"] for e in delivered.values()) == ["sg-1", "sg-2", "sg-3"]
        assert {r.headers["hookyard-event-type"] for r in receiver.received} == {
            "delivered",
            "open",
            "bounce",
        }

        # SendGrid retries the whole batch, perhaps with one more event: only that one is new.
        retried = json.dumps([*events, {"event": "click", "sg_event_id": "sg-4"}]).encode()
        again = await hy.client.post("/in/sendgrid", content=retried, headers=_signed(retried))
        assert again.json()["duplicates"] == 3
        assert again.json()["ids"][:3] == ids
        await receiver.wait_for(4)

        async with hy.api() as api:
            event = (await api.get(f"/api/v1/events/{ids[1]}")).json()
            assert event["provider_event_id"] == "sg-2" and event["event_type"] == "open"
            raw = await api.get(f"/api/v1/events/{ids[1]}/raw")
            assert raw.content == json.dumps(events[1]).encode()  # its exact bytes in the batch


async def test_a_forged_batch_is_refused_whole(hookyard_factory, receiver: Receiver):
    body = json.dumps([{"event": "delivered", "sg_event_id": "sg-9"}]).encode()
    headers = _signed(body)
    tampered = body.replace(b"delivered", b"bounced!!")
    async with hookyard_factory(basic_config(receiver.url, extra=SENDGRID)) as hy:
        answer = await hy.client.post("/in/sendgrid", content=tampered, headers=headers)
        assert answer.status_code == 401
        async with hy.api() as api:
            listed = await api.get("/api/v1/events", params={"source": "sendgrid"})
            assert listed.json()["data"] == []


HUBSPOT_URL = "https://hooks.example.com"


def _hubspot_config(receiver_url: str) -> str:
    return basic_config(receiver_url).replace(
        'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:0"\npublic_url = "{HUBSPOT_URL}"', 1
    ) + (
        '\n[sources.hubspot]\nverify = "hubspot"\nsecrets = ["hubspot-secret"]\n'
        '[[routes]]\nsource = "hubspot"\ndestination = "app"\n'
    )


def _hubspot_signed(body: bytes) -> dict[str, str]:
    from hookyard.verify import VerifyOptions, build_verifier

    signer = build_verifier("hubspot", ["hubspot-secret"], VerifyOptions())
    headers = signer.sign(
        body, url=HUBSPOT_URL + "/in/hubspot", timestamp=int(time.time()), message_id=""
    )
    return {**headers, "content-type": "application/json"}


async def test_hubspot_events_sharing_an_event_id_are_two_a_retry_is_one(
    hookyard_factory, receiver: Receiver
):
    """HubSpot's eventId is not guaranteed unique: events of other subscriptions and objects
    that share one are each delivered; a retry (same ids, a new attemptNumber) is not."""
    contact = {"eventId": 100, "subscriptionId": 25, "objectId": 1246965, "attemptNumber": 0}
    deal = {"eventId": 100, "subscriptionId": 31, "objectId": 9876543, "attemptNumber": 0}
    retry = {**contact, "attemptNumber": 1}
    async with hookyard_factory(_hubspot_config(receiver.url)) as hy:
        answers = []
        for element in (contact, deal, retry):
            body = json.dumps([element]).encode()
            answer = await hy.client.post(
                "/in/hubspot", content=body, headers=_hubspot_signed(body)
            )
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
        await receiver.wait_for(2)
        async with hy.api() as api:
            event = (await api.get(f"/api/v1/events/{answers[1]['ids'][0]}")).json()
    assert [a["duplicates"] for a in answers] == [0, 0, 1]
    assert answers[2]["ids"] == answers[0]["ids"]
    assert event["provider_event_id"] == "100"  # shown as HubSpot sends it


async def test_a_batch_of_one_is_answered_as_a_batch(hookyard_factory, receiver: Receiver):
    """A batch source answers {"ids": [...]} however many elements the provider sent; a
    client reading "ids" must not break when a batch holds a single event."""
    body = json.dumps([{"event": "delivered", "sg_event_id": "sg-one"}]).encode()
    async with hookyard_factory(basic_config(receiver.url, extra=SENDGRID)) as hy:
        first = await hy.client.post("/in/sendgrid", content=body, headers=_signed(body))
        again = await hy.client.post("/in/sendgrid", content=body, headers=_signed(body))
    assert first.status_code == 200, first.text
    assert first.json() == {"ids": [first.json()["ids"][0]], "duplicates": 0}
    assert again.json() == {"ids": first.json()["ids"], "duplicates": 1}
