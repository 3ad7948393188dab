"""HubSpot signature v3: the official SDK (hubspot-api-client's Signature) as a differential
oracle, signatures computed independently here, every single-byte change of body, URL, method
and headers, the millisecond window both ways, rotation, the decoded-URI form and fuzzing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from hubspot.utils.signature import Signature
from hypothesis import given, settings
from hypothesis import strategies as st

from hookyard.errors import ConfigError, VerificationError
from hookyard.verify import SCHEMES, Inbound, Verified, VerifyOptions, build_verifier

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
OLD = "xxxxxxxx-old"
TS = 1_700_000_000
MS = str(TS * 1000 + 123)
URL = "https://hooks.example.com/in/hubspot?portal=62515"
BODY = b'[{"eventId":1,"subscriptionType":"contact.creation","objectId":123}]'


def v3(secret: str, method: str, url: str, body: bytes, ms: str) -> str:
    data = method.encode() + url.encode() + body + ms.encode()
    return base64.b64encode(hmac.new(secret.encode(), data, hashlib.sha256).digest()).decode()


def signed(
    body: bytes = BODY, secret: str = SECRET, url: str = URL, ms: str = MS
) -> dict[str, str]:
    return {
        "x-hubspot-signature-v3": v3(secret, "POST", url, body, ms),
        "x-hubspot-request-timestamp": ms,
    }


def outcome(
    headers: dict[str, str],
    body: bytes = BODY,
    url: str = URL,
    secrets: tuple[str, ...] = (SECRET,),
    now: float = TS,
    tolerance: int | None = None,
    method: str = "POST",
) -> Verified | str:
    v = build_verifier("hubspot", list(secrets), VerifyOptions(tolerance=tolerance))
    try:
        return v.verify(Inbound(method, url, headers, body, now))
    except VerificationError as exc:
        return exc.code


def test_registered() -> None:
    assert "hubspot" in SCHEMES


def test_sdk_signature_verifies_and_sdk_accepts_ours() -> None:
    sdk = Signature.get_signature(SECRET, BODY.decode(), "v3", URL, "POST", MS)
    assert sdk == signed()["x-hubspot-signature-v3"]
    result = outcome({"x-hubspot-signature-v3": sdk, "x-hubspot-request-timestamp": MS})
    assert isinstance(result, Verified)
    assert (result.event_type, result.event_id, result.body_dedup) == (
        "contact.creation",
        None,
        False,
    )
    # sign() output, checked by the SDK (which reads the real clock)
    now = int(time.time())
    v = build_verifier("hubspot", [SECRET], VerifyOptions())
    headers = v.sign(BODY, url=URL, timestamp=now, message_id="m")
    assert Signature.is_valid(
        headers["X-HubSpot-Signature-v3"],
        SECRET,
        BODY.decode(),
        URL,
        "POST",
        "v3",
        headers["X-HubSpot-Request-Timestamp"],
    )


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    body=st.text(max_size=60),
    path=st.text(st.sampled_from("abc/?=&%:@!$'()*,;+0123456789"), max_size=30),
    secret=st.text(min_size=1, max_size=20).filter(str.strip),
)
def test_sdk_differential(body: str, path: str, secret: str) -> None:
    url = "https://h.example/in/hubspot" + path
    sdk = Signature.get_signature(secret, body, "v3", url, "POST", MS)
    headers = {"x-hubspot-signature-v3": sdk, "x-hubspot-request-timestamp": MS}
    assert isinstance(outcome(headers, body.encode(), url, (secret,)), Verified)
    assert outcome(headers, body.encode() + b" ", url, (secret,)) == "bad_signature"


def test_every_single_byte_change_of_the_body_is_rejected() -> None:
    headers = signed()
    for i in range(len(BODY)):
        for b in range(256):
            if b != BODY[i]:
                mutated = BODY[:i] + bytes([b]) + BODY[i + 1 :]
                assert outcome(headers, mutated) == "bad_signature", (i, b)
    for mutated in (BODY[:-1], BODY[1:], BODY + b"\n", b" " + BODY, b""):
        assert outcome(headers, mutated) == "bad_signature"


@pytest.mark.parametrize("name", ["x-hubspot-signature-v3", "x-hubspot-request-timestamp"])
def test_every_single_byte_change_of_the_signed_headers_is_rejected(name: str) -> None:
    headers = signed()
    value = headers[name]
    for i, original in enumerate(value):
        for b in range(256):
            c = chr(b)
            if c != original:
                mutated = {**headers, name: value[:i] + c + value[i + 1 :]}
                assert outcome(mutated) in {"bad_signature", "missing_signature"}, (i, c)
    for other in (value[:-1], value[1:], value + "0", "0" + value):
        assert outcome({**headers, name: other}) == "bad_signature"
    assert outcome({k: v for k, v in headers.items() if k != name}) == "missing_signature"


def test_url_and_method_are_signed() -> None:
    headers = signed()
    for i in range(len(URL)):
        for c in "/:.?&=%aZ09":
            if c != URL[i]:
                url = URL[:i] + c + URL[i + 1 :]
                assert outcome(headers, url=url) == "bad_signature", url
    for url in (URL + "&", URL.replace("https", "http"), URL.replace(".com", ".com:443")):
        assert outcome(headers, url=url) == "bad_signature"
    assert outcome(headers, method="PUT") == "bad_signature"


def test_listed_escapes_may_be_signed_decoded() -> None:
    """HubSpot's docs: the URI is signed with %3A, %2F, … decoded (list UNVERIFIED); the SDK
    signs it as given. Both are accepted; other escapes stay as they are."""
    url = "https://h.example/in/hubspot?next=%2Fa%3Ab%40c&q=a%20b"
    decoded = "https://h.example/in/hubspot?next=/a:b@c&q=a%20b"
    assert isinstance(outcome(signed(url=decoded), url=url), Verified)
    assert isinstance(outcome(signed(url=url), url=url), Verified)
    fully = "https://h.example/in/hubspot?next=/a:b@c&q=a b"
    assert outcome(signed(url=fully), url=url) == "bad_signature"
    # lower-case escapes name the same characters
    lower = "https://h.example/in/hubspot?next=%2fa%3ab%40c&q=a%20b"
    assert isinstance(outcome(signed(url=decoded), url=lower), Verified)


def test_window_in_milliseconds_both_ways() -> None:
    headers = signed()
    assert isinstance(outcome(headers, now=TS + 300), Verified)
    assert isinstance(outcome(headers, now=TS - 299), Verified)
    assert outcome(headers, now=TS + 302) == "stale_timestamp"
    assert outcome(headers, now=TS - 302) == "stale_timestamp"
    assert outcome(headers, now=TS + 12, tolerance=10) == "stale_timestamp"
    assert isinstance(outcome(headers, now=TS + 10**8, tolerance=0), Verified)
    # a timestamp in seconds (not milliseconds) is decades off
    seconds = signed(ms=str(TS))
    assert outcome(seconds) == "stale_timestamp"
    assert outcome(signed(ms="17e11")) == "bad_signature"


def test_rotation() -> None:
    headers = signed(secret=OLD)
    assert outcome(headers) == "bad_signature"
    assert isinstance(outcome(headers, secrets=(SECRET, OLD)), Verified)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (
            b'[{"subscriptionType":"deal.creation"},{"subscriptionType":"deal.creation"}]',
            "deal.creation",
        ),
        (b'[{"subscriptionType":"deal.creation"},{"subscriptionType":"contact.deletion"}]', None),
        (b'{"subscriptionType":"deal.creation"}', "deal.creation"),
        (b"[]", None),
        (b"not json", None),
        (b'[{"subscriptionType":["deal.creation"]}]', None),  # unhashable: was a 500
        (b'[{"subscriptionType":{"a":1}},{"subscriptionType":"deal.creation"}]', None),
        (b'[{"subscriptionType":"deal.creation"},{"subscriptionType":""}]', None),
    ],
)
def test_facts(body: bytes, kind: str | None) -> None:
    result = outcome(signed(body), body)
    assert isinstance(result, Verified) and result.event_type == kind


def test_messages_do_not_leak() -> None:
    headers = signed(b"another")
    with pytest.raises(VerificationError) as info:
        build_verifier("hubspot", [SECRET, OLD], VerifyOptions()).verify(
            Inbound("POST", URL, headers, BODY, TS)
        )
    assert "2 secrets tried" in info.value.message
    for secret in (SECRET, OLD, headers["x-hubspot-signature-v3"]):
        assert secret not in info.value.message


noise = st.one_of(
    st.text(max_size=60),
    st.text(st.sampled_from("0123456789+/=abcAB \t\x00é"), min_size=40, max_size=48),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])),
)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(
    signature=st.one_of(st.just(signed()["x-hubspot-signature-v3"]), noise),
    timestamp=st.one_of(st.just(MS), noise, st.integers(0, 10**20).map(str)),
    url=st.one_of(st.just(URL), noise.map(lambda s: "https://h/" + s)),
    body=st.one_of(st.just(BODY), st.binary(max_size=60)),
    now=st.floats(allow_nan=True, allow_infinity=True),
)
def test_arbitrary_input_raises_only_verification_error(
    signature: str, timestamp: str, url: str, body: bytes, now: float
) -> None:
    headers = {"x-hubspot-signature-v3": signature, "x-hubspot-request-timestamp": timestamp}
    result = outcome(headers, body, url, now=now)
    assert isinstance(result, Verified) or result in {
        "missing_signature",
        "bad_signature",
        "stale_timestamp",
    }


def test_immutable_and_negative_tolerance_refused() -> None:
    v = build_verifier("hubspot", [SECRET], VerifyOptions())
    assert v.scheme == "hubspot"
    with pytest.raises(AttributeError):
        v.scheme = "other"
    with pytest.raises(AttributeError):
        v._keys = ()  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as info:
        build_verifier("hubspot", [SECRET], VerifyOptions(tolerance=-1))
    assert info.value.key == "tolerance"


def test_a_batch_is_one_item_per_element() -> None:
    batch = [
        {"eventId": 1, "subscriptionType": "contact.creation", "objectId": 7},
        {"eventId": 2, "subscriptionType": "contact.deletion", "objectId": 8},
    ]
    body = json.dumps(batch).encode()
    result = outcome(signed(body), body)
    assert isinstance(result, Verified)
    assert [(i.event_id, i.event_type) for i in result.items] == [
        ("1", "contact.creation"),
        ("2", "contact.deletion"),
    ]
    assert [json.loads(i.payload) for i in result.items] == batch


def test_an_element_is_known_by_subscription_event_and_object_ids() -> None:
    """HubSpot's eventId is not guaranteed unique: two events sharing one (another
    subscription, another object) are two; a retry (a new attemptNumber) is the same one."""
    batch = [
        {"eventId": 100, "subscriptionId": 25, "objectId": 7, "attemptNumber": 0},
        {"eventId": 100, "subscriptionId": 31, "objectId": 9, "attemptNumber": 0},
        {"eventId": 100, "subscriptionId": 25, "objectId": 7, "attemptNumber": 1},
        {"subscriptionId": 25, "objectId": 7},
    ]
    body = json.dumps(batch).encode()
    result = outcome(signed(body), body)
    assert isinstance(result, Verified)
    keys = [i.dedup_id for i in result.items]
    assert keys[0] != keys[1] and keys[0] == keys[2]
    assert keys[3] is None  # no eventId: known by its content
    assert [i.event_id for i in result.items] == ["100", "100", "100", None]
