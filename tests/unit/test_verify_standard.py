"""Standard Webhooks / Svix: the published vector, the official library as an oracle."""

from __future__ import annotations

import base64
import hmac
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from hookyard.errors import ConfigError, VerificationError
from hookyard.verify import Inbound, StandardWebhooksVerifier, VerifyOptions, build_verifier

# standard-webhooks/standard-webhooks libraries/python/tests/test_webhooks.py
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TS = 1614265330
PAYLOAD = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def inbound(
    signature: str = SIGNATURE,
    *,
    body: bytes = PAYLOAD,
    ts: int | str = TS,
    msg_id: str = MSG_ID,
    now: float = TS,
    family: str = "webhook-",
) -> Inbound:
    headers = {
        f"{family}id": msg_id,
        f"{family}timestamp": str(ts),
        f"{family}signature": signature,
    }
    return Inbound("POST", "https://hooks.example/in/x", headers, body, now)


def verifier(*secrets: str, tolerance: int | None = None) -> StandardWebhooksVerifier:
    v = build_verifier("standard", list(secrets or (SECRET,)), VerifyOptions(tolerance=tolerance))
    assert isinstance(v, StandardWebhooksVerifier)
    return v


def code_of(v: StandardWebhooksVerifier, request: Inbound) -> str:
    with pytest.raises(VerificationError) as info:
        v.verify(request)
    return info.value.code


def test_vector_passes() -> None:
    facts = verifier().verify(inbound())
    assert facts.event_id == MSG_ID
    assert facts.event_type is None  # the vector's body has no "type"
    assert facts.body_dedup is False
    assert facts.handshake is None


@pytest.mark.parametrize("last", ["A", "F", "=", "0", "+"])
def test_vector_with_last_character_changed_fails(last: str) -> None:
    for signature in (SIGNATURE[:-1] + last, SIGNATURE[:-2] + last + SIGNATURE[-1]):
        if signature != SIGNATURE:
            assert code_of(verifier(), inbound(signature)) == "bad_signature"


def test_several_signatures_any_match_passes() -> None:
    other = "v1," + base64.b64encode(b"x" * 32).decode()
    assert verifier().verify(inbound(f"{other} {SIGNATURE}"))
    assert verifier().verify(inbound(f"v1a,{'A' * 86}== {SIGNATURE} {other}"))
    assert code_of(verifier(), inbound(f"{other} v2,{SIGNATURE[3:]}")) == "bad_signature"


@pytest.mark.parametrize(
    "entry", ["v1", "v1,", ",", "v1,!!!!", "v1,abc", "v1,,", "v1a,xyz", "\x00", "v1,é" * 3]
)
def test_malformed_entries_do_not_match_and_do_not_crash(entry: str) -> None:
    assert code_of(verifier(), inbound(entry)) == "bad_signature"
    assert verifier().verify(inbound(f"{entry} {SIGNATURE}"))


@pytest.mark.parametrize("skew", [301, -301, 3600, -86400])
def test_timestamp_outside_five_minutes_fails_by_default(skew: int) -> None:
    assert code_of(verifier(), inbound(now=TS + skew)) == "stale_timestamp"


@pytest.mark.parametrize("skew", [300, -300, 0, 299.5])
def test_timestamp_within_five_minutes_passes(skew: float) -> None:
    assert verifier().verify(inbound(now=TS + skew))


def test_tolerance_zero_accepts_old_vector() -> None:
    assert verifier(tolerance=0).verify(inbound(now=time.time()))


def test_custom_tolerance() -> None:
    assert verifier(tolerance=10).verify(inbound(now=TS + 10))
    assert code_of(verifier(tolerance=10), inbound(now=TS + 11)) == "stale_timestamp"


def test_unparseable_timestamp_is_rejected_unless_window_is_off() -> None:
    # A correct signature over a non-integer timestamp: authentic, but no usable clock.
    key = base64.b64decode(SECRET[6:])
    ts = "1614265330.0"
    mac = hmac.digest(key, f"{MSG_ID}.{ts}.".encode() + PAYLOAD, "sha256")
    request = inbound("v1," + base64.b64encode(mac).decode(), ts=ts)
    assert code_of(verifier(), request) == "bad_signature"
    assert verifier(tolerance=0).verify(request)


def test_unpadded_and_unprefixed_secrets_are_accepted() -> None:
    key = bytes(range(25))  # base64 of 25 bytes ends in "=="
    padded = base64.b64encode(key).decode()
    assert padded.endswith("==")
    oracle = Webhook("whsec_" + padded)
    header = oracle.sign(MSG_ID, datetime.fromtimestamp(TS, tz=UTC), PAYLOAD.decode())
    for secret in ("whsec_" + padded, "whsec_" + padded.rstrip("="), padded, padded.rstrip("=")):
        assert verifier(secret).verify(inbound(header))


