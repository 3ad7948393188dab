"""Stripe: the official SDK as a differential oracle, both directions."""

from __future__ import annotations

import time

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from hookyard.errors import VerificationError
from hookyard.verify import Inbound, VerifyOptions, build_verifier

SECRET = "whsec_test_secret"
TS = 1_700_000_000
BODY = b'{"id": "evt_123", "object": "event", "type": "invoice.paid"}'


def inbound(header: str | None, body: bytes = BODY, now: float = TS) -> Inbound:
    headers = {} if header is None else {"stripe-signature": header}
    return Inbound("POST", "https://hooks.example/in/stripe", headers, body, now)


def sdk_header(body: bytes, secret: str = SECRET, ts: int = TS) -> str:
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, ts)
    assert isinstance(header, str)
    return header


def code_of(request: Inbound, *secrets: str, tolerance: int | None = None) -> str:
    v = build_verifier("stripe", list(secrets or (SECRET,)), VerifyOptions(tolerance=tolerance))
    with pytest.raises(VerificationError) as info:
        v.verify(request)
    return info.value.code


def test_sdk_signed_header_verifies_with_facts_from_body() -> None:
    v = build_verifier("stripe", [SECRET], VerifyOptions())
    facts = v.verify(inbound(sdk_header(BODY)))
    assert (facts.event_id, facts.event_type, facts.body_dedup) == (
        "evt_123",
        "invoice.paid",
        False,
    )


def test_our_sign_matches_sdk_exactly() -> None:
    v = build_verifier("stripe", [SECRET], VerifyOptions())
    assert v.sign(BODY, url="", timestamp=TS, message_id="x") == {
        "Stripe-Signature": sdk_header(BODY)
    }


def test_several_v1_and_other_schemes_in_header() -> None:
    v = build_verifier("stripe", [SECRET], VerifyOptions())
    good = sdk_header(BODY)
    t, v1 = good.split(",")
    bogus = "v1=" + "0" * 64
    assert v.verify(inbound(f"{t},{bogus},{v1},v0=abc"))
    assert v.verify(inbound(f"{v1},{t}"))
    assert code_of(inbound(f"{t},{bogus}")) == "bad_signature"
    assert code_of(inbound(f"{t},v0={v1[3:]}")) == "bad_signature"
    assert code_of(inbound(v1)) == "bad_signature"  # no t=


def test_missing_header() -> None:
    assert code_of(inbound(None)) == "missing_signature"
    assert code_of(inbound("")) == "missing_signature"


@pytest.mark.parametrize("skew", [301, -301, 10_000])
def test_stale_timestamp(skew: int) -> None:
    assert code_of(inbound(sdk_header(BODY), now=TS + skew)) == "stale_timestamp"
    v = build_verifier("stripe", [SECRET], VerifyOptions(tolerance=0))
    assert v.verify(inbound(sdk_header(BODY), now=TS + skew))


def test_rotation_second_secret() -> None:
    header = sdk_header(BODY, secret="whsec_new")
    assert code_of(inbound(header), SECRET) == "bad_signature"
    v = build_verifier("stripe", [SECRET, "whsec_new"], VerifyOptions())
    assert v.verify(inbound(header)).event_id == "evt_123"


def test_non_json_body_still_verifies() -> None:
    v = build_verifier("stripe", [SECRET], VerifyOptions())
    for body in (b"not json", b"[1,2]", b'{"id": 7}', b"\xff"):
        header = v.sign(body, url="", timestamp=TS, message_id="x")["Stripe-Signature"]
        facts = v.verify(inbound(header, body))
        assert facts.event_type is None


def test_message_names_expectation_not_secrets() -> None:
    v = build_verifier("stripe", [SECRET, "whsec_other"], VerifyOptions())
    expected = sdk_header(b"{}")
    with pytest.raises(VerificationError) as info:
        v.verify(inbound(expected, b"{ }"))
    text = str(info.value)
    assert "Stripe-Signature" in text and "2 secrets tried" in text
    assert SECRET not in text and "whsec_other" not in text and expected[-64:] not in text


bodies = st.text(max_size=300).map(str.encode)
secrets = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


@settings(derandomize=True, max_examples=80, deadline=None)
@given(body=bodies, secret=secrets)
def test_sdk_signs_we_verify(body: bytes, secret: str) -> None:
    v = build_verifier("stripe", [secret], VerifyOptions())
    assert v.verify(inbound(sdk_header(body, secret), body))


@settings(derandomize=True, max_examples=80, deadline=None)
@given(body=bodies, secret=secrets)
def test_we_sign_sdk_verifies(body: bytes, secret: str) -> None:
    now = int(time.time())
    v = build_verifier("stripe", [secret], VerifyOptions())
    header = v.sign(body, url="", timestamp=now, message_id="x")["Stripe-Signature"]
    assert stripe.WebhookSignature.verify_header(body, header, secret, tolerance=300)
