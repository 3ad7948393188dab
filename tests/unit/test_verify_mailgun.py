"""Mailgun: signature blocks computed independently here (hmac), in JSON, url-encoded and
multipart bodies (the multipart ones made by urllib3's encoder); every single-byte change; the
token as the replay key (a replay with any body is a duplicate); windows; rotation; the
subaccount parent signature; fuzzing.

No official SDK is used as an oracle: Mailgun's Python SDK has no published webhook-verification
helper to compare against, and the scheme is one HMAC, computed here from the documentation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from urllib3 import encode_multipart_formdata

from hookyard.errors import ConfigError, VerificationError
from hookyard.ingest import dedup_keys
from hookyard.verify import SCHEMES, Inbound, Verified, VerifyOptions, build_verifier

KEY = "key-4f1c0a8d2b7e9f3a6c5d1e0b"
OLD = "key-previous-0000"
TS = 1_700_000_000
TOKEN = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"  # 50 characters, like Mailgun's


def signature(key: str, timestamp: str, token: str) -> str:
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def json_body(
    key: str = KEY,
    ts: Any = str(TS),
    token: str = TOKEN,
    event: dict[str, Any] | None = None,
    **extra: str,
) -> bytes:
    block = {"timestamp": ts, "token": token, "signature": signature(key, str(ts), token), **extra}
    data = {"signature": block, "event-data": event or {"event": "delivered", "id": "ev-1"}}
    return json.dumps(data, separators=(",", ":")).encode()


def form_fields(key: str = KEY, ts: str = str(TS), token: str = TOKEN) -> dict[str, str]:
    return {
        "timestamp": ts,
        "token": token,
        "signature": signature(key, ts, token),
        "event": "opened",
        "recipient": "alice+x@example.com",
    }


def outcome(
    body: bytes,
    content_type: str | None = None,
    keys: tuple[str, ...] = (KEY,),
    now: float = TS,
    tolerance: int | None = None,
) -> Verified | str:
    headers = {"content-type": content_type} if content_type else {}
    v = build_verifier("mailgun", list(keys), VerifyOptions(tolerance=tolerance))
    try:
        return v.verify(Inbound("POST", "https://h/in/mailgun", headers, body, now))
    except VerificationError as exc:
        return exc.code


def test_registered() -> None:
    assert "mailgun" in SCHEMES


def test_json_body_verifies_with_facts() -> None:
    result = outcome(json_body())
    assert isinstance(result, Verified)
    assert (result.event_id, result.event_type, result.replay_key, result.body_dedup) == (
        "ev-1",
        "delivered",
        TOKEN,
        False,
    )
    # an integer timestamp signs as its decimal text
    assert isinstance(outcome(json_body(ts=TS)), Verified)


def test_url_encoded_and_multipart_forms_verify() -> None:
    fields = form_fields()
    result = outcome(urlencode(fields).encode(), "application/x-www-form-urlencoded")
    assert isinstance(result, Verified)
    assert (result.event_type, result.replay_key) == ("opened", TOKEN)
    body, content_type = encode_multipart_formdata(
        {**fields, "attachment-1": ("a.txt", b"token=evil\r\n\r\n", "text/plain")}
    )
    result = outcome(body, content_type)
    assert isinstance(result, Verified)
    assert (result.event_type, result.replay_key) == ("opened", TOKEN)
    # the same multipart body read without its boundary is no form at all
    assert outcome(body, "application/x-www-form-urlencoded") == "missing_signature"


def test_multipart_quoted_boundary_and_file_parts_ignored() -> None:
    fields = form_fields()
    parts = [
        f'--b0\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    trap = '--b0\r\nContent-Disposition: form-data; name="token"; filename="t"\r\n\r\nzzz\r\n'
    body = ("preamble\r\n" + "".join(parts) + trap + "--b0--\r\nepilogue").encode()
    result = outcome(body, 'multipart/form-data; boundary="b0"')
    assert isinstance(result, Verified) and result.replay_key == TOKEN
    # a field given twice is refused, not guessed at
    twice = ("".join(parts) + parts[1] + "--b0--\r\n").encode()
    assert outcome(twice, "multipart/form-data; boundary=b0") == "missing_signature"
    assert outcome(body, "multipart/form-data") == "missing_signature"  # no boundary


def test_every_single_byte_change_is_rejected_or_a_duplicate() -> None:
    """The body is not signed: a changed byte outside the signature block still verifies,
    but always with the same token, i.e. the same dedup key as the original, so it is
    acknowledged as a duplicate and never stored. Changes inside the block fail."""
    body = json_body()
    replay = "replay:" + TOKEN
    verified = 0
    for i in range(len(body)):
        for b in range(256):
            if b == body[i]:
                continue
            mutated = body[:i] + bytes([b]) + body[i + 1 :]
            result = outcome(mutated)
            if isinstance(result, Verified):
                verified += 1
                keys = dedup_keys(result.event_id, result.delivery_id, None, result.replay_key)
                assert replay in keys, (i, b)
            else:
                assert result in {"bad_signature", "missing_signature"}, (i, b)
    assert verified  # event-data changes do verify: the point of the token key
    block = body[: body.index(b"}")]
    for name in (b'"timestamp"', b'"token"', b'"signature"'):
        start = block.index(name) + len(name) + 2  # past ':"'
        end = block.index(b'"', start)
        for i in range(start, end):
            for b in b"0123456789abcdefABCDEF":
                if b != body[i]:
                    mutated = body[:i] + bytes([b]) + body[i + 1 :]
                    result = outcome(mutated)
                    upper = name == b'"signature"' and bytes([b]) == body[i : i + 1].upper()
                    assert upper or result == "bad_signature", (name, i, b)


def test_a_replayed_block_with_another_body_is_a_duplicate() -> None:
    first = outcome(json_body(event={"event": "delivered", "id": "ev-1"}))
    forged = outcome(json_body(event={"event": "complained", "id": "ev-666", "x": "evil"}))
    assert isinstance(first, Verified) and isinstance(forged, Verified)
    first_keys = dedup_keys(first.event_id, first.delivery_id, None, first.replay_key)
    forged_keys = dedup_keys(forged.event_id, forged.delivery_id, None, forged.replay_key)
    assert first_keys == ("id:ev-1", "replay:" + TOKEN)
    assert set(first_keys) & set(forged_keys) == {"replay:" + TOKEN}  # one known key: duplicate


def test_id_header_replaces_the_event_id_but_not_the_replay_key() -> None:
    verifier = build_verifier("mailgun", [KEY], VerifyOptions(id_header="X-Id"))
    result = verifier.verify(Inbound("POST", "u", {"x-id": "mine"}, json_body(), float(TS)))
    assert (result.event_id, result.replay_key) == ("mine", TOKEN)


def test_window_default_nine_hours_both_ways() -> None:
    body = json_body()
    nine_hours = 9 * 3600
    assert isinstance(outcome(body, now=TS + nine_hours), Verified)
    assert isinstance(outcome(body, now=TS - nine_hours), Verified)
    assert outcome(body, now=TS + nine_hours + 2) == "stale_timestamp"
    assert outcome(body, now=TS - nine_hours - 2) == "stale_timestamp"
    assert outcome(body, now=TS + 302, tolerance=300) == "stale_timestamp"
    assert isinstance(outcome(body, now=TS + 10**8, tolerance=0), Verified)


def test_rotation_and_parent_signature() -> None:
    body = json_body(key=OLD)
    assert outcome(body) == "bad_signature"
    assert isinstance(outcome(body, keys=(KEY, OLD)), Verified)
    # a subaccount's event: its own signature (unknown key here) and the primary's
    sub = json_body(key="subaccount-key", **{"parent-signature": signature(KEY, str(TS), TOKEN)})
    assert isinstance(outcome(sub), Verified)
    assert outcome(sub, keys=(OLD,)) == "bad_signature"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{}",
        b'{"signature": "x"}',
        b'{"signature": {"timestamp": "1", "token": "t"}}',
        b'{"signature": {"timestamp": "1", "signature": "00"}}',
        b'{"signature": {"token": "t", "signature": "00"}}',
        b'{"signature": {"timestamp": true, "token": "t", "signature": "00"}}',
        b'{"signature": {"timestamp": "", "token": "t", "signature": "00"}}',
        b'{"signature": {"timestamp": "1", "token": "", "signature": "00"}}',
        b"timestamp=1&token=t",
        b"timestamp=1&token=t&signature=00&token=u",
        b"not a form",
        b"[1, 2]",
    ],
)
def test_missing_blocks(body: bytes) -> None:
    assert outcome(body) == "missing_signature"


def test_bad_values() -> None:
    assert outcome(json_body(ts="17e8")) == "bad_signature"
    assert isinstance(outcome(json_body(ts="17e8"), tolerance=0), Verified)
    long_token = "t" * 201
    assert outcome(json_body(token=long_token)) == "bad_signature"
    good = json.loads(json_body())
    good["signature"]["signature"] = good["signature"]["signature"][:-1]
    assert outcome(json.dumps(good).encode()) == "bad_signature"


def test_sign_is_the_callers() -> None:
    v = build_verifier("mailgun", [KEY], VerifyOptions())
    assert v.sign(b"{}", url="u", timestamp=TS, message_id="m") == {}


def test_messages_do_not_leak() -> None:
    bad = json_body(key="wrong")
    with pytest.raises(VerificationError) as info:
        build_verifier("mailgun", [KEY, OLD], VerifyOptions()).verify(
            Inbound("POST", "u", {}, bad, TS)
        )
    assert "2 secrets tried" in info.value.message
    for secret in (KEY, OLD, json.loads(bad)["signature"]["signature"]):
        assert secret not in info.value.message


noise = st.one_of(
    st.text(max_size=60),
    st.text(st.sampled_from('{}[]":,=&%+-\r\n 0123456789abcdef\x00é'), max_size=80),
)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(
    body=st.one_of(
        st.just(json_body()),
        st.binary(max_size=120),
        noise.map(str.encode),
        st.builds(lambda s: json_body()[:-5] + s.encode(), noise),
    ),
    content_type=st.one_of(
        st.none(),
        st.just("application/x-www-form-urlencoded"),
        noise.map(lambda s: "multipart/form-data; boundary=" + s),
    ),
    now=st.floats(allow_nan=True, allow_infinity=True),
)
def test_arbitrary_input_raises_only_verification_error(
    body: bytes, content_type: str | None, now: float
) -> None:
    result = outcome(body, content_type, now=now)
    assert isinstance(result, Verified) or result in {
        "missing_signature",
        "bad_signature",
        "stale_timestamp",
    }


def test_immutable_and_negative_tolerance_refused() -> None:
    v = build_verifier("mailgun", [KEY], VerifyOptions())
    assert v.scheme == "mailgun"
    with pytest.raises(AttributeError):
        v.scheme = "other"
    with pytest.raises(AttributeError):
        v._keys = ()  # type: ignore[attr-defined]
    with pytest.raises(ConfigError) as info:
        build_verifier("mailgun", [KEY], VerifyOptions(tolerance=-1))
    assert info.value.key == "tolerance"
