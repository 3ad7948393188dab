"""build_verifier: the scheme registry and configuration errors."""

from __future__ import annotations

import threading

import pytest

from hookyard.errors import ConfigError
from hookyard.verify import SCHEMES, Inbound, VerifyOptions, build_verifier

SECRETS = {
    "standard": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    "svix": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    "basic": ["user:pass"],
    "none": [],
    "sns": ["arn:aws:sns:eu-west-1:123456789012:orders"],  # the topics it accepts
    # public keys: the provider signs with the private one
    "discord": ["d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"],
    "sendgrid": [
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRq"
        "e62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
    ],
}
# Schemes whose `sign` cannot make a verifiable request: the signature (mailgun) or the
# credential (msgraph) is in the body, or only the provider holds the key (discord, sendgrid).
UNSIGNABLE = {"mailgun", "msgraph", "discord", "sendgrid", "mollie", "sns", "paypal"}
BODIES = {"twilio": b"a=1"}  # a form: Twilio signs form parameters (JSON needs bodySHA256)
OPTIONS = {"hmac": VerifyOptions(signature_header="X-Sig")}


def test_schemes() -> None:
    assert SCHEMES == (
        "standard",
        "svix",
        "stripe",
        "github",
        "shopify",
        "slack",
        "paddle",
        "square",
        "zoom",
        "linear",
        "intercom",
        "typeform",
        "calendly",
        "twitch",
        "jira",
        "gitlab",
        "twilio",
        "discord",
        "mailgun",
        "msgraph",
        "hubspot",
        "sendgrid",
        "mollie",
        "sns",
        "paypal",
        "hmac",
        "basic",
        "token",
        "none",
    )


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_builds_an_immutable_verifier(scheme: str) -> None:
    v = build_verifier(
        scheme, SECRETS.get(scheme, ["s3cret"]), OPTIONS.get(scheme, VerifyOptions())
    )
    assert v.scheme == scheme
    assert isinstance(v.credential_headers, frozenset)
    with pytest.raises(AttributeError):
        v.scheme = "other"
    with pytest.raises(AttributeError):
        v._keys = ()  # type: ignore[attr-defined]
    body = BODIES.get(scheme, b"{}")
    headers = {k.lower(): x for k, x in v.sign(body, url="u", timestamp=1, message_id="m").items()}
    if scheme in UNSIGNABLE:
        assert headers == {}
    else:
        assert v.verify(Inbound("POST", "u", headers, body, 1.0)) is not None


def test_unknown_scheme_lists_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        build_verifier("nonesuch", ["x"], VerifyOptions())
    assert info.value.key == "verify"
    assert "nonesuch" in info.value.reason
    for scheme in SCHEMES:
        assert scheme in info.value.reason


@pytest.mark.parametrize("scheme", [s for s in SCHEMES if s != "none"])
def test_secrets_required(scheme: str) -> None:
    for secrets in ([], [""], ["ok", "  "]):
        with pytest.raises(ConfigError) as info:
            build_verifier(scheme, secrets, OPTIONS.get(scheme, VerifyOptions()))
        assert info.value.key == "secrets"


def test_single_string_is_not_a_list_of_secrets() -> None:
    with pytest.raises(ConfigError) as info:
        build_verifier("github", "abc", VerifyOptions())
    assert info.value.key == "secrets"


@pytest.mark.parametrize("scheme", ["standard", "stripe", "slack"])
def test_negative_tolerance(scheme: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_verifier(scheme, SECRETS.get(scheme, ["s"]), VerifyOptions(tolerance=-5))
    assert info.value.key == "tolerance"


def test_bad_override_header_names() -> None:
    for key in ("id_header", "type_header", "token_header"):
        with pytest.raises(ConfigError) as info:
            build_verifier("token", ["t"], VerifyOptions(**{key: "has space"}))  # type: ignore[arg-type]
        assert info.value.key == key


def test_shared_verifier_across_threads() -> None:
    v = build_verifier("github", ["s"], VerifyOptions())
    body = b'{"action": "opened"}'
    headers = {k.lower(): x for k, x in v.sign(body, url="", timestamp=0, message_id="d").items()}
    headers["x-github-event"] = "issues"
    results: list[str | None] = []

    def work() -> None:
        for _ in range(200):
            results.append(v.verify(Inbound("POST", "", headers, body, 0.0)).event_type)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["issues.opened"] * 1600
