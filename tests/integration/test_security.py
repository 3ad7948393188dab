"""Credentials stay out of storage, API answers and outbound requests."""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import time
import uuid

import httpx
import pytest

from hookyard.tokens import hash_token, read_token_file
from tests.conftest import (
    CLIENT_TIMEOUT,
    DEADLINE,
    GITHUB_SECRET,
    basic_config,
    query_database,
    start_serve,
    write_config,
)


def _signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "x-hub-signature-256": f"sha256={digest}",
        "x-github-delivery": str(uuid.uuid4()),
        "x-github-event": "push",
    }


async def test_credentials_are_redacted_in_events_and_rejections(hookyard_factory, receiver):
    body = b'{"ok": 1}'
    secret_headers = {"authorization": "Bearer sk_live_provider", "cookie": "session=abc"}
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        accepted = await hy.client.post(
            "/in/github?token=t0ps3cret&x=1",
            content=body,
            headers={**_signed(body), **secret_headers},
        )
        rejected = await hy.client.post(
            "/in/github?api_key=k3y", content=b"forged", headers=secret_headers
        )
        assert rejected.status_code == 401
        await hy.service.state.rejected.flush()
        async with hy.api() as api:
            event = (await api.get(f"/api/v1/events/{accepted.json()['id']}")).json()
            logged = (await api.get("/api/v1/rejected")).json()["data"]
    shown = str(event) + str(logged)
    for secret in ("sk_live_provider", "session=abc", "t0ps3cret", "k3y"):
        assert secret not in shown
    assert dict(event["request"]["headers"])["authorization"] == "[redacted]"
    assert event["request"]["query"] == "token=[redacted]&x=1"
    assert dict(logged[0]["headers"])["cookie"] == "[redacted]"


async def test_a_request_for_no_source_keeps_no_credential(hookyard_factory, receiver):
    """A mistyped path (or a source a reload removed) reaches no source's own redaction: every
    source's credential headers are masked, and any whose name says it holds one."""
    partner = """
        [sources.partner]
        verify = "token"
        token_header = "X-Partner-Pass"
        secrets = ["p4ss-partner-0001"]
    """
    async with hookyard_factory(basic_config(receiver.url, extra=partner)) as hy:
        headers = {"x-partner-pass": "p4ss-partner-0001", "x-shop-secret": "shhh-0002"}
        missed = await hy.client.post("/in/partnr", content=b"{}", headers=headers)
        assert missed.status_code == 404
        await hy.service.state.rejected.flush()
        async with hy.api() as api:
            logged = (await api.get("/api/v1/rejected")).json()["data"]
    assert "p4ss-partner-0001" not in str(logged) and "shhh-0002" not in str(logged)
    assert dict(logged[0]["headers"])["x-partner-pass"] == "[redacted]"


async def test_raw_bodies_need_the_admin_token(hookyard_factory, receiver):
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        event_id = (await hy.client.post("/in/open", content=b"private")).json()["id"]
        hy.service.store.ensure_token("reader", hash_token("hky_reader"), "read")
        reader = {"authorization": "Bearer hky_reader"}
        listed = await hy.client.get("/api/v1/events", headers=reader)
        assert listed.status_code == 200
        raw = await hy.client.get(f"/api/v1/events/{event_id}/raw", headers=reader)
        assert raw.status_code == 403
        assert raw.json()["error"] == "forbidden"
        async with hy.api() as api:
            assert (await api.get(f"/api/v1/events/{event_id}/raw")).content == b"private"


async def test_destination_urls_are_shown_without_credentials(hookyard_factory, receiver):
    url = receiver.url.replace("http://", "http://user:pa55@") + "?token=s3cret"
    async with hookyard_factory(basic_config(url)) as hy, hy.api() as api:
        shown = (await api.get("/api/v1/destinations")).json()[0]["url"]
    assert "pa55" not in shown and "s3cret" not in shown
    assert shown.startswith("http://***@127.0.0.1:")


async def test_event_types_cannot_inject_outbound_headers(hookyard_factory, receiver):
    config = basic_config(receiver.url).replace(
        'verify = "none"', 'verify = "none"\ntype_field = "type"', 1
    )
    async with hookyard_factory(config) as hy:
        body = b'{"type": "order.paid\\r\\nX-Injected: yes"}'
        assert (await hy.client.post("/in/open", content=body)).status_code == 200
        await receiver.wait_for(1)
    got = receiver.received[0].headers
    assert "x-injected" not in got
    assert got["hookyard-event-type"].startswith("order.paid")


