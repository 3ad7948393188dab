"""docs/providers.md, `hookyard schemes` and the option check all come from each verifier's
`doc`: the page cannot drift from the code, and a scheme option that would do nothing is
refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from hookyard.cli import main
from hookyard.config import SourceConfig, load_config
from hookyard.errors import ConfigError
from hookyard.gateway import Gateway
from hookyard.verify import SCHEME_OPTIONS, SCHEMES, scheme_doc
from hookyard.verify.reference import REGENERATE, doc_of, render, section, snippet
from tests.unit.test_verify_build import SECRETS

ROOT = Path(__file__).resolve().parents[2]
# A value each scheme option accepts on its own (TOML).
SAMPLES = {
    "tolerance": '"10m"',
    "signature_header": '"X-Signature"',
    "algorithm": '"sha512"',
    "encoding": '"base64"',
    "signature_prefix": '"sha512="',
    "signed_content": '"{timestamp}.{body}"',
    "timestamp_header": '"X-Timestamp"',
    "id_header": '"X-Event-Id"',
    "type_header": '"X-Event-Type"',
    "type_field": '"data.type"',
    "token_header": '"X-Token"',
    "fetch_url": '"https://proxy.example.com"',
    "fetch_rate": '"5/s"',
    "confirm_subscriptions": "false",
}


def _build(tmp_path: Path, scheme: str, options: dict[str, str]) -> Gateway:
    """A one-source config through the path `serve` and `check` take: the file, then the
    gateway."""
    secrets = SECRETS.get(scheme, ["s3cret"])
    lines = ["[sources.src]", f'verify = "{scheme}"']
    if secrets:
        lines.append(f"secrets = {json.dumps(secrets)}")
    lines += [f"{key} = {value}" for key, value in options.items()]
    path = tmp_path / "hookyard.toml"
    path.write_text("\n".join(lines) + "\n")
    return Gateway.build(*load_config(path, environ={}))


def test_the_committed_page_is_the_rendered_one() -> None:
    committed = (ROOT / "docs" / "providers.md").read_text()
    assert committed == render(), f"docs/providers.md is stale; regenerate it: {REGENERATE}"


def test_every_scheme_has_a_doc_and_a_section() -> None:
    page = render()
    for scheme in SCHEMES:
        assert scheme_doc(scheme) is not None, f"{scheme}'s verifier class has no `doc`"
        assert f"\n## `{scheme}`\n" in page


def test_plugins_and_unknown_names_have_no_doc() -> None:
    assert scheme_doc("tests.unit.test_verify_plugins:SharedHeaderVerifier") is None
    assert scheme_doc("nonesuch") is None


def test_every_documented_option_is_a_source_setting() -> None:
    assert set(SCHEME_OPTIONS) <= set(SourceConfig.model_fields)
    for scheme in SCHEMES:
        doc = doc_of(scheme)
        assert set(doc.options) <= set(SCHEME_OPTIONS), scheme
        assert len(set(doc.options)) == len(doc.options), f"{scheme} lists an option twice"
        assert {key for key, _ in doc.required} <= set(doc.options), scheme


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_option_the_scheme_does_not_read_is_refused(tmp_path: Path, scheme: str) -> None:
    doc = doc_of(scheme)
    required = dict(doc.required)
    for option in SCHEME_OPTIONS:
        if option in doc.options:
            continue
        with pytest.raises(ConfigError) as info:
            _build(tmp_path, scheme, {**required, option: SAMPLES[option]})
        assert info.value.key == f"sources.src.{option}"
        assert f'verify = "{scheme}"' in info.value.reason
        assert "it reads: " in info.value.reason


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_options_the_scheme_reads_are_accepted(tmp_path: Path, scheme: str) -> None:
    options = {option: SAMPLES[option] for option in doc_of(scheme).options}
    assert _build(tmp_path, scheme, options).sources["src"].verifier.scheme == scheme


def test_a_key_written_with_its_default_value_is_still_refused(tmp_path: Path) -> None:
    """Written is what counts: `algorithm = "sha256"` on stripe would still do nothing."""
    with pytest.raises(ConfigError) as info:
        _build(tmp_path, "stripe", {"algorithm": '"sha256"'})
    assert str(info.value) == (
        'sources.src.algorithm: does not apply to verify = "stripe"; it reads: tolerance, '
        "id_header, type_header, type_field"
    )


def test_plugins_are_not_checked(tmp_path: Path) -> None:
    plugin = "tests.unit.test_verify_plugins:SharedHeaderVerifier"
    gateway = _build(tmp_path, plugin, {"signature_header": '"X-Sig"', "fetch_rate": '"1/s"'})
    assert gateway.sources["src"].verifier.scheme == "partner"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_snippet_is_a_working_config(
    tmp_path: Path, scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = snippet(scheme)
    for name in re.findall(r'"env:([A-Z_]+)"', text):
        monkeypatch.setenv(name, SECRETS.get(scheme, ["s3cret"])[0])
    path = tmp_path / "hookyard.toml"
    path.write_text(text + "\n")
    assert Gateway.build(*load_config(path)).sources[scheme].verifier.scheme == scheme


def test_hookyard_schemes_lists_every_scheme() -> None:
    result = CliRunner().invoke(main, ["schemes"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == list(SCHEMES)
    assert "Stripe-Signature" in lines[SCHEMES.index("stripe")]


def test_hookyard_schemes_name_prints_its_section() -> None:
    result = CliRunner().invoke(main, ["schemes", "sns"])
    assert result.exit_code == 0
    assert result.output == section("sns")
    assert "confirm_subscriptions" in result.output


def test_hookyard_schemes_refuses_an_unknown_name() -> None:
    result = CliRunner().invoke(main, ["schemes", "nonesuch"])
    assert result.exit_code == 2
    assert "unknown scheme 'nonesuch'" in result.output
    assert ", ".join(SCHEMES) in result.output
