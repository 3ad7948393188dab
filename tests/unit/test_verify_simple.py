"""basic, token and none: sender authentication without a body signature."""

from __future__ import annotations

import base64

import pytest

from hookyard.errors import ConfigError, VerificationError
from hookyard.verify import Inbound, Verifier, VerifyOptions, build_verifier


def inbound(headers: dict[str, str], body: bytes = b'{"type": "ping", "id": 4}') -> Inbound:
    return Inbound("POST", "https://hooks.example/in/s", headers, body, 0.0)


def code_of(v: Verifier, request: Inbound) -> str:
    with pytest.raises(VerificationError) as info:
        v.verify(request)
    return info.value.code


def basic_header(creds: str) -> str:
    return "Basic " + base64.b64encode(creds.encode()).decode()


def test_basic_auth() -> None:
    v = build_verifier("basic", ["alice:s3cret", "bob:pa:ss"], VerifyOptions())
    assert v.credential_headers == frozenset({"authorization"})
    facts = v.verify(inbound({"authorization": basic_header("alice:s3cret")}))
    assert (facts.event_id, facts.event_type, facts.body_dedup) == (None, None, False)
    assert v.verify(inbound({"authorization": basic_header("bob:pa:ss")}))
    assert v.verify(inbound({"authorization": "basic " + basic_header("bob:pa:ss")[6:]}))
    for bad in (
        basic_header("alice:wrong"),
        basic_header("alice:s3cret "),
        "Bearer " + basic_header("alice:s3cret")[6:],
        "Basic !!!",
        "Basic",
        "Basic é",
    ):
        assert code_of(v, inbound({"authorization": bad})) == "bad_credentials"
    assert code_of(v, inbound({})) == "missing_signature"
    assert v.sign(b"", url="", timestamp=0, message_id="") == {
        "Authorization": basic_header("alice:s3cret")
    }


def test_basic_message_has_no_credentials() -> None:
    v = build_verifier("basic", ["alice:s3cret"], VerifyOptions())
    with pytest.raises(VerificationError) as info:
        v.verify(inbound({"authorization": basic_header("alice:nope")}))
    assert "s3cret" not in str(info.value) and "nope" not in str(info.value)


@pytest.mark.parametrize("secret", ["nocolon", ":password", ""])
def test_basic_secret_format(secret: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_verifier("basic", [secret], VerifyOptions())
    assert info.value.key == "secrets"


def test_bearer_token() -> None:
    v = build_verifier("token", ["tok-1", "tok-2"], VerifyOptions(type_field="type"))
    assert v.credential_headers == frozenset({"authorization"})
    facts = v.verify(inbound({"authorization": "Bearer tok-2"}))
    assert (facts.event_type, facts.body_dedup) == ("ping", False)
    assert v.verify(inbound({"authorization": "bearer tok-1"}))
    for bad in ("tok-1", "Bearer tok-3", "Basic tok-1", "Bearer tok-1x", "Bearer \udcff"):
        assert code_of(v, inbound({"authorization": bad})) == "bad_credentials"
    assert code_of(v, inbound({})) == "missing_signature"
    assert v.sign(b"", url="", timestamp=0, message_id="") == {"Authorization": "Bearer tok-1"}


def test_token_in_custom_header_is_raw() -> None:
    v = build_verifier("token", ["gl-token"], VerifyOptions(token_header="X-Gitlab-Token"))
    assert v.credential_headers == frozenset({"x-gitlab-token"})
    assert v.verify(inbound({"x-gitlab-token": "gl-token"}))
    assert code_of(v, inbound({"x-gitlab-token": "Bearer gl-token"})) == "bad_credentials"
    assert code_of(v, inbound({"authorization": "Bearer gl-token"})) == "missing_signature"
    assert v.sign(b"", url="", timestamp=0, message_id="") == {"X-Gitlab-Token": "gl-token"}


def test_none_accepts_everything_and_honours_overrides() -> None:
    v = build_verifier("none", [], VerifyOptions(id_header="X-Id", type_header="X-Type"))
    assert v.credential_headers == frozenset()
    facts = v.verify(inbound({"x-id": "a", "x-type": "b"}, b"\xff"))
    assert (facts.event_id, facts.event_type, facts.body_dedup) == ("a", "b", False)
    assert v.verify(inbound({})).event_id is None
    assert v.sign(b"x", url="", timestamp=0, message_id="m") == {}


def test_none_refuses_secrets() -> None:
    with pytest.raises(ConfigError) as info:
        build_verifier("none", ["oops"], VerifyOptions())
    assert info.value.key == "secrets"
