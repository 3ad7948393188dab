"""The `hookyard` command as a user runs it: a real server process, real signals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hookyard.store.migrate import SCHEMA_VERSION, migrations
from tests.conftest import (
    CLIENT_TIMEOUT,
    DEADLINE,
    GITHUB_SECRET,
    basic_config,
    start_serve,
    until_deadline,
    write_config,
)

pytestmark = pytest.mark.slow


def hookyard(*args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookyard", *args],
        cwd=cwd,
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("HOOKYARD_")},
    )


def test_check_accepts_a_good_file_and_names_the_bad_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, basic_config("http://127.0.0.1:9/x"))
    ok = hookyard("check", "--config", str(config), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "2 sources, 1 destinations, 2 routes" in ok.stdout
    config.write_text(config.read_text().replace('verify = "none"', 'verify = "nope"'))
    bad = hookyard("check", "--config", str(config), cwd=tmp_path)
    assert bad.returncode == 2
    assert "sources.open.verify" in bad.stderr
    assert GITHUB_SECRET not in bad.stderr + bad.stdout


def test_check_warns_of_a_signed_url_without_public_url(tmp_path: Path) -> None:
    text = basic_config("http://127.0.0.1:9/x") + '\n[sources.sms]\nverify = "twilio"\n'
    text += 'secrets = ["auth-token"]\n'
    config = write_config(tmp_path, text)
    warned = hookyard("check", "--config", str(config), cwd=tmp_path)
    assert warned.returncode == 0, warned.stderr  # valid: without a proxy the Host header works
    assert "warning: sources.sms: verify = 'twilio' signs the URL" in warned.stderr
    assert "public_url" in warned.stderr and "sources.open" not in warned.stderr
    config.write_text(
        text.replace("[server]\n", '[server]\npublic_url = "https://hooks.example.com"\n', 1)
    )
    quiet = hookyard("check", "--config", str(config), cwd=tmp_path)
    assert quiet.returncode == 0 and "warning" not in quiet.stderr, quiet.stderr


def test_serve_send_list_show(tmp_path: Path, serve_processes: list) -> None:
    config = write_config(tmp_path, basic_config("http://127.0.0.1:9/unused"))
    server = start_serve(config)
    serve_processes.append(server)
    payload = tmp_path / "push.json"
    payload.write_bytes(b'{"ref": "refs/heads/main"}')
    sent = hookyard(
        "send",
        "github",
        str(payload),
        "--config",
        str(config),
        "--url",
        server.url,
        "-H",
        "X-GitHub-Event: push",
        cwd=tmp_path,
    )
    assert sent.returncode == 0, sent.stderr
    status, _, answer = sent.stdout.strip().partition(" ")
    assert status == "200"
    event_id = json.loads(answer)["id"]

    listed = hookyard(
        "events",
        "list",
        "--json",
        "--source",
        "github",
        "--config",
        str(config),
        "--url",
        server.url,
        cwd=tmp_path,
    )
    assert listed.returncode == 0, listed.stderr
    assert [e["id"] for e in json.loads(listed.stdout)["data"]] == [event_id]
    table = hookyard("events", "list", "--config", str(config), "--url", server.url, cwd=tmp_path)
    assert event_id in table.stdout and "EVENT_TYPE" in table.stdout

    shown = hookyard(
        "events", "show", event_id, "--config", str(config), "--url", server.url, cwd=tmp_path
    )
    assert shown.returncode == 0
    assert "push" in shown.stdout and "deliveries:" in shown.stdout
    raw = hookyard(
        "events",
        "show",
        event_id,
        "--raw",
        "--config",
        str(config),
        "--url",
        server.url,
        cwd=tmp_path,
    )
    assert raw.stdout == payload.read_text()

    missing = hookyard(
        "events", "show", "evt_missing", "--config", str(config), "--url", server.url, cwd=tmp_path
    )
    assert missing.returncode == 1
    assert "404" in missing.stderr
    no_token = hookyard("events", "list", "--url", server.url, cwd=tmp_path / "..")
    assert no_token.returncode == 2
    assert "token" in no_token.stderr


def test_sighup_reloads_and_refuses_a_broken_file(tmp_path: Path, serve_processes: list) -> None:
    config = write_config(tmp_path, basic_config("http://127.0.0.1:9/unused"))
    server = start_serve(config)
    serve_processes.append(server)
    extra = f"{server.url}/in/extra"
    assert httpx.post(extra, content=b"x", timeout=CLIENT_TIMEOUT).status_code == 404

    good = config.read_text() + '\n[sources.extra]\nverify = "none"\n'
    config.write_text(good)
    server.proc.send_signal(signal.SIGHUP)
    _eventually(lambda: httpx.post(extra, content=b"x", timeout=CLIENT_TIMEOUT).status_code == 200)

    config.write_text(good.replace('verify = "none"', 'verify = "bogus"', 1))
    server.proc.send_signal(signal.SIGHUP)
    _eventually(lambda: "reload refused" in server.log())
    assert "bogus" in server.log()
    assert httpx.post(extra, content=b"y", timeout=CLIENT_TIMEOUT).status_code == 200
    assert server.proc.poll() is None


@pytest.mark.sqlite_only
def test_second_server_on_the_same_sqlite_file_is_refused(
    tmp_path: Path, serve_processes: list
) -> None:
    config = write_config(tmp_path, basic_config("http://127.0.0.1:9/unused"))
    serve_processes.append(start_serve(config))
    second = hookyard("serve", "--config", str(config), cwd=tmp_path)
    assert second.returncode == 1
    assert "in use by another Hookyard process" in second.stderr


def test_serve_with_an_invalid_config_exits_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[server]\nlisten = 'nowhere'\n")
    result = hookyard("serve", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "server.listen" in result.stderr


def test_generated_admin_token_file_is_private(tmp_path: Path, serve_processes: list) -> None:
    config = write_config(tmp_path, basic_config("http://127.0.0.1:9/unused"))
    server = start_serve(config)
    serve_processes.append(server)
    token_file = tmp_path / "hookyard.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    assert str(token_file) in server.log()
    assert token not in server.log()  # the token itself is never logged
    response = httpx.get(
        f"{server.url}/api/v1/events",
        headers={"authorization": f"Bearer {token}"},
        timeout=CLIENT_TIMEOUT,
    )
    assert response.status_code == 200


def _eventually(check, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        time.sleep(0.05)


def test_destination_commands(tmp_path: Path, serve_processes: list) -> None:
    config = write_config(tmp_path, basic_config("http://127.0.0.1:9/unused"))
    server = start_serve(config)
    serve_processes.append(server)
    common = ["--config", str(config), "--url", server.url]
    paused = hookyard("destinations", "pause", "app", *common, cwd=tmp_path)
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.strip() == "app: paused"
    listed = hookyard("destinations", "list", "--json", *common, cwd=tmp_path)
    assert json.loads(listed.stdout)[0]["state"] == "paused"
    resumed = hookyard("destinations", "resume", "app", "--json", *common, cwd=tmp_path)
    assert json.loads(resumed.stdout) == {"destination": "app", "state": "active", "changed": True}
    retried = hookyard("destinations", "retry-dead", "app", *common, cwd=tmp_path)
    assert "0 dead deliveries" in retried.stdout
    missing = hookyard("destinations", "pause", "nope", *common, cwd=tmp_path)
    assert missing.returncode == 1
    assert "no destination named" in missing.stderr


def test_replay_and_delivery_commands(tmp_path: Path, serve_processes: list) -> None:
    config = write_config(tmp_path, basic_config("http://127.0.0.1:9/unused"))
    server = start_serve(config)
    serve_processes.append(server)
    common = ["--config", str(config), "--url", server.url]
    posted = []
    for body in (b'{"k": "a"}', b'{"k": "b"}'):
        answer = httpx.post(f"{server.url}/in/open", content=body, timeout=CLIENT_TIMEOUT)
        assert answer.status_code == 200
        posted.append(answer.json()["id"])
    dry = hookyard(
        "events", "replay", "--source", "open", "--field", "k=a", "--dry-run", *common, cwd=tmp_path
    )
    assert dry.stdout.strip() == "1 events match", dry.stderr
    done = hookyard(
        "events", "replay", "--source", "open", "--yes", "--json", *common, cwd=tmp_path
    )
    assert json.loads(done.stdout) == {"matched": 2, "replayed": 2, "deliveries": 2}
    # It replays what matched when it began (under steady ingest it would never end).
    token = (tmp_path / "hookyard.token").read_text().strip()
    audit = httpx.get(
        f"{server.url}/api/v1/audit",
        headers={"authorization": f"Bearer {token}"},
        timeout=CLIENT_TIMEOUT,
    ).json()["data"]
    [replayed] = [entry for entry in audit if entry["action"] == "events.replay"]
    assert float(replayed["detail"]["filters"]["until"]) <= time.time()
    listed = hookyard("deliveries", "list", "--json", *common, cwd=tmp_path)
    rows = json.loads(listed.stdout)["data"]
    assert len(rows) == 4
    # A stopped replay goes on after the last event it replayed: the rest alone.
    rest = ["--source", "open", "--after", posted[0], "--yes", "--json"]
    went_on = hookyard("events", "replay", *rest, *common, cwd=tmp_path)
    assert json.loads(went_on.stdout) == {"matched": 2, "replayed": 1, "deliveries": 1}
    bad = hookyard("events", "replay", "--field", "nonsense", *common, cwd=tmp_path)
    assert bad.returncode == 2
    # One event, dry: nothing is sent (it replayed for real); with filters too: refused.
    one = hookyard("events", "replay", posted[1], "--dry-run", *common, cwd=tmp_path)
    assert one.stdout.strip() == "1 events match", one.stderr
    both = hookyard("events", "replay", posted[1], "--source", "open", *common, cwd=tmp_path)
    assert both.returncode == 2 and "not both" in both.stderr
    # An id is one path segment: it cannot reach another endpoint (this paused "app").
    sneaky = hookyard("events", "replay", "../destinations/app/pause?", *common, cwd=tmp_path)
    assert sneaky.returncode == 1 and "Traceback" not in sneaky.stderr
    state = hookyard("destinations", "list", "--json", *common, cwd=tmp_path)
    assert [d["state"] for d in json.loads(state.stdout)] == ["active"], state.stdout
    assert (
        len(
            json.loads(hookyard("deliveries", "list", "--json", *common, cwd=tmp_path).stdout)[
                "data"
            ]
        )
        == 5
    )


def test_token_commands(tmp_path: Path, serve_processes: list) -> None:
    config = write_config(tmp_path, basic_config("http://127.0.0.1:9/unused"))
    server = start_serve(config)
    serve_processes.append(server)
    common = ["--config", str(config), "--url", server.url]
    made = hookyard(
        "tokens", "create", "--name", "ci", "--scope", "read", "--json", *common, cwd=tmp_path
    )
    token = json.loads(made.stdout)
    listed = hookyard("tokens", "list", *common, cwd=tmp_path)
    assert "ci" in listed.stdout and token["token"] not in listed.stdout
    as_reader = hookyard(
        "events", "list", "--url", server.url, "--token", token["token"], cwd=tmp_path
    )
    assert as_reader.returncode == 0
    assert hookyard("tokens", "revoke", token["id"], *common, cwd=tmp_path).returncode == 0
    refused = hookyard(
        "events", "list", "--url", server.url, "--token", token["token"], cwd=tmp_path
    )
    assert refused.returncode == 1
    assert "revoked" in refused.stderr
    trail = hookyard("audit", *common, cwd=tmp_path)
    assert "token.revoke" in trail.stdout


def test_export_import_commands(tmp_path: Path, serve_processes: list) -> None:
    config = write_config(tmp_path, basic_config("http://127.0.0.1:9/unused"))
    server = start_serve(config)
    serve_processes.append(server)
    common = ["--config", str(config), "--url", server.url]
    httpx.post(f"{server.url}/in/open", content=b"\x00binary\xff", timeout=CLIENT_TIMEOUT)
    out = tmp_path / "log.ndjson"
    exported = hookyard(
        "events", "export", "--source", "open", "-o", str(out), *common, cwd=tmp_path
    )
    assert exported.returncode == 0 and "exported 1 events" in exported.stderr
    loaded = hookyard("events", "import", str(out), "--json", *common, cwd=tmp_path)
    assert json.loads(loaded.stdout) == {"imported": 0, "skipped": 1}
    # A bad filter: exit 2 with the API's message, as `events list` does (not 1 and raw JSON).
    bad = hookyard("events", "export", "--since", "yesterday", *common, cwd=tmp_path)
    assert bad.returncode == 2, bad.stderr
    assert "422: since: expected ISO 8601" in bad.stderr and '{"error"' not in bad.stderr


def test_rejected_list_command(tmp_path: Path, serve_processes: list) -> None:
    config = write_config(tmp_path, basic_config("http://127.0.0.1:9/unused"))
    server = start_serve(config)
    serve_processes.append(server)
    forged = httpx.post(f"{server.url}/in/github", content=b"forged", timeout=CLIENT_TIMEOUT)
    assert forged.status_code == 401
    for _ in until_deadline():  # the log is written off the request path, every half second
        shown = hookyard(
            "rejected", "list", "--config", str(config), "--url", server.url, cwd=tmp_path
        )
        assert shown.returncode == 0
        if "missing_signature" in shown.stdout:
            break
    assert "missing_signature" in shown.stdout and "X-Hub-Signature-256" in shown.stdout


def test_migrate_creates_then_finds_nothing_to_do(tmp_path: Path, backend: str) -> None:
    url = os.environ.get("HOOKYARD_SERVER__DATABASE") or f"sqlite:///{tmp_path / 'm.db'}"
    config = write_config(tmp_path, basic_config("http://127.0.0.1:9/unused"))
    args = ("migrate", "--config", str(config), "--database", url)
    dry = hookyard(*args, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert f"schema empty; would apply version {SCHEMA_VERSION}" in dry.stdout
    done = hookyard(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"schema empty -> version {SCHEMA_VERSION}" in done.stdout
    again = hookyard(*args, cwd=tmp_path)
    assert f"schema version {SCHEMA_VERSION}, up to date" in again.stdout
    if backend == "sqlite":  # created readable by its owner only, as serve creates it
        assert (tmp_path / "m.db").stat().st_mode & 0o777 == 0o600


@pytest.mark.sqlite_only
def test_an_old_database_is_migrated_by_the_command_not_by_serve_when_told(
    tmp_path: Path,
) -> None:
    old = sqlite3.connect(tmp_path / "hookyard.db")
    for _, script in migrations("sqlite")[:7]:
        old.executescript(script)
    old.close()
    config = write_config(
        tmp_path,
        basic_config("http://127.0.0.1:9/unused").replace(
            'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\nauto_migrate = false', 1
        ),
    )
    refused = hookyard("serve", "--config", str(config), cwd=tmp_path)
    assert refused.returncode == 1
    assert "schema version 7" in refused.stderr and "hookyard migrate" in refused.stderr
    dry = hookyard("migrate", "--config", str(config), "--dry-run", cwd=tmp_path)
    pending = ", ".join(str(n) for n in range(8, SCHEMA_VERSION + 1))
    assert f"schema version 7; would apply versions {pending}" in dry.stdout
    done = hookyard("migrate", "--config", str(config), cwd=tmp_path)
    assert f"schema version 7 -> version {SCHEMA_VERSION}" in done.stdout, done.stderr
    server = start_serve(config)
    server.stop()


def test_serve_on_a_taken_port_says_so_and_exits_1(tmp_path: Path) -> None:
    import socket

    config = write_config(tmp_path, basic_config("http://127.0.0.1:9/unused"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listen = f"127.0.0.1:{port}"
        done = hookyard("serve", "--config", str(config), "--listen", listen, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "cannot start: could not listen on 127.0.0.1:" in done.stderr
