"""Verification schemes from outside Hookyard: `module:Class`, or an entry point."""

from __future__ import annotations

import hmac
import textwrap
from pathlib import Path

import pytest

from hookyard.errors import ConfigError, VerificationError
from hookyard.verify import Inbound, Verified, VerifyOptions, build_verifier


class SharedHeaderVerifier:
    """A provider that sends its shared secret in X-Partner-Key (the kind a team writes for an
    in-house partner)."""

    scheme = "partner"
    credential_headers = frozenset({"x-partner-key"})

    def __init__(self, secrets: list[str], options: VerifyOptions) -> None:
        if not secrets:
            raise ConfigError("secrets", "partner needs its key")
        self._secrets = [s.encode() for s in secrets]

    def verify(self, request: Inbound) -> Verified:
        given = request.headers.get("x-partner-key", "").encode()
        if not any(hmac.compare_digest(given, s) for s in self._secrets):
            raise VerificationError("X-Partner-Key did not match", code="bad_credentials")
        return Verified(event_id=request.headers.get("x-partner-id"))

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        return {"X-Partner-Key": self._secrets[0].decode(), "X-Partner-Id": message_id}


def _check(scheme: str) -> None:
    verifier = build_verifier(scheme, ["k1"], VerifyOptions())
    headers = {
        k.lower(): v for k, v in verifier.sign(b"{}", url="u", timestamp=1, message_id="m").items()
    }
    assert verifier.verify(Inbound("POST", "u", headers, b"{}", 1.0)).event_id == "m"
    with pytest.raises(VerificationError):
        verifier.verify(Inbound("POST", "u", {"x-partner-key": "k2"}, b"{}", 1.0))


def test_a_module_path_names_a_verifier_class() -> None:
    _check(f"{__name__}:SharedHeaderVerifier")


def test_an_installed_package_registers_a_scheme(tmp_path: Path, monkeypatch) -> None:
    dist = tmp_path / "partner_verifier-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: partner-verifier\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        textwrap.dedent(f"""
            [hookyard.verifiers]
            partner = {__name__}:SharedHeaderVerifier
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    _check("partner")


@pytest.mark.parametrize(
    ("scheme", "says"),
    [
        ("no_such_module:Thing", "cannot load verifier"),
        (f"{__name__}:Missing", "cannot load verifier"),
        (f"{__name__}:_check", "is not a verifier class"),
        ("nonesuch", "module:Class"),
    ],
)
def test_bad_plugins_are_config_errors(scheme: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_verifier(scheme, ["k"], VerifyOptions())
    assert info.value.key == "verify" and says in info.value.reason


def test_a_plugin_refusing_its_config_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        build_verifier(f"{__name__}:SharedHeaderVerifier", [], VerifyOptions())
    assert info.value.key == "secrets"
