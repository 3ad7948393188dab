"""How `hookyard serve` faces the network: TLS with certificate reload, trusted proxies, logs."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import time
from pathlib import Path

import httpx
import trustme

from tests.conftest import basic_config, start_serve, write_config


def _served_certificate(url: str, ca: trustme.CA) -> bytes:
    host, port = url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return tls.getpeercert(binary_form=True) or b""


def test_tls_termination_and_certificate_reload_on_sighup(tmp_path: Path, serve_processes):
    ca = trustme.CA()
    first = ca.issue_cert("127.0.0.1")
    first.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "tls.pem"))
    config = write_config(
        tmp_path,
        basic_config("http://127.0.0.1:9/x").replace(
            'listen = "127.0.0.1:0"',
            'listen = "127.0.0.1:0"\ntls_cert = "tls.pem"\ntls_key = "tls.pem"',
            1,
        ),
    )
    server = start_serve(config)
    serve_processes.append(server)
    assert server.url.startswith("https://")
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    answer = httpx.post(f"{server.url}/in/open", content=b"x", verify=trust)
    assert answer.status_code == 200
    before = _served_certificate(server.url, ca)

    second = ca.issue_cert("127.0.0.1")
    second.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "tls.pem"))
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while _served_certificate(server.url, ca) == before:
        assert time.monotonic() < deadline, "the renewed certificate was never served"
        time.sleep(0.05)


def test_forwarded_headers_are_believed_only_from_trusted_proxies(
    tmp_path: Path, serve_processes, fresh_database
):
    def peer_seen(trusted: str) -> str:
        directory = tmp_path / (trusted or "none").replace("/", "_")
        directory.mkdir()
        config = write_config(
            directory,
            basic_config("http://127.0.0.1:9/x").replace(
                'listen = "127.0.0.1:0"',
                f'listen = "127.0.0.1:0"\ntrusted_proxies = [{trusted}]\nlog_format = "json"',
                1,
            ),
        )
        fresh_database()
        server = start_serve(config)
        serve_processes.append(server)
        headers = {"x-forwarded-for": "203.0.113.7"}
        event_id = httpx.post(f"{server.url}/in/open", content=b"x", headers=headers).json()["id"]
        token = (directory / "hookyard.token").read_text().strip()
        event = httpx.get(
            f"{server.url}/api/v1/events/{event_id}", headers={"authorization": f"Bearer {token}"}
        ).json()
        server.stop()
        for line in server.log().splitlines():
            if line.startswith("{"):
                assert json.loads(line)["level"] in ("info", "warning", "error")
        return str(event["request"]["peer"])

    assert peer_seen('"127.0.0.1"').startswith("203.0.113.7")
    assert peer_seen("").startswith("127.0.0.1")
