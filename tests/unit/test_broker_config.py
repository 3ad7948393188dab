"""Broker destinations' configuration: the URL's scheme picks the transport, every key that
does not fit it is named with the reason (by `hookyard check` too), and a password in the URL
never shows; routing keys and subjects are rendered safely."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from hookyard.cli import main
from hookyard.config import load_config
from hookyard.deliver.message import Message, failure, render
from hookyard.errors import ConfigError
from hookyard.gateway import Gateway

BASE = """
[sources.open]
verify = "none"
[destinations.q]
{destination}
[[routes]]
source = "open"
destination = "q"
"""


def _write(tmp_path: Path, destination: str) -> Path:
    path = tmp_path / "hookyard.toml"
    path.write_text(BASE.format(destination=textwrap.dedent(destination)))
    return path


def _build(tmp_path: Path, destination: str) -> Gateway:
    settings, base = load_config(_write(tmp_path, destination), environ={})
    return Gateway.build(settings, base)


def test_each_scheme_picks_its_transport_with_defaults(tmp_path: Path) -> None:
    redis = _build(tmp_path, 'url = "rediss://h:6380/1"\nstream = "s"\nmaxlen = 5').destinations
    assert (redis["q"].kind, redis["q"].stream, redis["q"].maxlen) == ("redis", "s", 5)
    amqp = _build(tmp_path, 'url = "amqps://u:p@h/vh"\nexchange = ""').destinations["q"]
    assert (amqp.kind, amqp.exchange, amqp.routing_key) == ("amqp", "", "{source}.{type}")
    nats = _build(tmp_path, 'url = "tls://h:4222"').destinations["q"]
    assert (nats.kind, nats.subject) == ("nats", "hookyard.{source}.{type}")
    http = _build(tmp_path, 'url = "https://h/x"').destinations["q"]
    assert http.kind == "http"


@pytest.mark.parametrize(
    ("destination", "key", "words"),
    [
        ('url = "redis://h"', "destinations.q.stream", "needs the stream"),
        ('url = "amqp://h"', "destinations.q.exchange", "needs the exchange"),
        ('url = "https://h/x"\nstream = "s"', "destinations.q.stream", "for redis destinations"),
        ('url = "https://h/x"\nsubject = "a"', "destinations.q.subject", "for nats destinations"),
        (
            'url = "nats://h"\nexchange = "x"',
            "destinations.q.exchange",
            "for amqp destinations only; this one is nats",
        ),
        ('relay = true\nstream = "s"', "destinations.q.stream", "this one is relay"),
        (
            'url = "redis://h"\nstream = "s"\nproxy = "http://p:1"',
            "destinations.q.proxy",
            "for HTTP destinations",
        ),
        (
            'url = "amqp://h"\nexchange = ""\nbearer_token = "t"',
            "destinations.q.bearer_token",
            "credentials in the url",
        ),
        (
            'url = "nats://h"\nheaders = { X-A = "b" }',
            "destinations.q.headers",
            "for HTTP destinations",
        ),
        (
            'url = "nats://h"\nclient_cert = "c.pem"',
            "destinations.q.client_cert",
            "for HTTP destinations",
        ),
        ('url = "mqtt://h"', "destinations.q.url", "redis(s)://"),
        ('url = "redis://"\nstream = "s"', "destinations.q.url", "with a host"),
        ('url = "redis://h"\nstream = "s"\nmaxlen = 0', "destinations.q.maxlen", "greater"),
        ('url = "redis://h"\nstream = ""', "destinations.q.stream", "at least 1"),
        (
            'url = "amqp://h"\nexchange = "x"\nrouting_key = "{source}.{kind}"',
            "destinations.q.routing_key",
            "{kind} is not a placeholder",
        ),
        ('url = "nats://h"\nsubject = "a.{type!r}"', "destinations.q.subject", "placeholder"),
        ('url = "nats://h"\nsubject = "a.{type"', "destinations.q.subject", "unbalanced"),
        ('url = "nats://h"\nsubject = "a.*.{type}"', "destinations.q.subject", "without"),
        ('url = "nats://h"\nsubject = "a..{type}"', "destinations.q.subject", "none empty"),
    ],
)
def test_a_key_that_does_not_fit_is_named(
    tmp_path: Path, destination: str, key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _build(tmp_path, destination)
    assert str(caught.value).startswith(key), str(caught.value)
    assert words in str(caught.value)


def test_hookyard_check_reports_it(tmp_path: Path) -> None:
    path = _write(tmp_path, 'url = "https://h/x"\nstream = "events"')
    result = CliRunner().invoke(main, ["check", "--config", str(path)])
    assert result.exit_code == 2
    assert "destinations.q.stream: is for redis destinations only; this one is http" in (
        result.output
    )


def test_the_url_may_be_a_secret_reference_and_never_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_URL", "amqp://app:hunter2-long@rabbit.internal/prod")
    destination = _build(tmp_path, 'url = "env:BROKER_URL"\nexchange = "events"').destinations
    assert destination["q"].url == "amqp://app:hunter2-long@rabbit.internal/prod"
    assert destination["q"].kind == "amqp"
    assert "hunter2" not in repr(destination["q"])
    # A reference to something that is not a destination URL: named, not shown.
    monkeypatch.setenv("BROKER_URL", "ftp://app:hunter2-long@host")
    with pytest.raises(ConfigError) as caught:
        _build(tmp_path, 'url = "env:BROKER_URL"\nexchange = "events"')
    assert str(caught.value).startswith("destinations.q.url: expected an http(s)://")
    assert "hunter2" not in str(caught.value)
    monkeypatch.delenv("BROKER_URL")
    with pytest.raises(ConfigError, match="BROKER_URL is not set"):
        _build(tmp_path, 'url = "env:BROKER_URL"\nexchange = "events"')


def test_a_broker_error_never_carries_the_password() -> None:
    url = "amqp://app:p%40ss-w0rd@rabbit.internal:5672/prod"
    error = ConnectionError(f"cannot reach {url} as app with p@ss-w0rd or p%40ss-w0rd")
    shown = failure(error, url)
    assert "p@ss" not in shown and "p%40ss" not in shown
    assert shown.startswith("ConnectionError: cannot reach amqp://***@rabbit.internal")
    assert failure(TimeoutError(), url) == "TimeoutError"


def test_a_nats_token_is_never_shown() -> None:
    url = "nats://s3cr3t-t0ken@nats.internal:4222"
    shown = failure(ConnectionError(f"no answer from {url} (token s3cr3t-t0ken)"), url)
    assert "s3cr3t" not in shown
    assert shown == "ConnectionError: no answer from nats://***@nats.internal:4222 (token ***)"


def _message(source: str, event_type: str | None) -> Message:
    return Message(b"", {}, "evt_1", "dlv_1", source, event_type, 0)


@pytest.mark.parametrize(
    ("template", "source", "event_type", "rendered"),
    [
        ("{source}.{type}", "stripe", "invoice.paid", "stripe.invoice.paid"),
        ("hookyard.{source}.{type}", "github", None, "hookyard.github.unknown"),
        ("{source}.{type}", "open", "blob upload", "open.blob_upload"),
        ("{source}.{type}", "open", "a.*.>\r\n", "open.a._.___"),
        ("{source}.{type}", "open", "a..b.", "open.a._.b._"),
        ("fixed", "open", "x", "fixed"),
    ],
)
def test_routing_keys_and_subjects_are_rendered_safely(
    template: str, source: str, event_type: str | None, rendered: str
) -> None:
    assert render(template, _message(source, event_type)) == rendered
