"""The configurable "hmac" scheme, checked against independently computed HMACs."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from hookyard.errors import ConfigError, VerificationError
from hookyard.verify import Inbound, Verifier, VerifyOptions, build_verifier

SECRET = "generic-secret"
TS = 1_700_000_000
BODY = b'{"data": {"kind": "order.paid"}, "id": "e1"}'


def build(*secrets: str, **options: object) -> Verifier:
    return build_verifier("hmac", list(secrets or (SECRET,)), VerifyOptions(**options))  # type: ignore[arg-type]


def inbound(headers: dict[str, str], body: bytes = BODY, now: float = TS) -> Inbound:
    return Inbound("POST", "https://hooks.example/in/g", headers, body, now)


def code_of(v: Verifier, request: Inbound) -> str:
    with pytest.raises(VerificationError) as info:
        v.verify(request)
    return info.value.code


def test_plain_body_hex_sha256() -> None:
    v = build(signature_header="X-Signature")
    sig = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    facts = v.verify(inbound({"x-signature": sig}))
    assert facts.body_dedup is True
    assert facts.replay_key is None  # the body's hash is the key
    assert (facts.event_id, facts.event_type) == (None, None)
    assert v.sign(BODY, url="", timestamp=TS, message_id="m") == {"X-Signature": sig}


def test_timestamp_template_base64_sha512_with_prefix() -> None:
    v = build(
        signature_header="X-Sig",
        timestamp_header="X-Timestamp",
        signed_content="{timestamp}.{body}",
        algorithm="sha512",
        encoding="base64",
        signature_prefix="sha512=",
        type_field="data.kind",
    )
    mac = hmac.new(SECRET.encode(), f"{TS}.".encode() + BODY, hashlib.sha512).digest()
    sig = "sha512=" + base64.b64encode(mac).decode()
    headers = {"x-sig": sig, "x-timestamp": str(TS)}
    facts = v.verify(inbound(headers))
    assert facts.body_dedup is False
    # The signed content (timestamp and body) is the request's: seen again, a replay.
    signed = hashlib.sha256(f"{TS}.".encode() + BODY).hexdigest()
    assert facts.replay_key == "signed:" + signed
    assert facts.event_type == "order.paid"
    assert v.sign(BODY, url="", timestamp=TS, message_id="m") == {
        "X-Sig": sig,
        "X-Timestamp": str(TS),
    }
    assert code_of(v, inbound(headers, now=TS + 301)) == "stale_timestamp"
    assert code_of(v, inbound(headers, now=TS - 301)) == "stale_timestamp"
    assert code_of(v, inbound({"x-sig": sig[7:], "x-timestamp": str(TS)})) == "bad_signature"
    assert code_of(v, inbound({"x-sig": sig})) == "missing_signature"
    assert code_of(v, inbound({"x-sig": sig, "x-timestamp": str(TS + 1)})) == "bad_signature"


def test_tolerance_option() -> None:
    options = dict(signature_header="s", timestamp_header="t", signed_content="{timestamp}{body}")
    v = build(**options)
    headers = {k.lower(): x for k, x in v.sign(BODY, url="", timestamp=TS, message_id="").items()}
    assert build(**options, tolerance=0).verify(inbound(headers, now=TS + 10**6))
    assert code_of(build(**options, tolerance=5), inbound(headers, now=TS + 6)) == (
        "stale_timestamp"
    )


def test_id_template_twitch_style() -> None:
    v = build(
        signature_header="Twitch-Eventsub-Message-Signature",
        timestamp_header="Twitch-Eventsub-Message-Timestamp",
        id_header="Twitch-Eventsub-Message-Id",
        type_header="Twitch-Eventsub-Subscription-Type",
        signed_content="{id}{timestamp}{body}",
        signature_prefix="sha256=",
        tolerance=0,  # Twitch timestamps are RFC 3339, not unix seconds
    )
    ts = "2023-07-19T10:11:12.123456789Z"
    mac = hmac.new(SECRET.encode(), b"msg-1" + ts.encode() + BODY, hashlib.sha256).hexdigest()
    headers = {
        "twitch-eventsub-message-signature": "sha256=" + mac,
        "twitch-eventsub-message-timestamp": ts,
        "twitch-eventsub-message-id": "msg-1",
        "twitch-eventsub-subscription-type": "channel.follow",
    }
    facts = v.verify(inbound(headers))
    assert (facts.event_id, facts.event_type, facts.body_dedup) == (
        "msg-1",
        "channel.follow",
        False,
    )
    del headers["twitch-eventsub-message-id"]
    assert code_of(v, inbound(headers)) == "missing_signature"


def test_literal_braces_in_template() -> None:
    v = build(signature_header="s", signed_content="{{v1}}:{body}")
    mac = hmac.new(SECRET.encode(), b"{v1}:" + BODY, hashlib.sha256).hexdigest()
    assert v.verify(inbound({"s": mac}))


def test_rotation_and_message() -> None:
    v = build("old", SECRET, signature_header="X-Sig", signature_prefix="sha1=", algorithm="sha1")
    mac = hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest()
    assert v.verify(inbound({"x-sig": "sha1=" + mac}))
    with pytest.raises(VerificationError) as info:
        v.verify(inbound({"x-sig": "sha1=" + mac}, body=BODY + b"x"))
    text = str(info.value)
    assert text == (
        "signature did not match; expected header X-Sig "
        '(sha1=<hex HMAC-SHA1 of "{body}">); 2 secrets tried'
    )
    assert mac not in text and SECRET not in text


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({}, "signature_header"),
        ({"signature_header": ""}, "signature_header"),
        ({"signature_header": "bad header"}, "signature_header"),
        ({"signature_header": "s", "algorithm": "md5"}, "algorithm"),
        ({"signature_header": "s", "encoding": "base32"}, "encoding"),
        ({"signature_header": "s", "signed_content": "{timestamp}"}, "signed_content"),
        ({"signature_header": "s", "signed_content": "{body}{nonce}"}, "signed_content"),
        ({"signature_header": "s", "signed_content": "{body!r}"}, "signed_content"),
        ({"signature_header": "s", "signed_content": "{body"}, "signed_content"),
        ({"signature_header": "s", "signed_content": "{timestamp}.{body}"}, "timestamp_header"),
        ({"signature_header": "s", "signed_content": "{id}.{body}"}, "id_header"),
        ({"signature_header": "s", "type_field": "a..b"}, "type_field"),
        ({"signature_header": "s", "tolerance": -1}, "tolerance"),
    ],
)
def test_config_errors(options: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(**options)
    assert info.value.key == key
    assert info.value.reason


def test_no_secrets_is_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        build_verifier("hmac", [], VerifyOptions(signature_header="s"))
    assert info.value.key == "secrets"
