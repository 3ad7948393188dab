"""The REST side's settings ([sources.NAME.api], .poll, .reconcile): each mistake is named."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hookyard.config import load_config
from hookyard.errors import ConfigError
from hookyard.gateway import Gateway

POLL = """
[sources.erp]
kind = "poll"
[sources.erp.api]
url = "https://erp.example.com/orders"
{api}
[sources.erp.poll]
{poll}
"""

WEBHOOK = """
[sources.shop]
verify = "none"
{source}
[sources.shop.api]
url = "https://shop.example.com/orders"
[sources.shop.reconcile]
interval = "5m"
"""


def build(tmp_path: Path, text: str) -> Gateway:
    path = tmp_path / "hookyard.toml"
    path.write_text(textwrap.dedent(text))
    settings, base_dir = load_config(path, environ={})
    return Gateway.build(settings, base_dir)


def error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, text)
    return caught.value


def test_a_poll_source_builds_with_resolved_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERP_TOKEN", "t0ken")
    gateway = build(
        tmp_path,
        POLL.format(api='auth = { bearer = "env:ERP_TOKEN" }', poll='cron = "*/5 * * * *"'),
    )
    source = gateway.sources["erp"]
    assert source.api is not None and source.poll is not None
    assert source.api.credentials is not None and source.api.credentials.value == "t0ken"
    assert "t0ken" not in repr(source.api)  # secrets stay out of logs and tracebacks
    assert source.api.resource == "erp"


@pytest.mark.parametrize(
    ("api", "poll", "key", "reason"),
    [
        ('auth = { bearer = "a", basic = "b:c" }', "", "auth", "exactly one of"),
        ('auth = { header = "X-Key" }', "", "auth", "need `key`"),
        ('auth = { token_url = "https://a/t", client_id = "c" }', "", "auth", "client_secret"),
        ('auth = { basic = "no-colon" }', "", "auth.basic", "user:password"),
        ('auth = { bearer = "env:MISSING" }', "", "auth.bearer", "MISSING is not set"),
        ('pagination = "pages"', "", "pagination", "'none'"),
        ('url = "ftp://x"', "", "url", "http"),
        ("", 'cron = "every five minutes"', "poll", "not a cron expression"),
        ("", 'interval = "1m"\ncron = "* * * * *"', "poll", "either interval or cron"),
        ("", 'interval = "10ms"', "poll", "at least 100ms"),
        ("", 'detect = "diff"', "poll.detect", "'cursor'"),
        ("updated_field = false", "", "updated_field", "valid string"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, api: str, poll: str, key: str, reason: str) -> None:
    text = POLL.format(api=api, poll=poll)
    if api.startswith("url ="):
        text = text.replace('url = "https://erp.example.com/orders"\n', "")
    problem = error(tmp_path, text)
    assert key in str(problem) and reason in str(problem), str(problem)


def test_cursor_detection_needs_an_update_time(tmp_path: Path) -> None:
    text = POLL.format(api='updated_field = ""', poll='detect = "cursor"')
    problem = error(tmp_path, text)
    assert problem.key == "sources.erp.poll.detect" and "updated_field" in str(problem)
    build(tmp_path, POLL.format(api='updated_field = ""', poll='detect = "hash"'))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (POLL.format(api="", poll="").replace('kind = "poll"', 'kind = "poll"\nverify = "none"'),
         "drop `verify`"),
        (POLL.format(api="", poll="").replace("[sources.erp.api]\n", "[unused]\n"), "needs [api]"),
        (WEBHOOK.format(source=""), "needs object_id and object_version"),
        (WEBHOOK.format(source='object_id = "data.id"'), "go together"),
        (WEBHOOK.format(source='object_id = "data.id"\nobject_version = "data..v"'),
         "not a dotted path"),
        ("[sources.a]\nverify = \"none\"\n[sources.a.poll]\ninterval = \"1m\"", 'kind = "poll"'),
    ],
)  # fmt: skip
def test_jobs_need_what_they_use(tmp_path: Path, text: str, reason: str) -> None:
    assert reason in str(error(tmp_path, text))


def test_a_reconciled_source_builds(tmp_path: Path) -> None:
    text = WEBHOOK.format(source='object_id = "data.id"\nobject_version = "data.version"')
    source = build(tmp_path, text).sources["shop"]
    assert source.reconcile is not None and source.reconcile.interval == 300
    assert source.object_paths == ("data.id", "data.version")
    assert source.deletion_types == ("*.deleted",)


@pytest.mark.parametrize(
    ("destination", "reason"),
    [
        ("", "give the destination a url (or relay = true)"),
        ('url = "http://127.0.0.1:9/x"\nrelay = true', "a relay destination has no url"),
        ('relay = true\nproxy = "http://127.0.0.1:3128"', "are for url destinations"),
    ],
)
def test_a_destination_has_a_url_or_is_a_relay(
    tmp_path: Path, destination: str, reason: str
) -> None:
    assert reason in str(error(tmp_path, f"[destinations.d]\n{destination}\n"))


def test_a_relay_destination_builds(tmp_path: Path) -> None:
    gateway = build(tmp_path, "[destinations.laptop]\nrelay = true\n")
    laptop = gateway.destinations["laptop"]
    assert laptop.relay and laptop.url == "" and laptop.refused is None
