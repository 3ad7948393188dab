"""SendGrid Event Webhook: SendGrid's published vector, P-256 keys made here with
`cryptography`, the official `sendgrid` package's EventWebhook as a differential oracle, every
single-byte change, the optional window, rotation, key formats and fuzzing."""

from __future__ import annotations

import base64
import functools
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from sendgrid import EventWebhook

from hookyard.errors import ConfigError, VerificationError
from hookyard.verify import SCHEMES, Inbound, Verified, Verifier, VerifyOptions, build_verifier

# sendgrid/sendgrid-python test/unit/test_eventwebhook.py
VECTOR_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRq"
    "e62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
VECTOR_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLt"
    "EZtM="
)
VECTOR_OTHER_SIGNATURE = (
    "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYN"
    "H3j/0="
)
VECTOR_OTHER_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8RE"
    "ntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA=="
)
VECTOR_TS = "1600112502"
VECTOR_BODY = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
                "sg_message_id": (
                    "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0"
                ),
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"  # SendGrid's test: "include the trailing carriage return and newline!"
).encode()

SIG_HEADER = "x-twilio-email-event-webhook-signature"
TS_HEADER = "x-twilio-email-event-webhook-timestamp"
TS = 1_700_000_000
KEY = ec.derive_private_key(0x5EED_0001, ec.SECP256R1())
OLD = ec.derive_private_key(0x5EED_0002, ec.SECP256R1())
BODY = b'[{"event":"delivered","sg_event_id":"a"},{"event":"delivered","sg_event_id":"b"}]\r\n'


def public_b64(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


PUBLIC, OLD_PUBLIC = public_b64(KEY), public_b64(OLD)


def signed(
    body: bytes = BODY, key: ec.EllipticCurvePrivateKey = KEY, ts: str = str(TS)
) -> dict[str, str]:
    der = key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SIG_HEADER: base64.b64encode(der).decode(), TS_HEADER: ts}


@functools.cache
def verifier(keys: tuple[str, ...], tolerance: int | None) -> Verifier:
    return build_verifier("sendgrid", list(keys), VerifyOptions(tolerance=tolerance))


def outcome(
    headers: dict[str, str],
    body: bytes = BODY,
    keys: tuple[str, ...] = (PUBLIC,),
    now: float = TS,
    tolerance: int | None = None,
) -> Verified | str:
    v = verifier(keys, tolerance)
    try:
        return v.verify(Inbound("POST", "https://h/in/sendgrid", headers, body, now))
    except VerificationError as exc:
        return exc.code


def sdk(headers: dict[str, str], body: bytes, key: str = PUBLIC) -> bool:
    ew = EventWebhook(key)
    try:
        return bool(ew.verify_signature(body.decode(), headers[SIG_HEADER], headers[TS_HEADER]))
    except Exception:  # the SDK raises on undecodable base64: that is a "no"
        return False


def test_registered() -> None:
    assert "sendgrid" in SCHEMES


def test_published_vector() -> None:
    headers = {SIG_HEADER: VECTOR_SIGNATURE, TS_HEADER: VECTOR_TS}
    result = outcome(headers, VECTOR_BODY, (VECTOR_KEY,), now=0)
    assert isinstance(result, Verified)
    assert (result.event_id, result.event_type, result.body_dedup) == (None, "dropped", True)
    # the SDK test's negative cases
    assert outcome(headers, VECTOR_BODY, (VECTOR_OTHER_KEY,)) == "bad_signature"
    assert outcome(headers, b"payload", (VECTOR_KEY,)) == "bad_signature"
    assert outcome({**headers, SIG_HEADER: VECTOR_OTHER_SIGNATURE}, VECTOR_BODY, (VECTOR_KEY,)) == (
        "bad_signature"
    )
    assert outcome({**headers, TS_HEADER: "timestamp"}, VECTOR_BODY, (VECTOR_KEY,)) == (
        "bad_signature"
    )
    # without the trailing CRLF it is another body
    assert outcome(headers, VECTOR_BODY[:-2], (VECTOR_KEY,)) == "bad_signature"


def test_signed_here_verifies_and_the_sdk_agrees() -> None:
    headers = signed()
    assert isinstance(outcome(headers), Verified)
    assert sdk(headers, BODY)
    assert not sdk(headers, BODY + b" ")


def test_every_single_byte_change_of_the_body_is_rejected() -> None:
    body = b'[{"event":"open"}]\r\n'  # short: every position x every byte is ~5k ECDSA checks
    headers = signed(body)
    for i in range(len(body)):
        for b in range(256):
            if b != body[i]:
                mutated = body[:i] + bytes([b]) + body[i + 1 :]
                assert outcome(headers, mutated) == "bad_signature", (i, b)
    for mutated in (body[:-1], body[1:], body + b"\n", b" " + body, b""):
        assert outcome(headers, mutated) == "bad_signature"


@pytest.mark.parametrize("name", [SIG_HEADER, TS_HEADER])
def test_every_single_byte_change_of_the_signed_headers_is_rejected(name: str) -> None:
    headers = signed()
    value = headers[name]
    for i, original in enumerate(value):
        for b in range(256):
            c = chr(b)
            if c != original:
                mutated = {**headers, name: value[:i] + c + value[i + 1 :]}
                assert outcome(mutated) in {"bad_signature", "missing_signature"}, (i, c)
    for other in (value[:-1], value[1:], value + "=", "A" + value, value + " "):
        assert outcome({**headers, name: other}) == "bad_signature"
    assert outcome({k: v for k, v in headers.items() if k != name}) == "missing_signature"