def test_configured_admin_token_revokes_the_generated_one(tmp_path, serve_processes):
    config = write_config(tmp_path, basic_config("http://127.0.0.1:9/unused"))
    first = start_serve(config)
    generated = read_token_file(tmp_path / "hookyard.token")
    first.stop()
    config.write_text(
        config.read_text().replace(
            'listen = "127.0.0.1:0"',
            'listen = "127.0.0.1:0"\nadmin_token = "hky_configured_for_the_test"',
            1,
        )
    )
    second = start_serve(config)
    serve_processes.append(second)

    def status(token: str | None) -> int:
        headers = {"authorization": f"Bearer {token}"}
        return httpx.get(
            f"{second.url}/api/v1/events", headers=headers, timeout=CLIENT_TIMEOUT
        ).status_code

    assert status("hky_configured_for_the_test") == 200
    assert status(generated) == 401
    # It is revoked by the config, not the API (a restart would bring it back) ...
    headers = {"authorization": "Bearer hky_configured_for_the_test"}
    tokens = httpx.get(f"{second.url}/api/v1/tokens", headers=headers, timeout=CLIENT_TIMEOUT)
    [configured] = [t for t in tokens.json() if t["name"] == "admin (configured)"]
    refused = httpx.delete(
        f"{second.url}/api/v1/tokens/{configured['id']}", headers=headers, timeout=CLIENT_TIMEOUT
    )
    assert refused.status_code == 409 and "server.admin_token" in refused.json()["message"]
    # ... and once the config names it no more, it stops working; a new one is generated.
    second.stop()
    config.write_text(config.read_text().replace('admin_token = "hky_configured_for_the_test"', ""))
    third = start_serve(config)
    serve_processes.append(third)
    second = third
    assert status("hky_configured_for_the_test") == 401
    assert status(read_token_file(tmp_path / "hookyard.token")) == 200


