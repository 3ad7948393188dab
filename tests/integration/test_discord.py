"""Discord interactions over HTTP: PING answered inline; other interactions stored, delivered,
and answered with the deferred response Discord expects within 3 s."""

from __future__ import annotations

import json
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.conftest import Receiver, basic_config

KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
DISCORD = f"""
[sources.discord]
verify = "discord"
secrets = ["{PUBLIC}"]

[[routes]]
source = "discord"
destination = "app"
"""


def _signed(body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        "content-type": "application/json",
        "x-signature-ed25519": KEY.sign(timestamp.encode() + body).hex(),
        "x-signature-timestamp": timestamp,
    }


async def test_ping_pong_and_deferred_commands(hookyard_factory, receiver: Receiver) -> None:
    async with hookyard_factory(basic_config(receiver.url, extra=DISCORD)) as hy:
        ping = json.dumps({"id": "1", "type": 1}).encode()
        answer = await hy.client.post("/in/discord", content=ping, headers=_signed(ping))
        assert answer.json() == {"type": 1}

        for kind, deferred in ((2, 5), (3, 6), (5, 5)):
            body = json.dumps({"id": f"i{kind}", "type": kind, "token": "t"}).encode()
            answer = await hy.client.post("/in/discord", content=body, headers=_signed(body))
            assert answer.status_code == 200 and answer.json() == {"type": deferred}
        await receiver.wait_for(3)
        assert sorted(r.headers["hookyard-event-type"] for r in receiver.received) == [
            "application_command",
            "message_component",
            "modal_submit",
        ]
        forged = json.dumps({"id": "x", "type": 2}).encode()
        refused = await hy.client.post("/in/discord", content=forged, headers=_signed(b"other"))
        assert refused.status_code == 401  # Discord checks that bad signatures are refused
