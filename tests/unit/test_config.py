"""Configuration: every bad key is named with the reason; defaults and overrides layer."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hookyard.config import load_config, sqlite_path
from hookyard.errors import ConfigError
from hookyard.gateway import Gateway

VALID = """
[server]
listen = "127.0.0.1:8787"
[sources.gh]
verify = "github"
secrets = ["env:GH_SECRET"]
[destinations.app]
url = "http://127.0.0.1:9000/hooks"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
[[routes]]
source = "gh"
destination = "app"
types = ["push"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hookyard.toml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GH_SECRET", "x")


def _build(tmp_path: Path, text: str) -> Gateway:
    settings, base = load_config(_write(tmp_path, text), environ={})
    return Gateway.build(settings, base)


def test_valid_config_builds(tmp_path: Path) -> None:
    gateway = _build(tmp_path, VALID)
    assert list(gateway.sources) == ["gh"]
    assert gateway.destinations["app"].retry_schedule == (
        0,
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        36000,
    )
    assert gateway.sources["gh"].max_body == 1024 * 1024


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        (('verify = "github"', 'verfy = "github"'), "sources.gh.verfy", "unknown key"),
        (('verify = "github"', 'kind = "webhook"'), "sources.gh", "needs `verify`"),
        (('types = ["push"]', 'types = ["push"]\ncolour = 1'), "routes.0.colour", "unknown key"),
        (('verify = "github"', 'verify = "gitbub"'), "sources.gh.verify", "github"),
        (('listen = "127.0.0.1:8787"', 'listen = "localhost"'), "server.listen", "HOST:PORT"),
        (
            ('url = "http://127.0.0.1:9000/hooks"', 'url = "ftp://x"'),
            "destinations.app.url",
            "http",
        ),
        (('source = "gh"', 'source = "nope"'), "routes.0.source", "no source named"),
        (('destination = "app"', 'destination = "nope"'), "routes.0.destination", "no destination"),
        (
            ('secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"', 'secret = "whsec_!!"'),
            "destinations.app.secret",
            "base64",
        ),
        (("[sources.gh]", '[sources."bad name"]'), "sources", "must match"),
        (
            ('listen = "127.0.0.1:8787"', 'listen = "127.0.0.1:8787"\nmax_body = "1 parsec"'),
            "server.max_body",
            "unit",
        ),
        # Timestamps are whole seconds: 500 ms would round to 0, "no check".
        (('verify = "github"', 'verify = "stripe"\ntolerance = "500ms"'), "sources.gh", "1s"),
        (('verify = "github"', 'verify = "stripe"\ntolerance = inf'), "sources.gh", "1s"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, change, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _build(tmp_path, VALID.replace(*change))
    assert str(caught.value).startswith(key), str(caught.value)
    assert words in str(caught.value)


def test_missing_secret_names_the_variable_not_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GH_SECRET")
    with pytest.raises(ConfigError) as caught:
        _build(tmp_path, VALID)
    assert caught.value.key == "sources.gh.secrets.0"
    assert "GH_SECRET" in str(caught.value)


def test_file_secret_is_read_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "gh.secret").write_text("from-a-file\n")
    gateway = _build(tmp_path, VALID.replace("env:GH_SECRET", "file:gh.secret"))
    assert gateway.sources["gh"].verifier.sign(b"x", url="", timestamp=0, message_id="m")


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[server\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")


def test_environment_overrides_the_file_and_flags_override_both(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID)
    env = {"HOOKYARD_SERVER__LISTEN": "127.0.0.1:9999", "HOOKYARD_SERVER__MAX_PENDING": "7"}
    settings, _ = load_config(path, environ=env)
    assert settings.server.listen == "127.0.0.1:9999"
    assert settings.server.max_pending == 7
    settings, _ = load_config(path, environ=env, overrides={"server": {"listen": "0.0.0.0:1"}})
    assert settings.server.listen == "0.0.0.0:1"


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings, _ = load_config(None, environ={})
    assert settings.server.listen == "127.0.0.1:8787"
    assert settings.server.database == "sqlite:///hookyard.db"
    assert sqlite_path(settings.server.database, tmp_path) == tmp_path / "hookyard.db"
    assert sqlite_path("sqlite:////var/x.db", tmp_path) == Path("/var/x.db")


def test_where_conditions_are_validated(tmp_path: Path) -> None:
    bad = VALID.replace('types = ["push"]', 'where = { "a.b" = { like = "x" } }')
    with pytest.raises(ConfigError, match="exactly one of equals, in, exists"):
        _build(tmp_path, bad)


def test_environment_values_stay_strings_unless_arrays(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID)
    env = {
        "HOOKYARD_SERVER__ADMIN_TOKEN": "123456",  # would be an integer as TOML
        "HOOKYARD_SERVER__TOKEN_FILE": '"quoted"',  # quotes are part of the value
        "HOOKYARD_EGRESS__ALLOW": '["10.0.0.0/8", "127.0.0.1/32"]',
    }
    settings, _ = load_config(path, environ=env)
    assert settings.server.admin_token == "123456"
    assert settings.server.token_file == '"quoted"'
    assert settings.egress.allow == ["10.0.0.0/8", "127.0.0.1/32"]
    with pytest.raises(ConfigError, match="not a TOML array"):
        load_config(path, environ={"HOOKYARD_EGRESS__ALLOW": "[unclosed"})
    with pytest.raises(ConfigError, match="conflicts"):
        load_config(
            path,
            environ={"HOOKYARD_SERVER__LISTEN": "x", "HOOKYARD_SERVER__LISTEN__A": "y"},
        )


def test_lease_must_outlast_every_attempt(tmp_path: Path) -> None:
    bad = VALID + '\n[worker]\nlease = "30s"\n'  # the default timeout is 30 s
    with pytest.raises(ConfigError, match=r"worker\.lease"):
        _build(tmp_path, bad)
    _build(tmp_path, VALID + '\n[worker]\nlease = "31s"\n')


def test_check_resolves_the_admin_token_reference(tmp_path: Path) -> None:
    text = VALID.replace(
        'listen = "127.0.0.1:8787"', 'listen = "127.0.0.1:8787"\nadmin_token = "env:NOPE_TOKEN"'
    )
    with pytest.raises(ConfigError, match="NOPE_TOKEN"):
        _build(tmp_path, text)


@pytest.mark.parametrize("token", ["", "   ", "short-token"])
def test_an_empty_or_short_admin_token_is_refused(tmp_path: Path, token: str, monkeypatch) -> None:
    """An empty one was registered as the hash of "": serve started and nobody could log in."""
    monkeypatch.setenv("HY_TEST_ADMIN", token)
    text = VALID.replace(
        'listen = "127.0.0.1:8787"', 'listen = "127.0.0.1:8787"\nadmin_token = "env:HY_TEST_ADMIN"'
    )
    with pytest.raises(ConfigError, match=r"server\.admin_token.*at least 16"):
        _build(tmp_path, text)


def test_hookyard_source_is_reserved_but_routable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reserved"):
        _build(tmp_path, VALID + '\n[sources.hookyard]\nverify = "none"\n')
    gateway = _build(tmp_path, VALID + '\n[[routes]]\nsource = "hookyard"\ndestination = "app"\n')
    assert "hookyard" not in gateway.sources  # nobody can POST to /in/hookyard
    assert len(gateway.routes["hookyard"]) == 1


def test_exponential_backoff_and_exclusive_options(tmp_path: Path) -> None:
    text = VALID.replace(
        'secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"',
        'secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"\n'
        'backoff = { initial = "1s", factor = 3, max = "20s", attempts = 5 }\n'
        'rate_limit = "600/m"\nordering = "source"',
    )
    destination = _build(tmp_path, text).destinations["app"]
    assert destination.retry_schedule == (0, 1, 3, 9, 20)
    assert destination.rate_limit == 10
    both = text.replace("rate_limit", 'retry_schedule = ["0"]\nrate_limit')
    with pytest.raises(ConfigError, match="either retry_schedule or backoff"):
        _build(tmp_path, both)
    # The first entry is the first attempt, which goes at once: a delay there was ignored.
    late = VALID.replace(
        'secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"',
        'secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"\nretry_schedule = ["1m", "5m"]',
    )
    with pytest.raises(ConfigError, match='first entry "0"'):
        _build(tmp_path, late)
    for bad, words in (
        ('rate_limit = "600/m"', 'rate_limit = "fast"'),
        ('ordering = "source"', 'ordering = "colour"'),
    ):
        with pytest.raises(ConfigError):
            _build(tmp_path, text.replace(bad, words))


def test_pathological_numbers_are_config_errors(tmp_path: Path) -> None:
    for bad in ('rate_limit = "inf/s"', 'rate_limit = "nan/m"', 'rate_limit = "0/s"'):
        with pytest.raises(ConfigError, match="rate_limit"):
            _build(
                tmp_path,
                VALID.replace('types = ["push"]', 'types = ["push"]').replace(
                    'secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"',
                    f'secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"\n{bad}',
                ),
            )
    huge = VALID.replace(
        'secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"',
        'secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"\n'
        'backoff = { factor = 10, attempts = 400, max = "1h" }',
    )
    schedule = _build(tmp_path, huge).destinations["app"].retry_schedule
    assert len(schedule) == 400 and max(schedule) == 3600
    proxies = VALID.replace(
        'listen = "127.0.0.1:8787"', 'listen = "127.0.0.1:8787"\ntrusted_proxies = ["*"]'
    )
    with pytest.raises(ConfigError, match="trusted_proxies"):
        _build(tmp_path, proxies)


def test_retention_layers_a_sources_own_ages_over_the_defaults(tmp_path: Path) -> None:
    text = VALID + '[retention]\nevents = "30d"\npayloads = "forever"\n'
    text += '[sources.gh.retention]\npayloads = "12h"\n'
    settings, _ = load_config(_write(tmp_path, text))
    retention = settings.retention
    assert retention.for_source(None) == (30 * 86400, 30 * 86400)  # never beyond the event
    assert retention.for_source(settings.sources["gh"].retention) == (30 * 86400, 43200)
    forever = VALID + '[sources.gh.retention]\nevents = "forever"\n'
    settings, _ = load_config(_write(tmp_path, forever))
    assert settings.retention.for_source(settings.sources["gh"].retention) == (None, 30 * 86400)


@pytest.mark.parametrize(
    ("snippet", "key"),
    [
        ('[retention]\nevents = "soon"\n', "retention.events"),
        ('[retention]\ninterval = "0s"\n', "retention.interval"),
        ('[retention]\nkeep = "1d"\n', "retention.keep"),
        ('[sources.gh.retention]\npayloads = "-1d"\n', "sources.gh.retention.payloads"),
    ],
)
def test_bad_retention_settings_name_their_key(tmp_path: Path, snippet: str, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(_write(tmp_path, VALID + snippet))
    assert str(error.value).startswith(key)


def test_the_cli_speaks_https_to_a_server_serving_tls() -> None:
    from hookyard.cli import _base_url
    from hookyard.config import Settings

    server = {"listen": "0.0.0.0:8443", "tls_cert": "tls.pem", "tls_key": "tls.pem"}
    assert _base_url(None, Settings.model_validate({"server": server})) == "https://127.0.0.1:8443"
    plain = Settings.model_validate({"server": {"listen": "127.0.0.1:8787"}})
    assert _base_url(None, plain) == "http://127.0.0.1:8787"


def test_a_tolerance_longer_than_the_dedup_window(tmp_path: Path) -> None:
    """Past the dedup window a replay within the tolerance is new again: a warning where the
    body is signed (a duplicate delivery), an error for Mailgun (its body is not signed)."""
    short = VALID.replace(
        'listen = "127.0.0.1:8787"', 'listen = "127.0.0.1:8787"\ndedup_window = "1h"'
    )
    stripe = short.replace('verify = "github"', 'verify = "stripe"\ntolerance = "2h"')
    [warning] = _build(tmp_path, stripe).warnings
    assert warning.startswith("sources.gh: tolerance 7200 s is longer than [server] dedup_window")
    assert _build(tmp_path, short.replace('verify = "github"', 'verify = "stripe"')).warnings == []
    with pytest.raises(ConfigError) as caught:
        _build(tmp_path, short.replace('verify = "github"', 'verify = "mailgun"'))  # ±9 h default
    assert str(caught.value).startswith("sources.gh.tolerance")
    assert "would pass with any body" in str(caught.value)
    mailgun = short.replace('verify = "github"', 'verify = "mailgun"\ntolerance = "30m"')
    assert _build(tmp_path, mailgun).warnings == []
    with pytest.raises(ConfigError, match=r"0 \(no timestamp check\) must be shorter than"):
        _build(tmp_path, mailgun.replace('tolerance = "30m"', "tolerance = 0"))
    unchecked = short.replace('verify = "github"', 'verify = "stripe"\ntolerance = 0')
    assert _build(tmp_path, unchecked).warnings == []  # off on purpose, to re-verify captures
    # PayPal signs a CRC32 of the body: like Mailgun, its transmission's key is the defence.
    paypal = VALID.replace('verify = "github"', 'verify = "paypal"')
    assert _build(tmp_path, paypal).warnings == []  # 3 days, inside the 7-day window
    with pytest.raises(ConfigError, match="would pass with any body"):
        _build(tmp_path, paypal.replace('verify = "paypal"', 'verify = "paypal"\ntolerance = 0'))
    # SNS signs the body, but a captured message keeps its signature: a day by default.
    sns = VALID.replace('verify = "github"', 'verify = "sns"').replace(
        'secrets = ["env:GH_SECRET"]', 'secrets = ["arn:aws:sns:eu-west-1:1:t"]'
    )
    assert _build(tmp_path, sns).warnings == []
    for tolerance in ("0", '"8d"'):
        with pytest.raises(ConfigError, match="would be stored and delivered again"):
            _build(
                tmp_path, sns.replace('verify = "sns"', f'verify = "sns"\ntolerance = {tolerance}')
            )


def test_a_route_with_an_empty_types_list_is_refused(tmp_path: Path) -> None:
    """It matched every type: a route meant to send nothing sent everything."""
    text = VALID + '\n[[routes]]\nsource = "gh"\ndestination = "app"\ntypes = []\n'
    with pytest.raises(ConfigError, match="empty list matches no type"):
        _build(tmp_path, text)