def test_sigterm_gives_leases_back(tmp_path, serve_processes):
    """Attempts still running after the grace period are released, not left leased."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    release = threading.Event()

    class Hang(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            release.wait(20)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hang)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = write_config(
            tmp_path,
            basic_config(f"http://127.0.0.1:{server.server_port}/h").replace(
                'timeout = "2s"', 'timeout = "15s"'
            )
            + '\n[worker]\nshutdown_grace = "300ms"\n',
        )
        hy = start_serve(config)
        serve_processes.append(hy)
        answer = httpx.post(f"{hy.url}/in/open", content=b"x", timeout=CLIENT_TIMEOUT)
        assert answer.status_code == 200
        deadline = time.monotonic() + DEADLINE
        while query_database(tmp_path, "SELECT status FROM deliveries")[0][0] != "in_flight":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        hy.proc.send_signal(signal.SIGTERM)
        assert hy.proc.wait(30) == 0
        [(status, attempts, lease)] = query_database(
            tmp_path,
            "SELECT status, attempts, lease_until FROM deliveries",
        )
        assert (status, attempts, lease) == ("pending", 0, None)
    finally:
        release.set()
        server.shutdown()
        server.server_close()


async def test_api_bodies_are_bounded_before_the_token_is_checked(hookyard_factory, receiver):
    """FastAPI parses a JSON body before checking the token: the bound comes first, whether
    the length is declared or the body is chunked."""
    huge = b'{"name": "' + b"x" * (5 * 1024 * 1024) + b'", "scope": "read"}'

    async def chunked(body: bytes):  # no Content-Length: sent in pieces
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    async with hookyard_factory(basic_config(receiver.url)) as hy:
        declared = await hy.client.post("/api/v1/tokens", content=huge)
        assert declared.status_code == 413 and declared.json()["error"] == "body_too_large"
        streamed = await hy.client.post("/api/v1/tokens", content=chunked(huge))
        assert streamed.status_code == 413
        small = await hy.client.post("/api/v1/tokens", content=b'{"name": "a", "scope": "read"}')
        assert small.status_code == 401  # within the bound, the token check answers
        async with hy.api() as api:  # a chunked body within the bound arrives whole
            body = b'{"name": "dashboards", "scope": "read"}'
            json = {"content-type": "application/json"}
            made = await api.post("/api/v1/tokens", content=chunked(body), headers=json)
            assert made.status_code == 201 and made.json()["name"] == "dashboards"


@pytest.mark.sqlite_only
async def test_the_database_files_are_readable_by_their_owner_only(hookyard_factory, receiver):
    """Raw bodies carry what providers send, credentials included: whatever the umask, the
    database, its write-ahead log and its index are 0600 (they were 0644)."""
    previous = os.umask(0o022)
    try:
        async with hookyard_factory(basic_config(receiver.url)) as hy:
            assert (await hy.client.post("/in/open", content=b"{}")).status_code == 200
            base = hy.service.gateway.base_dir / "hookyard.db"
            files = [base, base.with_name("hookyard.db-wal"), base.with_name("hookyard.db-shm")]
            modes = {path.name: oct(path.stat().st_mode & 0o777) for path in files}
    finally:
        os.umask(previous)
    assert set(modes.values()) == {"0o600"}, modes


async def test_credentials_named_as_such_are_redacted_when_stored_and_never_forwarded(
    hookyard_factory, receiver
):
    """A token header or query parameter to a known source, under a name no list holds
    (X-Auth-Token, ?auth_token=), is redacted in the stored request, which a read-only token
    can read, and not forwarded even when the source's allow-list names it. Provider
    signature headers are no credentials: they are stored and forwarded as they came."""
    config = basic_config(receiver.url).replace(
        'verify = "github"', 'verify = "github"\nforward_headers = ["x-auth-*"]', 1
    )
    body = b'{"ok": "named"}'
    headers = {**_signed(body), "x-auth-token": "s3cret-partner-token"}
    async with hookyard_factory(config) as hy:
        answer = await hy.client.post(
            "/in/github?auth_token=s3cret-query-token&x=1", content=body, headers=headers
        )
        assert answer.status_code == 200, answer.text
        hy.service.store.ensure_token("reader", hash_token("hky_reader"), "read")
        shown = await hy.client.get(
            f"/api/v1/events/{answer.json()['id']}",
            headers={"authorization": "Bearer hky_reader"},
        )
        await receiver.wait_for(1)
    request = shown.json()["request"]
    assert "s3cret" not in str(request)
    assert dict(request["headers"])["x-auth-token"] == "[redacted]"
    assert dict(request["headers"])["x-hub-signature-256"] == headers["x-hub-signature-256"]
    assert request["query"] == "auth_token=[redacted]&x=1"
    got = receiver.received[0].headers
    assert "x-auth-token" not in got
    assert got["x-hub-signature-256"] == headers["x-hub-signature-256"]


async def test_a_signed_url_verifies_as_received_though_its_token_is_redacted(
    hookyard_factory, receiver
):
    """Twilio signs the whole URL, credential-looking parameters included: verification reads
    the URL as it came; only the stored copy is redacted."""
    from urllib.parse import urlencode

    from hookyard.verify import VerifyOptions, build_verifier

    public = "https://hooks.example.com"
    config = (
        basic_config(receiver.url).replace(
            'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:0"\npublic_url = "{public}"', 1
        )
        + '\n[sources.sms]\nverify = "twilio"\nsecrets = ["t"]\n'
    )
    path = "/in/sms?auth_token=s3cret-in-url"
    body = urlencode([("MessageSid", "SM1"), ("MessageStatus", "delivered")]).encode()
    signer = build_verifier("twilio", ["t"], VerifyOptions())
    headers = signer.sign(body, url=public + path, timestamp=0, message_id="i-1")
    headers["content-type"] = "application/x-www-form-urlencoded"
    async with hookyard_factory(config) as hy:
        answer = await hy.client.post(path, content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        async with hy.api() as api:
            request = (await api.get(f"/api/v1/events/{answer.json()['id']}")).json()["request"]
    assert request["query"] == "auth_token=[redacted]"
    # Twilio's delivery id only looks like a credential.
    assert dict(request["headers"])["i-twilio-idempotency-token"] == "i-1"


async def test_an_internal_source_is_answered_like_a_name_that_is_none(hookyard_factory, receiver):
    """POST /in/NAME for an api source must not tell it from an unknown name (nor hand out its
    API path): anyone could enumerate internal sources. The rejected log, read with a token,
    says where it takes events."""
    internal = '\n[sources.billing-internal]\nkind = "api"\n'
    async with hookyard_factory(basic_config(receiver.url, extra=internal)) as hy:
        unknown = await hy.client.post("/in/no-such-source", content=b"{}")
        known = await hy.client.post("/in/billing-internal", content=b"{}")
        await hy.service.state.rejected.flush()
        async with hy.api() as api:
            logged = (await api.get("/api/v1/rejected")).json()["data"]
    assert unknown.status_code == known.status_code == 404
    assert known.json() == {
        **unknown.json(),
        "message": unknown.json()["message"].replace("no-such-source", "billing-internal"),
    }
    [reason] = [item["reason"] for item in logged if item["source"] == "billing-internal"]
    assert "/api/v1/sources/billing-internal/events" in reason