def test_sdk_agrees_on_mutated_signatures() -> None:
    headers = signed()
    raw = base64.b64decode(headers[SIG_HEADER])
    for i in range(len(raw)):
        mutated = bytearray(raw)
        mutated[i] ^= 0x10
        other = {**headers, SIG_HEADER: base64.b64encode(mutated).decode()}
        assert not isinstance(outcome(other), Verified)
        assert sdk(other, BODY) is False


def test_ecdsa_high_s_form_also_verifies() -> None:
    """ECDSA's own malleability: (r, n - s) verifies for the same bytes (it is not a new
    signature of anything else). Harmless here: the body hash is the dedup key."""
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    headers = signed()
    r, s = decode_dss_signature(base64.b64decode(headers[SIG_HEADER]))
    flipped = base64.b64encode(encode_dss_signature(r, n - s)).decode()
    assert isinstance(outcome({**headers, SIG_HEADER: flipped}), Verified)
    assert sdk({**headers, SIG_HEADER: flipped}, BODY)


def test_no_window_unless_configured() -> None:
    headers = signed()
    for now in (TS + 10**7, TS - 10**7):
        old = outcome(headers, now=now)
        assert isinstance(old, Verified) and old.body_dedup
        assert isinstance(outcome(headers, now=now, tolerance=0), Verified)
        assert outcome(headers, now=now, tolerance=300) == "stale_timestamp"
    assert isinstance(outcome(headers, now=TS + 300, tolerance=300), Verified)
    assert isinstance(outcome(headers, now=TS - 300, tolerance=300), Verified)
    assert outcome(headers, now=TS + 302, tolerance=300) == "stale_timestamp"
    assert outcome(headers, now=TS - 302, tolerance=300) == "stale_timestamp"


def test_rotation_several_keys() -> None:
    headers = signed(key=OLD)
    assert outcome(headers) == "bad_signature"
    assert isinstance(outcome(headers, keys=(PUBLIC, OLD_PUBLIC)), Verified)


def pem(key: object) -> str:
    public = key.public_key()  # type: ignore[attr-defined]
    data: bytes = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data.decode()


def test_key_formats() -> None:
    assert isinstance(outcome(signed(), keys=(pem(KEY),)), Verified)
    assert isinstance(outcome(signed(), keys=(f"\n {PUBLIC} \n",)), Verified)
    bad = [
        "not base64!",
        PUBLIC[:-4],
        base64.b64encode(b"\x30\x03\x02\x01\x00").decode(),
        pem(ec.derive_private_key(7, ec.SECP384R1())),
        pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
        pem(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))),
    ]
    for secret in bad:
        with pytest.raises(ConfigError) as info:
            build_verifier("sendgrid", [PUBLIC, secret], VerifyOptions())
        assert info.value.key == "secrets" and "#2" in info.value.reason


def test_facts_for_mixed_batches() -> None:
    body = b'[{"event":"open"},{"event":"click"}]'
    result = outcome(signed(body), body)
    assert isinstance(result, Verified)
    assert (result.event_type, result.event_id, result.delivery_id) == (None, None, None)
    typed = build_verifier("sendgrid", [PUBLIC], VerifyOptions(type_header="X-Kind"))
    headers = {**signed(body), "x-kind": "batch"}
    assert typed.verify(Inbound("POST", "u", headers, body, TS)).event_type == "batch"


def test_sign_cannot_forge() -> None:
    v = build_verifier("sendgrid", [PUBLIC], VerifyOptions())
    assert v.sign(BODY, url="u", timestamp=TS, message_id="m") == {}


def test_messages_do_not_leak() -> None:
    headers = signed(b"another")
    with pytest.raises(VerificationError) as info:
        build_verifier("sendgrid", [PUBLIC, OLD_PUBLIC], VerifyOptions()).verify(
            Inbound("POST", "u", headers, BODY, TS)
        )
    assert "2 secrets tried" in info.value.message
    assert headers[SIG_HEADER] not in info.value.message


noise = st.one_of(
    st.text(max_size=120),
    st.text(st.sampled_from("MEUCIQAaz09+/= \t\x00é"), min_size=90, max_size=100),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])),
)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    signature=st.one_of(st.just(signed()[SIG_HEADER]), noise),
    timestamp=st.one_of(st.just(str(TS)), noise),
    body=st.one_of(st.just(BODY), st.binary(max_size=64)),
    now=st.floats(allow_nan=True, allow_infinity=True),
    tolerance=st.sampled_from([None, 0, 300]),
)
def test_arbitrary_input_raises_only_verification_error(
    signature: str, timestamp: str, body: bytes, now: float, tolerance: int | None
) -> None:
    headers = {SIG_HEADER: signature, TS_HEADER: timestamp}
    result = outcome(headers, body, now=now, tolerance=tolerance)
    assert isinstance(result, Verified) or result in {
        "missing_signature",
        "bad_signature",
        "stale_timestamp",
    }


def test_immutable_and_negative_tolerance_refused() -> None:
    v = build_verifier("sendgrid", [PUBLIC], VerifyOptions())
    assert v.scheme == "sendgrid"
    with pytest.raises(AttributeError):
        v.scheme = "other"
    with pytest.raises(AttributeError):
        v._keys = ()  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as info:
        build_verifier("sendgrid", [PUBLIC], VerifyOptions(tolerance=-1))
    assert info.value.key == "tolerance"
