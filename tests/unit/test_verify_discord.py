"""Discord interactions: Ed25519 keys made here with `cryptography`, signatures made with the
private key (never by Hookyard), PyNaCl (through the `discord-interactions` package) as a
second, independent Ed25519 implementation; every single-byte change, windows, rotation, the
PING handshake and fuzzing."""

from __future__ import annotations

import functools
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from discord_interactions import verify_key
from hypothesis import given, settings
from hypothesis import strategies as st

from hookyard.errors import ConfigError, VerificationError
from hookyard.verify import SCHEMES, Inbound, Verified, Verifier, VerifyOptions, build_verifier

TS = 1_700_000_000
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OLD = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
BODY = b'{"type":2,"id":"1234567890","data":{"name":"hi"}}'
PING = b'{"type":1,"id":"1","application_id":"2","token":"t","version":1}'


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


PUBLIC, OLD_PUBLIC = public_hex(KEY), public_hex(OLD)


def signed(body: bytes = BODY, key: Ed25519PrivateKey = KEY, ts: str = str(TS)) -> dict[str, str]:
    return {
        "x-signature-ed25519": key.sign(ts.encode() + body).hex(),
        "x-signature-timestamp": ts,
    }


@functools.cache
def verifier(keys: tuple[str, ...], tolerance: int | None) -> Verifier:
    return build_verifier("discord", list(keys), VerifyOptions(tolerance=tolerance))


def outcome(
    headers: dict[str, str],
    body: bytes = BODY,
    keys: tuple[str, ...] = (PUBLIC,),
    now: float = TS,
    tolerance: int | None = None,
) -> Verified | str:
    v = verifier(keys, tolerance)
    try:
        return v.verify(Inbound("POST", "https://h/in/discord", headers, body, now))
    except VerificationError as exc:
        return exc.code


def test_registered() -> None:
    assert "discord" in SCHEMES


def test_signed_request_verifies_and_pynacl_agrees() -> None:
    headers = signed()
    result = outcome(headers)
    assert isinstance(result, Verified)
    assert (result.event_id, result.event_type, result.handshake) == (
        "1234567890",
        "application_command",
        None,
    )
    assert verify_key(BODY, headers["x-signature-ed25519"], str(TS), PUBLIC)


def test_every_single_byte_change_of_the_body_is_rejected() -> None:
    body = b'{"type":2,"id":"7"}'  # short: every position x every byte is ~5k Ed25519 checks
    headers = signed(body)
    for i in range(len(body)):
        for b in range(256):
            if b != body[i]:
                mutated = body[:i] + bytes([b]) + body[i + 1 :]
                assert outcome(headers, mutated) == "bad_signature", (i, b)
    for mutated in (body[:-1], body[1:], body + b"\n", b" " + body, b""):
        assert outcome(headers, mutated) == "bad_signature"


@pytest.mark.parametrize("name", ["x-signature-ed25519", "x-signature-timestamp"])
def test_every_single_byte_change_of_the_signed_headers_is_rejected(name: str) -> None:
    """The one accepted change: a hex digit of the signature in the other case (same bytes)."""
    headers = signed()
    value = headers[name]
    for i, original in enumerate(value):
        for b in range(256):
            c = chr(b)
            if c == original:
                continue
            result = outcome({**headers, name: value[:i] + c + value[i + 1 :]})
            if isinstance(result, Verified):
                assert name == "x-signature-ed25519", (i, c)
                assert original in "abcdef" and c == original.upper(), (i, c)
            else:
                assert result in {"bad_signature", "missing_signature"}, (i, c)
    for other in (value[:-1], value[1:], value + "0", "0" + value):
        assert outcome({**headers, name: other}) == "bad_signature"
    assert outcome({k: v for k, v in headers.items() if k != name}) == "missing_signature"


def test_pynacl_agrees_on_mutated_signatures() -> None:
    """Differential: for flipped bits of the signature both implementations say no, and both
    say yes to the original."""
    headers = signed()
    raw = bytes.fromhex(headers["x-signature-ed25519"])
    for i in range(len(raw)):
        for bit in (0, 3, 7):
            mutated = bytearray(raw)
            mutated[i] ^= 1 << bit
            hexed = mutated.hex()
            ours = isinstance(outcome({**headers, "x-signature-ed25519": hexed}), Verified)
            assert ours is False
            assert verify_key(BODY, hexed, str(TS), PUBLIC) is False


def test_malleated_signature_is_rejected() -> None:
    """S + L (the group order) is the same point but not a valid encoding: RFC 8032 says
    reject it, and Hookyard does."""
    order = 2**252 + 27742317777372353535851937790883648493
    headers = signed()
    raw = bytes.fromhex(headers["x-signature-ed25519"])
    malleated = raw[:32] + (int.from_bytes(raw[32:], "little") + order).to_bytes(32, "little")
    assert outcome({**headers, "x-signature-ed25519": malleated.hex()}) == "bad_signature"


