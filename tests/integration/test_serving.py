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

from tests.conftest import CLIENT_TIMEOUT, DEADLINE, basic_config, start_serve, write_config


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
    answer = httpx.post(f"{server.url}/in/open", content=b"x", verify=trust, timeout=CLIENT_TIMEOUT)
    assert answer.status_code == 200
    before = _served_certificate(server.url, ca)

    second = ca.issue_cert("127.0.0.1")
    second.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "tls.pem"))
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + DEADLINE
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
        event_id = httpx.post(
            f"{server.url}/in/open", content=b"x", headers=headers, timeout=CLIENT_TIMEOUT
        ).json()["id"]
        token = (directory / "hookyard.token").read_text().strip()
        event = httpx.get(
            f"{server.url}/api/v1/events/{event_id}",
            headers={"authorization": f"Bearer {token}"},
            timeout=CLIENT_TIMEOUT,
        ).json()
        server.stop()
        for line in server.log().splitlines():
            if line.startswith("{"):
                assert json.loads(line)["level"] in ("info", "warning", "error")
        return str(event["request"]["peer"])

    assert peer_seen('"127.0.0.1"').startswith("203.0.113.7")
    assert peer_seen("").startswith("127.0.0.1")


def _closed_after(url: str, idle: float) -> bool:
    """Whether the server closed a kept-alive connection that stayed idle `idle` seconds."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        with conn.makefile("rb") as response:
            assert response.readline().startswith(b"HTTP/1.1 200")
            headers = dict(
                line.rstrip().lower().split(b": ", 1) for line in iter(response.readline, b"\r\n")
            )
            assert len(response.read(int(headers[b"content-length"]))) > 0
        time.sleep(idle)
        conn.setblocking(False)
        try:
            return conn.recv(1) == b""  # EOF: the server closed its end
        except BlockingIOError:
            return False  # still open, nothing to read


def test_idle_connections_outlive_the_keepalive_timeout_only_as_configured(
    tmp_path: Path, serve_processes
):
    def serve(extra: str) -> str:
        directory = tmp_path / (extra.split("=")[-1].strip(' "') or "default")
        directory.mkdir()
        config = basic_config("http://127.0.0.1:9/x").replace(
            'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:0"\n{extra}', 1
        )
        server = start_serve(write_config(directory, config))
        serve_processes.append(server)
        return server.url

    assert _closed_after(serve('keepalive_timeout = "1s"'), idle=2.5)
    # The default outlives a load balancer's 60 s; uvicorn's own 5 s would have closed it.
    assert not _closed_after(serve(""), idle=6)
