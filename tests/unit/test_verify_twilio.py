"""Twilio: published vectors, the official SDK's RequestValidator as a differential oracle,
signatures computed independently here (hmac/hashlib), every single-byte change of body, URL
and signature, the JSON (bodySHA256) variant, rotation, and fuzzing."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from hookyard.errors import VerificationError
from hookyard.ingest import dedup_keys
from hookyard.verify import SCHEMES, Inbound, Verified, VerifyOptions, build_verifier
from hookyard.verify._forms import urlencoded

# twilio/twilio-python tests/unit/test_request_validator.py
TOKEN = "12345"
URI = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
EXPECTED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
JSON_BODY = b'{"property": "value", "boolean": true}'
BODY_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
JSON_URI = URI + "&bodySHA256=" + BODY_HASH
JSON_EXPECTED = "a9nBmqA0ju/hNViExpshrM61xv4="
DUPLICATES = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234"
DUPLICATES_EXPECTED = "IK+Dwps556ElfBT0I3Rgjkr1wJU="

FORM = urlencode(PARAMS).encode()
URL = "https://hooks.example.com/in/twilio?x=%2Fy"


def req(headers: dict[str, str], body: bytes = FORM, url: str = URI, now: float = 1e9) -> Inbound:
    return Inbound("POST", url, headers, body, now)


def outcome(secrets: list[str], request: Inbound) -> Verified | str:
    try:
        return build_verifier("twilio", secrets, VerifyOptions()).verify(request)
    except VerificationError as exc:
        return exc.code


def independent(token: str, url: str, pairs: list[tuple[str, str]], algo: str = "sha1") -> str:
    """The documented algorithm, written out: URL + name+value, names sorted, values sorted."""
    names = sorted({n for n, _ in pairs})
    data = url + "".join(n + v for n in names for v in sorted({v for m, v in pairs if m == n}))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), algo).digest()).decode()


def sig(value: str) -> dict[str, str]:
    return {"x-twilio-signature": value}


def test_registered() -> None:
    assert "twilio" in SCHEMES


@pytest.mark.parametrize(
    ("url", "body", "signature"),
    [
        (URI, FORM, EXPECTED),
        (URI, DUPLICATES, DUPLICATES_EXPECTED),
        (JSON_URI, JSON_BODY, JSON_EXPECTED),
        # the SDK's port handling: signed without the port, or with the default one
        (URI.replace(".com", ".com:1234"), FORM, EXPECTED),
        (
            URI.replace(".com", ".com:1234").replace("https", "http"),
            FORM,
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
        ),
        (URI, FORM, "kvajT1Ptam85bY51eRf/AJRuM3w="),
        (URI.replace("https", "http"), FORM, "0ZXoZLH/DfblKGATFgpif+LLRf4="),
    ],
)
def test_published_vectors(url: str, body: bytes, signature: str) -> None:
    result = outcome([TOKEN], req(sig(signature), body, url))
    assert isinstance(result, Verified) and result.body_dedup
    assert RequestValidator(TOKEN).validate(
        url,
        JSON_BODY.decode() if body == JSON_BODY else MultiDict(parse_qsl(body.decode())),
        signature,
    )


def test_independent_signature_and_sign_agree_with_the_sdk() -> None:
    pairs = [("Body", "héllo wörld & more=+"), ("From", "+1555"), ("Body", "again"), ("A", "")]
    body = urlencode(pairs).encode()
    ours = independent("tok", URL, pairs)
    assert ours == RequestValidator("tok").compute_signature(URL, MultiDict(pairs))
    v = build_verifier("twilio", ["tok"], VerifyOptions())
    assert isinstance(v.verify(req(sig(ours), body, URL)), Verified)
    signed = v.sign(body, url=URL, timestamp=0, message_id="idem-1")
    assert signed == {"X-Twilio-Signature": ours, "I-Twilio-Idempotency-Token": "idem-1"}


def test_every_single_byte_change_of_the_form_body_is_rejected_or_the_same_params() -> None:
    """A changed byte either fails or, only by changing the case of a hex digit in a percent
    escape, spells the very same parameters."""
    body = b"Body=caf%C3%A9+%2B1&From=%2B1555&To=x"
    signature = independent(TOKEN, URL, parse_qsl(body.decode()))
    same = 0
    for i in range(len(body)):
        for b in range(256):
            if b == body[i]:
                continue
            mutated = body[:i] + bytes([b]) + body[i + 1 :]
            result = outcome([TOKEN], req(sig(signature), mutated, URL))
            if isinstance(result, Verified):
                assert urlencoded(mutated) == urlencoded(body), (i, b)
                assert (
                    chr(body[i]) in "0123456789abcdefABCDEF"
                    and chr(b).lower() == chr(body[i]).lower()
                ), (i, b)
                same += 1
            else:
                assert result == "bad_signature", (i, b)
    assert same == 4  # the hex letters C, A, B and B of %C3 %A9 %2B %2B, each in the other case
    for mutated in (body[:-1], body[1:], body + b"&", body + b"\r\n", b"&" + body, b""):
        assert outcome([TOKEN], req(sig(signature), mutated, URL)) == "bad_signature"


def test_every_single_byte_change_of_the_json_body_is_rejected() -> None:
    for i in range(len(JSON_BODY)):
        for b in range(256):
            if b != JSON_BODY[i]:
                mutated = JSON_BODY[:i] + bytes([b]) + JSON_BODY[i + 1 :]
                result = outcome([TOKEN], req(sig(JSON_EXPECTED), mutated, JSON_URI))
                assert result == "bad_signature", (i, b)


def test_every_single_byte_change_of_the_signature_is_rejected() -> None:
    for i in range(len(EXPECTED)):
        for b in range(256):
            c = chr(b)
            if c != EXPECTED[i]:
                mutated = EXPECTED[:i] + c + EXPECTED[i + 1 :]
                assert outcome([TOKEN], req(sig(mutated))) == "bad_signature", (i, c)
    for mutated in (EXPECTED[:-1], EXPECTED[1:], EXPECTED + "=", "A" + EXPECTED, EXPECTED + " "):
        assert outcome([TOKEN], req(sig(mutated))) == "bad_signature"
    assert outcome([TOKEN], req({})) == "missing_signature"
    assert outcome([TOKEN], req(sig(""))) == "missing_signature"


def test_every_single_byte_change_of_the_url_is_rejected() -> None:
    """The URL is signed: only the port forms the SDK also accepts verify."""
    for i in range(len(URI)):
        for c in "/:.?&=%aZ09":
            if c != URI[i]:
                url = URI[:i] + c + URI[i + 1 :]
                result = outcome([TOKEN], req(sig(EXPECTED), url=url))
                assert result == "bad_signature", url
    for url in (URI + "&", URI.replace("https", "http"), URI.replace("?", "/?"), URI + "#x=1"):
        assert outcome([TOKEN], req(sig(EXPECTED), url=url)) == "bad_signature"


def test_json_variant_needs_a_matching_body_hash() -> None:
    assert hashlib.sha256(JSON_BODY).hexdigest() == BODY_HASH
    assert independent(TOKEN, JSON_URI, []) == JSON_EXPECTED
    headers = sig(JSON_EXPECTED)
    # the same signed URL with another body, or the body without the URL's hash
    assert outcome([TOKEN], req(headers, b"{}", JSON_URI)) == "bad_signature"
    assert outcome([TOKEN], req(headers, JSON_BODY, URI)) == "bad_signature"
    # a hash in upper case is another URL, so another signature
    upper = URI + "&bodySHA256=" + BODY_HASH.upper()
    assert outcome([TOKEN], req(headers, JSON_BODY, upper)) == "bad_signature"


def test_a_signed_form_without_parameters_does_not_vouch_for_another_body() -> None:
    """Without bodySHA256 the body must be a form: a POST signed with no parameters (URL only)
    cannot carry a JSON or otherwise non-form body past verification."""
    signature = independent(TOKEN, URL, [])
    assert isinstance(outcome([TOKEN], req(sig(signature), b"", URL)), Verified)
    for body in (b'{"evil": 1}', b"not a form", b"a", b"=x", b"a=1&&b=2", b"a=%zz", b"a=%ff"):
        assert outcome([TOKEN], req(sig(signature), body, URL)) == "bad_signature", body


def test_sha256_shared_key_signatures() -> None:
    """X-Twilio-Webhooks-Signature-Settings selects HMAC-SHA256 (twilio-python 9.x)."""
    pairs = list(PARAMS.items())
    signature = independent("shared-key", URL, pairs, "sha256")
    assert signature == RequestValidator("shared-key").compute_signature(URL, PARAMS, "HMAC_SHA256")
    settings_header = "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"
    headers = {**sig(signature), "x-twilio-webhooks-signature-settings": settings_header}
    assert isinstance(outcome(["shared-key"], req(headers, FORM, URL)), Verified)
    # the same signature read as SHA-1, or under an unknown algorithm, fails
    assert outcome(["shared-key"], req(sig(signature), FORM, URL)) == "bad_signature"
    unknown = {**headers, "x-twilio-webhooks-signature-settings": "algorithm=HMAC_SHA512"}
    assert outcome(["shared-key"], req(unknown, FORM, URL)) == "bad_signature"


def test_rotation() -> None:
    headers = sig(EXPECTED)
    assert outcome(["old-token"], req(headers)) == "bad_signature"
    assert isinstance(outcome(["old-token", TOKEN], req(headers)), Verified)
    assert isinstance(outcome([TOKEN, "old-token"], req(headers)), Verified)


def test_no_timestamp_so_replays_are_duplicates_by_body() -> None:
    old = outcome([TOKEN], req(sig(EXPECTED), now=4e9))
    assert isinstance(old, Verified) and old.body_dedup
    first = dedup_keys(old.event_id, old.delivery_id, FORM)
    again = outcome([TOKEN], req(sig(EXPECTED), now=5e9))
    assert isinstance(again, Verified)
    assert dedup_keys(again.event_id, again.delivery_id, FORM) == first


def test_a_replay_with_its_fields_reordered_is_still_known() -> None:
    """Twilio signs the sorted, decoded parameters, not the body: reordered, repeated or
    otherwise escaped fields sign the same, so the signed parameters are a key too (where the
    body's hash is), and the unsigned idempotency token cannot make a replay new."""
    pairs = list(PARAMS.items())
    reordered = urlencode(pairs[::-1]).encode().replace(b"CallSid", b"C%61llSid", 1)
    keys: list[set[str | None]] = []
    for body, token in (
        (FORM, "first"),
        (reordered, "second"),
        (FORM + b"&To=%2B18005551212", "x"),
    ):
        facts = outcome([TOKEN], req({**sig(EXPECTED), "i-twilio-idempotency-token": token}, body))
        assert isinstance(facts, Verified) and facts.content_key is not None
        keys.append({facts.content_key})
    assert keys[0] & keys[1] and keys[0] & keys[2]
    other = urlencode({**PARAMS, "Digits": "9"}).encode()
    signed_other = independent(TOKEN, URI, list(urlencoded(other) or []))
    facts = outcome([TOKEN], req(sig(signed_other), other))
    assert isinstance(facts, Verified)
    assert facts.content_key not in keys[0]


def test_the_same_fields_signed_for_another_url_are_another_request() -> None:
    """The URL is signed too (an IVR's <Gather action="...?step=2">): the same fields posted
    to another URL have another content key, and so does a JSON body's."""
    other_url = URI.replace("foo=1", "foo=2")
    here = outcome([TOKEN], req(sig(EXPECTED)))
    there = outcome(
        [TOKEN], req(sig(independent(TOKEN, other_url, list(PARAMS.items()))), FORM, other_url)
    )
    assert isinstance(here, Verified) and isinstance(there, Verified)
    assert here.content_key and there.content_key and here.content_key != there.content_key
    json_facts = outcome([TOKEN], req(sig(JSON_EXPECTED), JSON_BODY, JSON_URI))
    assert isinstance(json_facts, Verified) and json_facts.content_key not in (
        here.content_key,
        None,
    )


def test_facts() -> None:
    def facts(pairs: list[tuple[str, str]], extra: dict[str, str] | None = None) -> Verified:
        body = urlencode(pairs).encode()
        result = outcome(
            ["k"], req({**sig(independent("k", URL, pairs)), **(extra or {})}, body, URL)
        )
        assert isinstance(result, Verified)
        return result

    status = facts([("MessageSid", "SM1"), ("MessageStatus", "delivered")])
    assert (status.event_type, status.event_id, status.delivery_id) == (
        "message.delivered",
        None,
        None,
    )
    assert facts([("SmsStatus", "received")]).event_type == "message.received"
    call = facts([("CallStatus", "completed")], {"i-twilio-idempotency-token": "idem-7"})
    assert (call.event_type, call.delivery_id, call.body_dedup) == (
        "call.completed",
        "idem-7",
        True,
    )
    assert facts([("Other", "x")]).event_type is None
    typed = build_verifier("twilio", ["k"], VerifyOptions(type_header="X-Kind"))
    pairs = [("CallStatus", "completed")]
    body = urlencode(pairs).encode()
    headers = {**sig(independent("k", URL, pairs)), "x-kind": "custom"}
    assert typed.verify(req(headers, body, URL)).event_type == "custom"


def test_messages_do_not_leak() -> None:
    with pytest.raises(VerificationError) as info:
        build_verifier("twilio", [TOKEN, "second-token"], VerifyOptions()).verify(
            req(sig(EXPECTED), FORM + b"&x=1")
        )
    assert "2 secrets tried" in info.value.message
    for secret in (TOKEN, "second-token", EXPECTED):
        assert secret not in info.value.message


names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=8)
values = st.text(
    st.characters(min_codepoint=1, max_codepoint=0x10FFFF, exclude_categories=["Cs"]), max_size=12
)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    pairs=st.lists(st.tuples(names, values), max_size=6),
    token=st.text(min_size=1, max_size=20).filter(str.strip),
)
def test_sdk_signatures_verify(pairs: list[tuple[str, str]], token: str) -> None:
    """Differential: whatever the SDK computes for a form verifies here, and a signature by
    another token does not."""
    body = urlencode(pairs).encode()
    signature = RequestValidator(token).compute_signature(URL, MultiDict(pairs))
    assert isinstance(outcome([token], req(sig(signature), body, URL)), Verified)
    assert outcome([token + "x"], req(sig(signature), body, URL)) == "bad_signature"