def test_window_both_ways_and_off() -> None:
    headers = signed()
    assert isinstance(outcome(headers, now=TS + 300), Verified)
    assert isinstance(outcome(headers, now=TS - 300), Verified)
    assert outcome(headers, now=TS + 302) == "stale_timestamp"
    assert outcome(headers, now=TS - 302) == "stale_timestamp"
    assert outcome(headers, now=TS + 12, tolerance=10) == "stale_timestamp"
    assert isinstance(outcome(headers, now=TS + 10**7, tolerance=0), Verified)
    # a signed timestamp that is not unix seconds
    odd = signed(ts="2023-11-14T22:13:20Z")
    assert outcome(odd) == "bad_signature"
    assert isinstance(outcome(odd, tolerance=0), Verified)


def test_rotation_several_keys() -> None:
    headers = signed(key=OLD)
    assert outcome(headers) == "bad_signature"
    assert isinstance(outcome(headers, keys=(PUBLIC, OLD_PUBLIC)), Verified)
    assert isinstance(outcome(signed(), keys=(OLD_PUBLIC, PUBLIC)), Verified)


def test_ping_is_answered_with_pong_only_when_signed() -> None:
    result = outcome(signed(PING), PING)
    assert isinstance(result, Verified) and result.handshake is not None
    assert result.handshake.status == 200
    assert result.handshake.content_type == "application/json"
    assert json.loads(result.handshake.body) == {"type": 1}
    # Discord sends deliberately invalid signatures and expects a 401
    assert outcome(signed(PING, key=OLD), PING) == "bad_signature"
    assert outcome({**signed(PING), "x-signature-ed25519": "00" * 64}, PING) == "bad_signature"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b'{"type":3,"id":"9"}', "message_component"),
        (b'{"type":4,"id":"9"}', "application_command_autocomplete"),
        (b'{"type":5,"id":"9"}', "modal_submit"),
        (b'{"type":42,"id":"9"}', "42"),
        (b'{"type":true,"id":"9"}', None),
        (b'{"type":"1","id":9}', None),
        (b"[1]", None),
    ],
)
def test_facts(body: bytes, kind: str | None) -> None:
    result = outcome(signed(body), body)
    assert isinstance(result, Verified)
    assert result.event_type == kind and result.handshake is None and not result.body_dedup
    assert result.event_id == ("9" if b'"id":"9"' in body else None)


@pytest.mark.parametrize(
    "secret",
    [
        "not hex",
        "ab" * 31,
        "ab" * 33,
        " " + "zz" * 32,
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----",
    ],
)
def test_bad_public_keys_are_config_errors(secret: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_verifier("discord", [PUBLIC, secret], VerifyOptions())
    assert info.value.key == "secrets" and "#2" in info.value.reason
    assert secret.strip() not in info.value.reason


def test_upper_case_key_and_surrounding_space_accepted() -> None:
    assert isinstance(outcome(signed(), keys=(f"  {PUBLIC.upper()}\n",)), Verified)


def test_sign_cannot_forge() -> None:
    v = build_verifier("discord", [PUBLIC], VerifyOptions())
    assert v.sign(BODY, url="u", timestamp=TS, message_id="m") == {}
    assert outcome({}) == "missing_signature"


def test_messages_do_not_leak() -> None:
    headers = signed(b"another")
    with pytest.raises(VerificationError) as info:
        build_verifier("discord", [PUBLIC, OLD_PUBLIC], VerifyOptions()).verify(
            Inbound("POST", "u", headers, BODY, TS)
        )
    assert "2 secrets tried" in info.value.message
    assert headers["x-signature-ed25519"] not in info.value.message


noise = st.one_of(
    st.text(max_size=140),
    st.text(st.sampled_from("0123456789abcdefABCDEF \t\x00é"), min_size=126, max_size=130),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])),
)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(
    signature=st.one_of(st.just(signed()["x-signature-ed25519"]), noise),
    timestamp=st.one_of(st.just(str(TS)), noise),
    body=st.one_of(st.just(BODY), st.just(PING), st.binary(max_size=64)),
    now=st.floats(allow_nan=True, allow_infinity=True),
)
def test_arbitrary_input_raises_only_verification_error(
    signature: str, timestamp: str, body: bytes, now: float
) -> None:
    headers = {"x-signature-ed25519": signature, "x-signature-timestamp": timestamp}
    result = outcome(headers, body, now=now)
    assert isinstance(result, Verified) or result in {
        "missing_signature",
        "bad_signature",
        "stale_timestamp",
    }


def test_immutable_and_negative_tolerance_refused() -> None:
    v = build_verifier("discord", [PUBLIC], VerifyOptions())
    assert v.scheme == "discord"
    with pytest.raises(AttributeError):
        v.scheme = "other"
    with pytest.raises(AttributeError):
        v._keys = ()  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as info:
        build_verifier("discord", [PUBLIC], VerifyOptions(tolerance=-1))
    assert info.value.key == "tolerance"