@pytest.mark.parametrize("secret", ["", "   ", "whsec_", "whsec_!!notbase64", "whsec_a"])
def test_unusable_secret_is_a_config_error(secret: str) -> None:
    with pytest.raises(ConfigError) as info:
        verifier(secret)
    assert info.value.key == "secrets"
    if len(secret) > 6:
        assert secret not in str(info.value)


def test_missing_headers() -> None:
    v = verifier()
    full = inbound()
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        headers = {k: val for k, val in full.headers.items() if k != name}
        request = Inbound("POST", "", headers, PAYLOAD, TS)
        assert code_of(v, request) == "missing_signature"
    assert code_of(v, Inbound("POST", "", {}, PAYLOAD, TS)) == "missing_signature"


def test_svix_headers_are_accepted_and_svix_scheme_signs_them() -> None:
    assert verifier().verify(inbound(family="svix-"))
    svix = build_verifier("svix", [SECRET], VerifyOptions())
    assert svix.scheme == "svix"
    assert svix.verify(inbound(family="svix-")).event_id == MSG_ID
    headers = svix.sign(PAYLOAD, url="", timestamp=TS, message_id=MSG_ID)
    assert headers == {"svix-id": MSG_ID, "svix-timestamp": str(TS), "svix-signature": SIGNATURE}


def test_sign_reproduces_the_vector() -> None:
    headers = verifier().sign(PAYLOAD, url="https://x", timestamp=TS, message_id=MSG_ID)
    assert headers == {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TS),
        "webhook-signature": SIGNATURE,
    }


def test_rotation_second_secret_accepted() -> None:
    old = "whsec_" + base64.b64encode(b"o" * 32).decode()
    assert code_of(verifier(old), inbound()) == "bad_signature"
    assert verifier(old, SECRET).verify(inbound())


def test_event_type_from_json_body_and_non_json_tolerated() -> None:
    v = verifier()
    for body, expected in [
        (b'{"type": "invoice.paid", "data": {}}', "invoice.paid"),
        (b'  {"type": "a.b"}', "a.b"),
        (b'{"type": 5}', "5"),  # integers are taken as text
        (b'{"type": true}', None),
        (b'["type"]', None),
        (b"type=x", None),
        (b'{"type": "x"', None),
        (b"\xff\xfe", None),
        (b"", None),
    ]:
        headers = v.sign(body, url="", timestamp=TS, message_id="m1")
        facts = v.verify(Inbound("POST", "", headers, body, TS))
        assert facts.event_type == expected
        assert facts.event_id == "m1"


def test_id_and_type_overrides() -> None:
    v = build_verifier(
        "standard", [SECRET], VerifyOptions(id_header="X-Event-Id", type_field="data.kind")
    )
    body = b'{"type": "outer", "data": {"kind": "inner"}}'
    headers = v.sign(body, url="", timestamp=TS, message_id="m1")
    headers["x-event-id"] = "evt_9"
    facts = v.verify(Inbound("POST", "", headers, body, TS))
    assert (facts.event_id, facts.event_type) == ("evt_9", "inner")


def test_message_never_contains_secret_or_expected_signature() -> None:
    v = verifier()
    good = v.sign(b"other body", url="", timestamp=TS, message_id=MSG_ID)["webhook-signature"]
    with pytest.raises(VerificationError) as info:
        v.verify(inbound(body=b"other body!"))
    text = str(info.value)
    assert "webhook-signature" in text
    assert "1 secret tried" in text
    for needle in (SECRET, SECRET[6:], good[3:], SIGNATURE[3:]):
        assert needle not in text


secrets_st = st.binary(min_size=24, max_size=64).map(
    lambda k: "whsec_" + base64.b64encode(k).decode()
)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    secret=secrets_st, body=st.text(max_size=200), msg_id=st.from_regex(r"msg_[A-Za-z0-9]{1,20}")
)
def test_oracle_library_signs_we_verify(secret: str, body: str, msg_id: str) -> None:
    now = int(time.time())
    header = Webhook(secret).sign(msg_id, datetime.fromtimestamp(now, tz=UTC), body)
    wire = msg_id.encode().decode("latin-1")  # its UTF-8 bytes, as ingest reads headers
    request = inbound(header, body=body.encode(), ts=now, msg_id=wire, now=now)
    assert verifier(secret).verify(request).event_id == wire


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    secret=secrets_st, body=st.text(max_size=200), msg_id=st.from_regex(r"msg_[A-Za-z0-9]{1,20}")
)
def test_oracle_library_verifies_what_we_sign(secret: str, body: str, msg_id: str) -> None:
    now = int(time.time())
    headers = verifier(secret).sign(body.encode(), url="", timestamp=now, message_id=msg_id)
    Webhook(secret).verify(body.encode(), headers, json_parse=False)


def test_repeated_signature_headers_joined_with_comma_space() -> None:
    other = "v1," + base64.b64encode(b"x" * 32).decode()
    assert verifier().verify(inbound(f"{SIGNATURE}, {other}"))
    assert verifier().verify(inbound(f"{other}, {SIGNATURE}"))
