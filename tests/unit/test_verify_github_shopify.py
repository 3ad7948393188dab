"""GitHub (published vector) and Shopify (independent HMAC as oracle): body-only signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from hookyard.errors import VerificationError
from hookyard.verify import Inbound, Verifier, VerifyOptions, build_verifier

# github/docs content/webhooks/using-webhooks/validating-webhook-deliveries.md
GH_SECRET = "It's a Secret to Everybody"
GH_BODY = b"Hello, World!"
GH_SIG = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def inbound(headers: dict[str, str], body: bytes) -> Inbound:
    return Inbound("POST", "https://hooks.example/in/x", headers, body, 0.0)


def code_of(v: Verifier, request: Inbound) -> str:
    with pytest.raises(VerificationError) as info:
        v.verify(request)
    return info.value.code


def github(*secrets: str, **options: str) -> Verifier:
    opts = VerifyOptions(**options)  # type: ignore[arg-type]
    return build_verifier("github", list(secrets or (GH_SECRET,)), opts)


def test_github_vector() -> None:
    facts = github().verify(inbound({"x-hub-signature-256": GH_SIG}, GH_BODY))
    assert facts.body_dedup is True
    assert (facts.event_id, facts.event_type, facts.delivery_id) == (None, None, None)


def test_github_vector_tampered() -> None:
    v = github()
    for sig in (GH_SIG[:-1] + "8", "sha1=" + GH_SIG[7:], GH_SIG[7:], "sha256=" + GH_SIG[8:]):
        assert code_of(v, inbound({"x-hub-signature-256": sig}, GH_BODY)) == "bad_signature"
    assert code_of(v, inbound({"x-hub-signature-256": GH_SIG}, b"Hello, World?")) == (
        "bad_signature"
    )


def test_github_uppercase_hex_is_the_same_signature() -> None:
    sig = "sha256=" + GH_SIG[7:].upper()
    assert github().verify(inbound({"x-hub-signature-256": sig}, GH_BODY))


def test_github_sign_reproduces_vector() -> None:
    headers = github().sign(GH_BODY, url="", timestamp=0, message_id="d-1")
    assert headers == {"X-Hub-Signature-256": GH_SIG, "X-GitHub-Delivery": "d-1"}


def test_github_sha1_fallback_only_without_sha256_header() -> None:
    sha1 = "sha1=" + hmac.new(GH_SECRET.encode(), GH_BODY, hashlib.sha1).hexdigest()
    v = github()
    assert v.verify(inbound({"x-hub-signature": sha1}, GH_BODY))
    wrong256 = "sha256=" + "0" * 64
    request = inbound({"x-hub-signature-256": wrong256, "x-hub-signature": sha1}, GH_BODY)
    assert code_of(v, request) == "bad_signature"
    assert code_of(v, inbound({"x-hub-signature": "sha256=" + GH_SIG[7:]}, GH_BODY)) == (
        "bad_signature"
    )


def test_github_missing_header() -> None:
    assert code_of(github(), inbound({}, GH_BODY)) == "missing_signature"


@pytest.mark.parametrize(
    ("event", "body", "expected"),
    [
        ("pull_request", b'{"action": "opened", "number": 1}', "pull_request.opened"),
        ("push", b'{"ref": "refs/heads/main"}', "push"),
        ("issues", b'{"action": 3}', "issues"),
        ("push", b"payload=%7B%22action%22%3A%22x%22%7D", "push"),  # form-encoded delivery
        ("ping", b"[not json", "ping"),
    ],
)
def test_github_facts(event: str, body: bytes, expected: str) -> None:
    v = github()
    headers = {
        k.lower(): val for k, val in v.sign(body, url="", timestamp=0, message_id="d").items()
    }
    headers["x-github-event"] = event
    facts = v.verify(inbound(headers, body))
    assert (facts.event_type, facts.delivery_id, facts.event_id) == (expected, "d", None)


def test_github_message_is_helpful_and_secret_free() -> None:
    v = github("one", "two")
    with pytest.raises(VerificationError) as info:
        v.verify(inbound({"x-hub-signature-256": GH_SIG}, GH_BODY))
    assert str(info.value) == (
        "signature did not match; expected header X-Hub-Signature-256 "
        "(sha256=<hex HMAC-SHA256 of the body>); 2 secrets tried"
    )


def test_github_rotation() -> None:
    assert github("old", GH_SECRET).verify(inbound({"x-hub-signature-256": GH_SIG}, GH_BODY))


def test_github_overrides() -> None:
    v = github(id_header="X-Custom-Id", type_header="X-Custom-Type")
    headers = {"x-hub-signature-256": GH_SIG, "x-custom-id": "i", "x-custom-type": "t"}
    facts = v.verify(inbound(headers, GH_BODY))
    assert (facts.event_id, facts.event_type) == ("i", "t")


SHOP_SECRET = "shpss_0123456789abcdef"
SHOP_BODY = b'{"id": 820982911946154508, "email": "jon@example.com"}'


def shopify_sig(body: bytes, secret: str = SHOP_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_shopify_verifies_with_facts_from_headers() -> None:
    v = build_verifier("shopify", [SHOP_SECRET], VerifyOptions())
    headers = {
        "x-shopify-hmac-sha256": shopify_sig(SHOP_BODY),
        "x-shopify-topic": "orders/create",
        "x-shopify-event-id": "ev-1",
        "x-shopify-webhook-id": "wh-1",
    }
    facts = v.verify(inbound(headers, SHOP_BODY))
    assert (facts.event_id, facts.delivery_id, facts.event_type) == (
        "ev-1",
        "wh-1",
        "orders/create",
    )
    assert facts.body_dedup is True


def test_shopify_sign() -> None:
    v = build_verifier("shopify", [SHOP_SECRET], VerifyOptions())
    assert v.sign(SHOP_BODY, url="", timestamp=0, message_id="wh-2") == {
        "X-Shopify-Hmac-Sha256": shopify_sig(SHOP_BODY),
        "X-Shopify-Webhook-Id": "wh-2",
    }


def test_shopify_rejects_and_rotates() -> None:
    v = build_verifier("shopify", ["old-secret", SHOP_SECRET], VerifyOptions())
    good = shopify_sig(SHOP_BODY)
    assert v.verify(inbound({"x-shopify-hmac-sha256": good}, SHOP_BODY))
    for sig in (good.rstrip("="), good.replace("=", "A"), shopify_sig(SHOP_BODY, "x"), "", "!!"):
        request = inbound({"x-shopify-hmac-sha256": sig}, SHOP_BODY)
        assert code_of(v, request) in {"bad_signature", "missing_signature"}
    assert code_of(v, inbound({}, SHOP_BODY)) == "missing_signature"
    assert code_of(v, inbound({"x-shopify-hmac-sha256": good}, SHOP_BODY + b" ")) == (
        "bad_signature"
    )
