"""The documentation cannot drift from the code: every setting and command is described."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from hookyard import config
from hookyard.cli import main

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = {
    "[server]": config.ServerConfig,
    "[egress]": config.EgressConfig,
    "[worker]": config.WorkerConfig,
    "[sources.NAME]": config.SourceConfig,
    "[sources.NAME.api]": config.ApiConfig,
    "[sources.NAME.poll]": config.PollConfig,
    "[sources.NAME.reconcile]": config.ReconcileConfig,
    "[destinations.NAME]": config.DestinationConfig,
    "backoff": config.BackoffConfig,
    "[retention]": config.RetentionConfig,
    "[[routes]]": config.RouteConfig,
}


def _section(text: str, heading: str) -> str:
    match = re.search(rf"^#+ `{re.escape(heading)}`$", text, re.MULTILINE)
    assert match, f"docs/configuration.md has no section for {heading}"
    following = text.find("\n#", match.end())
    return text[match.end() : following if following != -1 else None]


@pytest.mark.parametrize(("heading", "model"), SECTIONS.items())
def test_every_setting_is_in_the_configuration_reference(heading: str, model: type) -> None:
    section = _section((ROOT / "docs" / "configuration.md").read_text(), heading)
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE))
    assert documented == set(model.model_fields), f"{heading}: document exactly its keys"


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    names = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            names += _commands(command, f"{prefix}{name} ")
        else:
            names.append(f"{prefix}{name}")
    return names


def test_every_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in _commands(main):
        group, _, leaf = command.rpartition(" ")
        pattern = (
            rf"hookyard {group} [^\n]*\b{re.escape(leaf)}\b" if group else rf"hookyard {leaf}\b"
        )
        assert re.search(pattern, readme), f"`hookyard {command}` is not in README.md"


def test_every_verification_scheme_is_named_in_the_readme() -> None:
    """The README keeps a compact list; docs/providers.md, generated from the code, has the
    details (test_provider_reference.py keeps that page current)."""
    from hookyard.verify import SCHEMES

    readme = (ROOT / "README.md").read_text()
    start = readme.index("### Verification schemes")
    listed = readme[start : readme.index("\n#", start + 1)]
    assert "docs/providers.md" in listed
    for scheme in SCHEMES:
        if scheme == "svix":  # listed as the alias of `standard`
            assert "(alias `svix`)" in listed
            continue
        assert f"`{scheme}`" in listed, f"{scheme} is not in the README's list"