noise = st.one_of(
    st.text(max_size=60),
    st.text(st.sampled_from("abc=+/%&:?#[]@0123456789AF \t\x00é"), max_size=60),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])),
)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(
    signature=st.one_of(st.just(EXPECTED), noise),
    settings_header=st.one_of(st.none(), noise),
    url=st.one_of(st.just(URI), st.just(JSON_URI), noise.map(lambda s: "https://h" + s)),
    body=st.one_of(st.just(FORM), st.just(JSON_BODY), st.binary(max_size=60)),
)
def test_arbitrary_input_raises_only_verification_error(
    signature: str, settings_header: str | None, url: str, body: bytes
) -> None:
    headers = sig(signature)
    if settings_header is not None:
        headers["x-twilio-webhooks-signature-settings"] = settings_header
    result = outcome([TOKEN], req(headers, body, url))
    assert isinstance(result, Verified) or result in {"missing_signature", "bad_signature"}


def test_the_url_is_public_url_plus_path_and_query() -> None:
    """Ingest builds Inbound.url from [server] public_url + path + the raw query string, which
    is exactly the URL configured at Twilio."""
    from hookyard.api.ingest import _public_url

    url = _public_url("https://hooks.example.com/", {"path": "/in/twilio"}, {}, "x=%2Fy")
    assert url == URL
    pairs = list(PARAMS.items())
    headers = sig(independent(TOKEN, "https://hooks.example.com/in/twilio?x=%2Fy", pairs))
    assert isinstance(outcome([TOKEN], req(headers, FORM, url)), Verified)


def test_immutable() -> None:
    v = build_verifier("twilio", [TOKEN], VerifyOptions())
    assert v.scheme == "twilio"
    with pytest.raises(AttributeError):
        v.scheme = "other"
    with pytest.raises(AttributeError):
        v._fields = None  # type: ignore[attr-defined]
