"""Slack: the SDK's published vector, the SDK as an oracle, and the url_verification handshake."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk.signature import Clock, SignatureVerifier

from hookyard.errors import VerificationError
from hookyard.verify import Handshake, Inbound, Verifier, VerifyOptions, build_verifier

# slackapi/python-slack-sdk tests/slack_sdk/signature/test_signature_verifier.py
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TS = "1531420618"
BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibI"
    b"GlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
NOW = int(TS) + 12


class FixedClock(Clock):
    def now(self) -> float:
        return float(NOW)


def slack(*secrets: str, tolerance: int | None = None) -> Verifier:
    return build_verifier("slack", list(secrets or (SECRET,)), VerifyOptions(tolerance=tolerance))


def inbound(body: bytes, signature: str, ts: str = TS, now: float = NOW) -> Inbound:
    headers = {"x-slack-signature": signature, "x-slack-request-timestamp": ts}
    return Inbound("POST", "https://hooks.example/in/slack", headers, body, now)


def signed(body: bytes, v: Verifier | None = None) -> Inbound:
    headers = (v or slack()).sign(body, url="", timestamp=NOW, message_id="x")
    return inbound(body, headers["X-Slack-Signature"], headers["X-Slack-Request-Timestamp"])


def code_of(v: Verifier, request: Inbound) -> str:
    with pytest.raises(VerificationError) as info:
        v.verify(request)
    return info.value.code


def test_vector_slash_command() -> None:
    facts = slack().verify(inbound(BODY, SIGNATURE))
    assert (facts.event_type, facts.event_id, facts.handshake) == ("command", None, None)


def test_vector_tampered_and_stale() -> None:
    assert code_of(slack(), inbound(BODY + b"&x=1", SIGNATURE)) == "bad_signature"
    assert code_of(slack(), inbound(BODY, SIGNATURE[:-1] + "4")) == "bad_signature"
    assert code_of(slack(), inbound(BODY, "v1=" + SIGNATURE[3:])) == "bad_signature"
    assert code_of(slack(), inbound(BODY, SIGNATURE, ts=str(int(TS) + 1))) == "bad_signature"
    assert code_of(slack(), inbound(BODY, SIGNATURE, now=int(TS) + 301)) == "stale_timestamp"
    assert code_of(slack(), inbound(BODY, SIGNATURE, now=int(TS) - 301)) == "stale_timestamp"
    assert slack(tolerance=0).verify(inbound(BODY, SIGNATURE, now=2_000_000_000))


def test_missing_headers() -> None:
    v = slack()
    assert code_of(v, Inbound("POST", "", {}, BODY, NOW)) == "missing_signature"
    only_sig = Inbound("POST", "", {"x-slack-signature": SIGNATURE}, BODY, NOW)
    assert code_of(v, only_sig) == "missing_signature"


def test_sdk_agrees_on_vector_and_our_sign() -> None:
    sdk = SignatureVerifier(SECRET, clock=FixedClock())
    assert sdk.is_valid(body=BODY, timestamp=TS, signature=SIGNATURE)
    headers = slack().sign(BODY, url="", timestamp=int(TS), message_id="x")
    assert headers == {"X-Slack-Request-Timestamp": TS, "X-Slack-Signature": SIGNATURE}


def test_url_verification_handshake() -> None:
    body = json.dumps(
        {
            "token": "t",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
    ).encode()
    facts = slack().verify(signed(body))
    assert facts.handshake == Handshake(
        200, "text/plain", b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    )
    assert facts.event_type == "url_verification"


def test_url_verification_not_answered_when_signature_bad() -> None:
    body = b'{"type": "url_verification", "challenge": "abc"}'
    request = signed(body, slack("some other secret"))
    assert code_of(slack(), request) == "bad_signature"


def test_event_callback_facts() -> None:
    body = (
        b'{"type": "event_callback", "event_id": "Ev08MFMKH6", "team_id": "T1",'
        b' "event": {"type": "app_mention", "text": "hi"}}'
    )
    facts = slack().verify(signed(body))
    assert (facts.event_id, facts.event_type, facts.handshake) == (
        "Ev08MFMKH6",
        "app_mention",
        None,
    )
    facts = slack().verify(signed(b'{"type": "event_callback", "event": []}'))
    assert facts.event_type is None
    facts = slack().verify(signed(b'{"type": "app_rate_limited", "minute_rate_limited": 1}'))
    assert facts.event_type == "app_rate_limited"


def test_form_bodies_which_have_no_id_are_known_by_their_hash() -> None:
    """Slash commands and interactions carry no event id: a replay inside the window must
    still be a duplicate, so their body hash is a key; Events API bodies have their event_id."""
    assert slack().verify(signed(BODY)).body_dedup
    assert slack().verify(signed(b"payload=%7B%22type%22%3A%22block_actions%22%7D")).body_dedup
    event = b'{"type": "event_callback", "event_id": "Ev1", "event": {"type": "x"}}'
    assert not slack().verify(signed(event)).body_dedup


def test_interactive_payload_type() -> None:
    body = b"payload=%7B%22type%22%3A%22block_actions%22%2C%22x%22%3A+1%7D"
    assert slack().verify(signed(body)).event_type == "block_actions"
    assert slack().verify(signed(b"payload=not-json")).event_type is None
    assert slack().verify(signed(b"\xff\x00garbage")).event_type is None


def test_rotation() -> None:
    request = inbound(BODY, SIGNATURE)
    assert code_of(slack("old-secret"), request) == "bad_signature"
    assert slack("old-secret", SECRET).verify(request)


@settings(derandomize=True, max_examples=80, deadline=None)
@given(body=st.text(max_size=300), secret=st.from_regex(r"[0-9a-z]{32}", fullmatch=True))
def test_sdk_oracle_both_directions(body: str, secret: str) -> None:
    sdk = SignatureVerifier(secret, clock=FixedClock())
    ours = slack(secret)
    sdk_sig = sdk.generate_signature(timestamp=str(NOW), body=body)
    assert sdk_sig is not None
    assert ours.verify(inbound(body.encode(), sdk_sig, ts=str(NOW)))
    headers = ours.sign(body.encode(), url="", timestamp=NOW, message_id="x")
    assert sdk.is_valid_request(body.encode(), headers)
