"""Microsoft Graph change notifications: the validationToken handshake, the clientState check
on every notification, rotation, facts and fuzzing.

No SDK oracle: the Graph SDK has no receiver-side helper for this (the check is an equality),
and nothing is signed, so there is no signature to compute independently. Body integrity is
TLS's job: a changed byte outside clientState is accepted, and this is tested as such.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hookyard.errors import VerificationError
from hookyard.verify import SCHEMES, Inbound, Verified, VerifyOptions, build_verifier

SECRET = "secretClientValue-9f3a"
OLD = "previousClientValue-1"
URL = "https://hooks.example.com/in/graph"


def notification(state: Any = SECRET, **extra: Any) -> dict[str, Any]:
    item = {
        "subscriptionId": "76222963-cc7b-42d2-882d-8aaa69cb2ba3",
        "changeType": "created",
        "resource": "Users/abc/Messages/def",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "id": "def"},
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        **extra,
    }
    if state is not None:
        item["clientState"] = state
    return item


def body_of(*items: dict[str, Any]) -> bytes:
    return json.dumps({"value": list(items)}).encode()


BODY = body_of(notification(), notification(changeType="created"))


def outcome(
    body: bytes = BODY, url: str = URL, secrets: tuple[str, ...] = (SECRET,)
) -> Verified | str:
    v = build_verifier("msgraph", list(secrets), VerifyOptions())
    try:
        return v.verify(Inbound("POST", url, {"content-type": "application/json"}, body, 0.0))
    except VerificationError as exc:
        return exc.code


def test_registered() -> None:
    assert "msgraph" in SCHEMES


def test_notifications_with_the_client_state_are_accepted() -> None:
    result = outcome()
    assert isinstance(result, Verified)
    assert (result.event_id, result.event_type, result.body_dedup, result.handshake) == (
        None,
        "created",
        False,  # no id, no time: identical bodies can be two real changes
        None,
    )


@pytest.mark.parametrize(
    "token",
    [
        "Validation: Testing client application reachability for subscription Request-Id: "
        "9f2c4b6e-52f4-4c1a-8d5e-3b1f0a9c7e21",
        "abc",
        "a+b c/d?e&f=g%h",
        "ünïcödé",
    ],
)
@pytest.mark.parametrize("encode", [quote, quote_plus])
def test_validation_token_is_echoed_decoded_as_text(token: str, encode: Any) -> None:
    result = outcome(b"", f"{URL}?validationToken={encode(token, safe='')}")
    assert isinstance(result, Verified) and result.handshake is not None
    assert result.handshake.status == 200
    assert result.handshake.content_type == "text/plain"
    assert result.handshake.body == token.encode("utf-8")


def test_validation_token_limits() -> None:
    for query in (
        "validationToken=",
        "validationToken=a&validationToken=b",
        "validationToken=" + "a" * 4097,
        "validationToken=a%0Ab",
        "validationToken=%00",
    ):
        assert outcome(b"", f"{URL}?{query}") == "bad_signature", query
    # a parameter merely containing the name is not it
    assert outcome(BODY, f"{URL}?xvalidationToken=1").handshake is None  # type: ignore[union-attr]


def test_every_notification_needs_the_client_state() -> None:
    mixed = body_of(notification(), notification(state="wrong"))
    assert outcome(mixed) == "bad_credentials"
    missing = body_of(notification(), notification(state=None))
    assert outcome(missing) == "bad_credentials"
    for state in (1, None, ["x"], {"a": SECRET}, SECRET + " ", SECRET.upper(), ""):
        assert outcome(body_of(notification(state=state))) == "bad_credentials", state


@pytest.mark.parametrize(
    "body",
    [b"", b"{}", b'{"value": []}', b'{"value": {}}', b'{"value": "x"}', b"[]", b"value=x"],
)
def test_no_notifications_is_missing(body: bytes) -> None:
    assert outcome(body) == "missing_signature"


def test_every_single_byte_change_of_the_client_state_is_rejected() -> None:
    body = body_of(notification())
    start = body.index(SECRET.encode())
    for i in range(start, start + len(SECRET)):
        for b in range(256):
            if b != body[i]:
                mutated = body[:i] + bytes([b]) + body[i + 1 :]
                assert outcome(mutated) in {"bad_credentials", "missing_signature"}, (i, b)


def test_changes_elsewhere_are_not_detected_tls_is_the_integrity() -> None:
    """Documented limitation: Graph signs nothing in basic notifications."""
    body = body_of(notification())
    mutated = body.replace(b"Users/abc", b"Users/xyz")
    assert isinstance(outcome(mutated), Verified)


def test_rotation_several_secrets_per_notification() -> None:
    body = body_of(notification(state=OLD), notification())
    assert outcome(body) == "bad_credentials"
    assert outcome(body, secrets=(OLD,)) == "bad_credentials"
    assert isinstance(outcome(body, secrets=(SECRET, OLD)), Verified)


def test_facts() -> None:
    lifecycle = body_of(notification(lifecycleEvent="reauthorizationRequired"))
    result = outcome(lifecycle)
    assert isinstance(result, Verified) and result.event_type == "reauthorizationRequired"
    mixed = body_of(notification(), notification(changeType="deleted"))
    result = outcome(mixed)
    assert isinstance(result, Verified) and result.event_type is None
    typed = build_verifier("msgraph", [SECRET], VerifyOptions(type_field="value"))
    assert typed.verify(Inbound("POST", URL, {}, BODY, 0.0)).event_type is None


def test_sign_is_the_callers_and_no_credential_header() -> None:
    v = build_verifier("msgraph", [SECRET], VerifyOptions())
    assert v.sign(BODY, url=URL, timestamp=0, message_id="m") == {}
    assert v.credential_headers == frozenset()


def test_messages_do_not_leak() -> None:
    with pytest.raises(VerificationError) as info:
        build_verifier("msgraph", [SECRET, OLD], VerifyOptions()).verify(
            Inbound("POST", URL, {}, body_of(notification(state="guess-1234567")), 0.0)
        )
    assert "2 secrets tried" in info.value.message
    for secret in (SECRET, OLD, "guess-1234567"):
        assert secret not in info.value.message


noise = st.one_of(
    st.text(max_size=60),
    st.text(st.sampled_from('{}[]":,=&%+?validationTokenclientState \x00é'), max_size=80),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])),
)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(
    body=st.one_of(
        st.just(BODY),
        st.binary(max_size=120),
        noise.map(lambda s: s.encode("utf-8", "surrogatepass")),
    ),
    query=st.one_of(st.just(""), noise.map(lambda s: "?" + s)),
)
def test_arbitrary_input_raises_only_verification_error(body: bytes, query: str) -> None:
    result = outcome(body, URL + query)
    assert isinstance(result, Verified) or result in {
        "missing_signature",
        "bad_signature",
        "bad_credentials",
    }


def test_immutable() -> None:
    v = build_verifier("msgraph", [SECRET], VerifyOptions())
    assert v.scheme == "msgraph"
    with pytest.raises(AttributeError):
        v.scheme = "other"
    with pytest.raises(AttributeError):
        v._fields = None  # type: ignore[attr-defined]
