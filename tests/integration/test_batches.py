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
