"""POST /in/{source} over real HTTP: accept, deduplicate, reject, and deliver byte for byte."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import sqlite3
import textwrap
import uuid

import pytest
import standardwebhooks

from tests.conftest import DEADLINE, DEST_SECRET, GITHUB_SECRET, basic_config, until_deadline


def github_headers(body: bytes, event: str = "push", secret: str = GITHUB_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "x-hub-signature-256": f"sha256={digest}",
        "x-github-delivery": str(uuid.uuid4()),
        "x-github-event": event,
        "content-type": "application/json",
    }


async def test_accepts_and_delivers_byte_for_byte(hookyard_factory, receiver):
    body = b'{"ref":"refs/heads/main",  "n": 1}\n'
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        headers = {**github_headers(body), "authorization": "Bearer provider-credential"}
        response = await hy.client.post("/in/github", content=body, headers=headers)
        assert response.status_code == 200
        answer = response.json()
        assert answer["duplicate"] is False
        await receiver.wait_for(1)
    got = receiver.received[0]
    assert got.body == body
    assert got.headers["webhook-id"] == answer["id"]
    assert got.headers["content-type"] == "application/json"
    assert got.headers["hookyard-event-type"] == "push"
    assert got.headers["x-github-event"] == "push"
    assert got.headers["x-hub-signature-256"] == headers["x-hub-signature-256"]
    assert "authorization" not in got.headers  # credentials are never forwarded
    # Hookyard's own signature verifies with the Standard Webhooks library.
    standardwebhooks.Webhook(DEST_SECRET).verify(got.body, got.headers)


async def test_forwarded_header_bytes_arrive_as_they_came(hookyard_factory, receiver):
    body = b'{"ref":"refs/heads/main"}'
    utf8 = "caf\u00e9 \u2713".encode()
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        headers = {
            **github_headers(body),
            "x-github-hook-installation-target-type": utf8,
            "x-github-hook-id": b"\xe9",  # not UTF-8: goes as the UTF-8 of its Latin-1 reading
        }
        response = await hy.client.post("/in/github", content=body, headers=headers)
        assert response.status_code == 200, response.text
        await receiver.wait_for(1)
    got = receiver.received[0].headers
    assert got["x-github-hook-installation-target-type"].encode("utf-8", "surrogateescape") == utf8
    assert got["x-github-hook-id"].encode("utf-8", "surrogateescape") == b"\xc3\xa9"


async def test_duplicate_by_body_hash_is_acknowledged_not_delivered(hookyard_factory, receiver):
    body = b'{"same": true}'
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        first = await hy.client.post("/in/github", content=body, headers=github_headers(body))
        # A replay of captured bytes with a fresh (unsigned) delivery id is still a duplicate.
        second = await hy.client.post("/in/github", content=body, headers=github_headers(body))
        assert second.status_code == 200
        assert second.json() == {"id": first.json()["id"], "duplicate": True}
        await receiver.wait_for(1)
        await asyncio.sleep(0.3)
    assert len(receiver.received) == 1


async def test_sources_without_signature_do_not_dedup_on_body(hookyard_factory, receiver):
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        a = await hy.client.post("/in/open", content=b"alert")
        b = await hy.client.post("/in/open", content=b"alert")
        assert a.json()["id"] != b.json()["id"]
        await receiver.wait_for(2)


async def test_odd_bodies_are_stored_exactly(hookyard_factory, receiver):
    bodies = [b"{not json", b"a=1&b=%ZZ", b"\xff\xfe\x00binary\x80", b""]
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        ids = []
        for body in bodies:
            headers = {**github_headers(body), "content-type": "application/octet-stream"}
            response = await hy.client.post("/in/github", content=body, headers=headers)
            assert response.status_code == 200, response.text
            ids.append(response.json()["id"])
        async with hy.api() as api:
            for event_id, body in zip(ids, bodies, strict=True):
                raw = await api.get(f"/api/v1/events/{event_id}/raw")
                assert raw.status_code == 200
                assert raw.content == body
                assert raw.headers["content-type"] == "application/octet-stream"
        await receiver.wait_for(len(bodies))
    assert sorted(r.body for r in receiver.received) == sorted(bodies)


async def test_rejections_answer_with_a_reason_and_are_logged(hookyard_factory, receiver):
    config = basic_config(receiver.url).replace(
        'verify = "github"', 'verify = "github"\nmax_body = "1KiB"', 1
    )
    body = b'{"a": 1}'
    async with hookyard_factory(config) as hy:
        cases = [
            (await hy.client.post("/in/nope", content=body), 404, "unknown_source"),
            (await hy.client.post("/in/github", content=body), 401, "missing_signature"),
            (
                await hy.client.post(
                    "/in/github", content=body, headers=github_headers(body, secret="wrong")
                ),
                401,
                "bad_signature",
            ),
            (
                await hy.client.post(
                    "/in/github", content=b"x" * 2000, headers=github_headers(b"x" * 2000)
                ),
                413,
                "body_too_large",
            ),
            (
                await hy.client.post(
                    "/in/github",
                    content=body,
                    headers={**github_headers(body), "x-big": "y" * 40_000},
                ),
                431,
                "headers_too_large",
            ),
            (await hy.client.get("/in/github"), 405, "method_not_allowed"),
        ]
        for response, status, code in cases:
            assert response.status_code == status, response.text
            assert response.json()["error"] == code
            assert response.json()["message"]
        assert cases[-1][0].headers["allow"] == "POST"
        await hy.service.state.rejected.flush()  # normally every 0.5 s, off the request path
        async with hy.api() as api:
            logged = (await api.get("/api/v1/rejected")).json()["data"]
    assert sorted(item["code"] for item in logged) == sorted(code for _, _, code in cases)
    bad = next(item for item in logged if item["code"] == "bad_signature")
    assert "X-Hub-Signature-256" in bad["reason"]


async def test_chunked_body_over_the_limit_is_refused(hookyard_factory, receiver):
    config = basic_config(receiver.url).replace(
        'verify = "none"', 'verify = "none"\nmax_body = 1000', 1
    )

    async def chunks():
        for _ in range(10):
            yield b"z" * 500

    async with hookyard_factory(config) as hy:
        response = await hy.client.post("/in/open", content=chunks())
        assert response.status_code == 413


async def test_database_failure_answers_503_and_stores_nothing(hookyard_factory, receiver):
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        store = hy.service.store

        def fail(conn: sqlite3.Connection) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        store.writer.commit_hook = fail
        response = await hy.client.post("/in/open", content=b"lost?")
        assert response.status_code == 503
        assert response.headers["retry-after"]
        assert response.json()["error"] == "unavailable"
        store.writer.commit_hook = None
        ok = await hy.client.post("/in/open", content=b"kept")
        assert ok.status_code == 200
        async with hy.api() as api:
            listed = (await api.get("/api/v1/events")).json()["data"]
    assert [e["id"] for e in listed] == [ok.json()["id"]]


async def test_overload_answers_503_with_retry_after(hookyard_factory, receiver):
    import threading

    config = (
        basic_config(receiver.url)
        .replace('listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\nmax_pending = 1', 1)
        .replace('listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\nroles = ["ingest", "api"]', 1)
    )  # only ingest writes: the queue depth is ours
    async with hookyard_factory(config) as hy:
        store = hy.service.store
        # Housekeeping and retention write too; stop them so that the queue holds only this
        # test's requests.
        background = [hy.service._maintenance, hy.service._retention]
        for task in background:
            assert task is not None
            task.cancel()
        await asyncio.wait(background)
        await store.take_job("barrier", 1, "test")  # committed after anything queued before
        in_commit = threading.Event()
        gate = threading.Event()

        def hold(conn: sqlite3.Connection) -> None:
            in_commit.set()
            gate.wait(DEADLINE)

        store.writer.commit_hook = hold
        first = asyncio.create_task(hy.client.post("/in/open", content=b"1"))
        assert await asyncio.to_thread(in_commit.wait, DEADLINE)  # the writer holds the first
        second = asyncio.create_task(hy.client.post("/in/open", content=b"2"))
        while store.pending_writes < 1:  # the second waits in the queue: the bound is reached
            await asyncio.sleep(0.01)
        third = await hy.client.post("/in/open", content=b"3")
        assert third.status_code == 503
        assert third.headers["retry-after"] == "1"
        store.writer.commit_hook = None
        gate.set()
        assert (await first).status_code == 200
        second_answer = await second
        assert second_answer.status_code == 200, second_answer.text


async def test_slack_url_verification_is_answered_inline(hookyard_factory, receiver):
    import time

    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    config = (
        basic_config(receiver.url)
        + f"""
[sources.slack]
verify = "slack"
secrets = ["{secret}"]
"""
    )
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = b'{"token":"x","challenge":"%s","type":"url_verification"}' % challenge.encode()
    ts = str(int(time.time()))
    signature = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256)
    headers = {
        "x-slack-request-timestamp": ts,
        "x-slack-signature": "v0=" + signature.hexdigest(),
        "content-type": "application/json",
    }
    async with hookyard_factory(config) as hy:
        response = await hy.client.post("/in/slack", content=body, headers=headers)
        assert response.status_code == 200
        assert challenge in response.text
        forged = await hy.client.post(
            "/in/slack", content=body, headers={**headers, "x-slack-signature": "v0=00"}
        )
        assert forged.status_code == 401
        async with hy.api() as api:  # no event of the source: the challenge is not one
            listed = await api.get("/api/v1/events", params={"source": "slack"})
            assert listed.json()["data"] == []


async def test_routes_filter_by_type_and_payload(hookyard_factory, receiver):
    config = basic_config(receiver.url).replace(
        """[[routes]]
        source = "github"
        destination = "app"
""",
        """[[routes]]
        source = "github"
        destination = "app"
        types = ["pull_request.*"]
        where = { "pull_request.base.ref" = "main", "pull_request.draft" = { equals = false } }
""",
    )
    wanted = b'{"action":"opened","pull_request":{"draft":false,"base":{"ref":"main"}}}'
    other_branch = b'{"action":"opened","pull_request":{"draft":false,"base":{"ref":"dev"}}}'
    push = b'{"ref":"main"}'
    async with hookyard_factory(config) as hy:
        for body, event in (
            (wanted, "pull_request"),
            (other_branch, "pull_request"),
            (push, "push"),
        ):
            response = await hy.client.post(
                "/in/github", content=body, headers=github_headers(body, event)
            )
            assert response.status_code == 200
        await receiver.wait_for(1)
        await asyncio.sleep(0.3)
        async with hy.api() as api:
            assert len((await api.get("/api/v1/events")).json()["data"]) == 3
    assert [r.body for r in receiver.received] == [wanted]
    assert receiver.received[0].headers["hookyard-event-type"] == "pull_request.opened"


async def test_api_needs_a_token(hookyard_factory, receiver):
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        assert (await hy.client.get("/api/v1/events")).status_code == 401
        wrong = await hy.client.get("/api/v1/events", headers={"authorization": "Bearer hky_wrong"})
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "unauthorized"
        assert (await hy.client.get("/healthz")).status_code == 200
        assert (await hy.client.get("/readyz")).status_code == 200
        openapi = await hy.client.get("/api/openapi.json")
        assert "/api/v1/events" in openapi.json()["paths"]


async def test_event_list_pages_with_cursor_and_filters(hookyard_factory, receiver):
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        ids = [
            (await hy.client.post("/in/open", content=f"{i}".encode())).json()["id"]
            for i in range(7)
        ]
        async with hy.api() as api:
            seen: list[str] = []
            cursor = None
            while True:
                params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
                page = (await api.get("/api/v1/events", params=params)).json()
                seen += [e["id"] for e in page["data"]]
                # New events arriving between pages do not disturb the walk.
                await hy.client.post("/in/open", content=b"late")
                cursor = page["next_cursor"]
                if not cursor:
                    break
            assert seen == list(reversed(ids))
            ascending = await api.get("/api/v1/events", params={"order": "asc", "limit": 2})
            assert [e["id"] for e in ascending.json()["data"]] == ids[:2]
            assert (await api.get("/api/v1/events", params={"source": "github"})).json()[
                "data"
            ] == []
            future = await api.get("/api/v1/events", params={"since": "2999-01-01T00:00:00Z"})
            assert future.json()["data"] == []
            bad = await api.get("/api/v1/events", params={"since": "yesterday"})
            assert bad.status_code == 422
            assert bad.json()["error"] == "invalid_parameter"
            detail = (await api.get(f"/api/v1/events/{ids[0]}")).json()
            assert detail["request"]["method"] == "POST"
            missing = await api.get("/api/v1/events/evt_nope")
            assert missing.status_code == 404


async def test_empty_source_name_is_unknown(hookyard_factory, receiver):
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        response = await hy.client.post("/in/", content=b"x")
        assert response.status_code == 404
        assert response.json()["error"] == "unknown_source"


async def test_dedup_keys_expire_after_the_window(hookyard_factory, receiver):
    from hookyard.maintenance import expire_dedup_keys

    config = basic_config(receiver.url).replace(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\ndedup_window = "200ms"', 1
    )
    body = b'{"once": "per window"}'
    async with hookyard_factory(config) as hy:
        first = await hy.client.post("/in/github", content=body, headers=github_headers(body))
        assert await expire_dedup_keys(hy.service.state) == 0  # still inside the window
        again = await hy.client.post("/in/github", content=body, headers=github_headers(body))
        assert again.json() == {"id": first.json()["id"], "duplicate": True}
        await asyncio.sleep(0.3)
        # Both delivery ids (the replay's points at the original) and the body hash.
        assert await expire_dedup_keys(hy.service.state) == 3
        later = await hy.client.post("/in/github", content=body, headers=github_headers(body))
        assert later.json()["duplicate"] is False
        assert later.json()["id"] != first.json()["id"]


@pytest.mark.sqlite_only
async def test_maintenance_keeps_planner_statistics(hookyard_factory, receiver, tmp_path):
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        await hy.client.post("/in/open", content=b"x")
        await hy.service.store.analyze()
    conn = sqlite3.connect(tmp_path / "hookyard.db")
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert "sqlite_stat1" in tables


async def test_provider_handshakes_are_answered_over_http(hookyard_factory, receiver):
    """Zoom's URL validation, through the real ingest endpoint (the unit tests cover every
    provider's scheme)."""
    import json
    import time

    secret = "zoom-secret-token"
    config = (
        basic_config(receiver.url)
        + f"""
[sources.zoom]
verify = "zoom"
secrets = ["{secret}"]
"""
    )
    body = b'{"event":"endpoint.url_validation","payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"}}'
    ts = str(int(time.time()))
    mac = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {"x-zm-request-timestamp": ts, "x-zm-signature": f"v0={mac}"}
    async with hookyard_factory(config) as hy:
        answer = await hy.client.post("/in/zoom", content=body, headers=headers)
        assert answer.status_code == 200
        expected = hmac.new(secret.encode(), b"qgg8vlvZRS6UYooatFL8Aw", hashlib.sha256).hexdigest()
        assert json.loads(answer.content) == {
            "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
            "encryptedToken": expected,
        }
        forged = await hy.client.post(
            "/in/zoom", content=body, headers={**headers, "x-zm-signature": "v0=00"}
        )
        assert forged.status_code == 401
        async with hy.api() as api:  # the answered challenge is recorded

            async def recorded() -> list[dict]:
                page = await api.get("/api/v1/events", params={"type": "source.handshake"})
                return page.json()["data"]

            for _ in until_deadline():
                if await recorded():
                    break
                await asyncio.sleep(0.02)
            [event] = await recorded()
            raw = (await api.get(f"/api/v1/events/{event['id']}/raw")).json()
            assert raw["data"] == {"source": "zoom", "scheme": "zoom", "status": 200}


async def test_api_reads_answer_503_while_the_database_is_away(hookyard_factory, receiver):
    from hookyard.errors import StoreError

    async with hookyard_factory(basic_config(receiver.url)) as hy:

        async def away(*args, **kwargs):  # a fault on demand: the link to the database is gone
            raise StoreError("the database is unavailable: connection refused")

        hy.service.store.list_events = away  # type: ignore[method-assign]
        async with hy.api() as api:
            answer = await api.get("/api/v1/events")
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "1"
        assert answer.json()["error"] == "unavailable"
        assert "refused" not in answer.text  # the cause is logged, not shown


async def test_a_process_without_a_role_says_so(hookyard_factory, receiver):
    only_api = basic_config(receiver.url).replace(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\nroles = ["api"]', 1
    )
    async with hookyard_factory(only_api) as hy:
        refused = await hy.client.post("/in/open", content=b"{}")
        assert refused.status_code == 404 and refused.json()["error"] == "role_not_served"
        assert "does not run the ingest role (its roles: api)" in refused.json()["message"]
        assert (await hy.client.get("/healthz")).status_code == 200  # served by every role


async def test_a_signed_url_without_public_url_is_warned_of_at_start(
    hookyard_factory, receiver, caplog
):
    config = basic_config(receiver.url) + '\n[sources.sms]\nverify = "twilio"\nsecrets = ["t"]\n'
    async with hookyard_factory(config):
        pass
    [warning] = [r for r in caplog.records if "signs the URL" in r.getMessage()]
    assert warning.levelname == "WARNING"
    assert "sources.sms" in warning.getMessage()
    assert "[server] public_url" in warning.getMessage()


async def test_nul_in_an_event_type_or_a_path_is_stored_not_refused(
    hookyard_factory, receiver, backend
):
    """PostgreSQL text cannot hold NUL: the event and the rejection are stored all the same."""
    config = basic_config(receiver.url).replace(
        'verify = "none"', 'verify = "none"\ntype_field = "type"', 1
    )
    async with hookyard_factory(config) as hy:
        body = b'{"type": "order.\\u0000paid"}'
        answer = await hy.client.post("/in/open", content=body)
        assert answer.status_code == 200, answer.text
        lost = await hy.client.post("/in/nowhere%00", content=b"{}")
        assert lost.status_code == 404
        await hy.service.state.rejected.flush()
        async with hy.api() as api:
            event = (await api.get(f"/api/v1/events/{answer.json()['id']}")).json()
            raw = await api.get(f"/api/v1/events/{answer.json()['id']}/raw")
            logged = (await api.get("/api/v1/rejected")).json()["data"]
    nul = "\ufffd" if backend == "postgresql" else "\x00"  # PostgreSQL text cannot hold NUL
    assert event["event_type"] == f"order.{nul}paid"
    assert raw.content == body  # the payload is bytes: kept exactly on both
    assert [(item["code"], item["path"]) for item in logged] == [
        ("unknown_source", f"/in/nowhere{nul}")
    ]


@pytest.mark.parametrize("dedup_body", [None, False])
async def test_a_twilio_replay_with_its_fields_reordered_is_a_duplicate_unless_told_not(
    hookyard_factory, receiver, dedup_body
):
    """Twilio signs the sorted fields: reordered, the same request signs the same and carries
    a new idempotency token, yet it is the same request. A source with dedup_body = false
    (identical requests can both be real: a caller pressing 1 twice) keeps both."""
    from urllib.parse import urlencode

    from hookyard.verify import VerifyOptions, build_verifier

    public = "https://hooks.example.com"
    option = "" if dedup_body is None else "dedup_body = false\n"
    config = (
        basic_config(receiver.url).replace(
            'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:0"\npublic_url = "{public}"', 1
        )
        + f'\n[sources.sms]\nverify = "twilio"\nsecrets = ["t"]\n{option}'
    )
    fields = [("CallSid", "CA1"), ("Digits", "1"), ("CallStatus", "in-progress")]
    signer = build_verifier("twilio", ["t"], VerifyOptions())
    answers = []
    async with hookyard_factory(config) as hy:
        for body, token in ((urlencode(fields), "a"), (urlencode(fields[::-1]), "b")):
            headers = signer.sign(body.encode(), url=f"{public}/in/sms", timestamp=0, message_id="")
            headers |= {
                "content-type": "application/x-www-form-urlencoded",
                "i-twilio-idempotency-token": token,
            }
            answer = await hy.client.post("/in/sms", content=body.encode(), headers=headers)
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
    assert answers[1]["duplicate"] is (dedup_body is None)


async def test_a_reload_whose_sources_clash_with_the_running_server_section_is_refused(
    hookyard_factory, receiver, tmp_path, caplog
):
    """[server] changes wait for a restart, so the new sources are checked against the running
    section too: a Mailgun tolerance the new dedup_window allows but the running one does not
    is refused like any invalid file (it escaped as a traceback)."""
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        clash = basic_config(receiver.url).replace(
            'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\ndedup_window = "30d"', 1
        )
        clash += '\n[sources.mail]\nverify = "mailgun"\nsecrets = ["k"]\ntolerance = "10d"\n'
        (tmp_path / "hookyard.toml").write_text(textwrap.dedent(clash))
        assert hy.service.reload() is False
        assert "reload refused" in caplog.text and "sources.mail.tolerance" in caplog.text
        assert "mail" not in hy.service.gateway.sources


async def _raw_exchange(url: str, parts: list[bytes], pause: float = 0.0) -> bytes:
    """Send `parts` on a raw connection (stopping when the server closes it), then read all it
    answers until it closes the connection."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for part in parts:
            try:
                writer.write(part)
                await writer.drain()
            except (ConnectionResetError, BrokenPipeError):
                break
            if pause:
                await asyncio.sleep(pause)
        try:
            return await asyncio.wait_for(reader.read(), DEADLINE)
        except ConnectionResetError:
            return b""
    finally:
        writer.close()


async def test_a_huge_head_is_refused_as_it_arrives_not_once_in_memory(hookyard_factory, receiver):
    """200 MB of small headers grew the process by hundreds of MB before ingest answered 431:
    the head is counted as it comes in, and refused past the limit."""
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        start = b"POST /in/open HTTP/1.1\r\nhost: x\r\n"
        headers = [b"x-a: " + b"a" * 1000 + b"\r\n"] * 2000  # 2 MB
        answer = await _raw_exchange(hy.url, [start, *headers])
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
        # Said by the protocol as the head came in, not by ingest once it was all read.
        assert b"the request line and headers exceed" in answer, answer
        assert (await hy.client.post("/in/open", content=b"{}")).status_code == 200


async def test_a_head_or_body_that_trickles_in_is_answered_408(
    hookyard_factory, receiver, monkeypatch
):
    """A client sending slowly held its connection (and what it sent) for as long as it liked."""
    monkeypatch.setattr("hookyard.http_protocol.HEAD_TIMEOUT", 0.5)
    monkeypatch.setattr("hookyard.http_protocol.BODY_TIMEOUT", 0.5)
    config = basic_config(receiver.url).replace(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\nkeepalive_timeout = "1s"', 1
    )
    async with hookyard_factory(config) as hy:
        head = await _raw_exchange(hy.url, [b"POST /in/open HTTP/1.1\r\nhost: x\r\n"])
        assert head.startswith(b"HTTP/1.1 408") and b"request_timeout" in head, head
        started = b"POST /in/open HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789"
        body = await _raw_exchange(hy.url, [started])
        assert body.startswith(b"HTTP/1.1 408") and b"request_timeout" in body, body
        assert await _raw_exchange(hy.url, []) == b""  # connected, never a byte: closed
        assert (await hy.client.post("/in/open", content=b"{}")).status_code == 200


async def test_pipelined_requests_with_a_big_body_are_not_taken_for_a_big_head(
    hookyard_factory, receiver
):
    """One read held a whole request with a 60 KB body and the start of the next: all of it
    was counted as the new head, and a valid request got 431."""
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        body = b'{"pad": "' + b"p" * 60_000 + b'"}'
        first = b"POST /in/open HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(body)
        second = b"POST /in/open HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 2\r\n"
        answer = await _raw_exchange(
            hy.url, [first + body + second[:20], second[20:] + b"\r\n{}"], 0.2
        )
        assert answer.count(b"HTTP/1.1 200") == 2, answer[:300]


@pytest.mark.parametrize("dedup_body", [None, True])
async def test_two_identical_graph_notifications_are_two_changes_unless_told_not(
    hookyard_factory, receiver, dedup_body
):
    """A Graph basic notification carries no id and no time: two changes of one resource send
    the same bytes, and both are real (a static secret in the body, like a token source). A
    source with dedup_body = true takes identical bodies as one."""
    option = "" if dedup_body is None else "dedup_body = true\n"
    config = basic_config(receiver.url) + (
        f'\n[sources.graph]\nverify = "msgraph"\nsecrets = ["client-state"]\n{option}'
        '[[routes]]\nsource = "graph"\ndestination = "app"\n'
    )
    body = (
        b'{"value":[{"subscriptionId":"7f105c7d","clientState":"client-state",'
        b'"changeType":"updated","resource":"me/drive/root","resourceData":null}]}'
    )
    async with hookyard_factory(config) as hy:
        answers = []
        for _ in range(2):
            answer = await hy.client.post(
                "/in/graph", content=body, headers={"content-type": "application/json"}
            )
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
        await receiver.wait_for(1 if dedup_body else 2)
    assert answers[1]["duplicate"] is bool(dedup_body)


async def test_a_generic_hmac_request_with_a_signed_timestamp_sent_again_is_a_duplicate(
    hookyard_factory, receiver
):
    """verify = "hmac" signing {timestamp} and no id_header: the same signed request again (a
    resend after a timeout, a capture replayed within the window) is one event; the same body
    signed at another time is another."""
    import time

    config = basic_config(receiver.url) + textwrap.dedent("""
        [sources.partner]
        verify = "hmac"
        secrets = ["partner-secret"]
        signature_header = "X-Signature"
        timestamp_header = "X-Timestamp"
        signed_content = "{timestamp}.{body}"
        [[routes]]
        source = "partner"
        destination = "app"
    """)
    body = b'{"order": 42, "status": "paid"}'

    def signed(ts: str) -> dict[str, str]:
        mac = hmac.new(b"partner-secret", ts.encode() + b"." + body, hashlib.sha256)
        return {"x-signature": mac.hexdigest(), "x-timestamp": ts}

    now = int(time.time())
    async with hookyard_factory(config) as hy:
        answers = []
        for ts in (now, now, now - 1):
            answer = await hy.client.post("/in/partner", content=body, headers=signed(str(ts)))
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
        await receiver.wait_for(2)
    assert [a["duplicate"] for a in answers] == [False, True, False]
    assert answers[1]["id"] == answers[0]["id"]


async def test_the_same_twilio_fields_posted_to_two_signed_urls_are_two_requests(
    hookyard_factory, receiver
):
    """Twilio signs the URL with the fields. An IVR asking two questions (<Gather
    action=".../in/sms?step=N">) answered with the same key gets the same fields (same CallSid,
    same Digits) at two signed URLs: two requests, not a replay of one."""
    from urllib.parse import urlencode

    from hookyard.verify import VerifyOptions, build_verifier

    public = "https://hooks.example.com"
    config = (
        basic_config(receiver.url).replace(
            'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:0"\npublic_url = "{public}"', 1
        )
        + '\n[sources.sms]\nverify = "twilio"\nsecrets = ["t"]\n'
    )
    body = urlencode([("CallSid", "CA1"), ("Digits", "1"), ("CallStatus", "in-progress")])
    signer = build_verifier("twilio", ["t"], VerifyOptions())
    answers = []
    async with hookyard_factory(config) as hy:
        for path in ("/in/sms?step=1", "/in/sms?step=2", "/in/sms?step=2"):
            headers = signer.sign(body.encode(), url=public + path, timestamp=0, message_id="")
            headers["content-type"] = "application/x-www-form-urlencoded"
            answer = await hy.client.post(path, content=body.encode(), headers=headers)
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
    assert [a["duplicate"] for a in answers] == [False, False, True]


async def test_a_svix_providers_own_headers_are_forwarded_renamed(hookyard_factory, receiver):
    """A Svix-powered provider (Clerk, Resend) sends svix-id/-timestamp/-signature. The Svix
    library reads those before webhook-*, so forwarded in place they made receivers check the
    provider's signature with the destination's secret: they travel renamed, like webhook-*."""
    import base64
    import json
    import time
    from datetime import UTC, datetime

    secret = "whsec_" + base64.b64encode(b"provider-secret-of-32-bytes-long").decode()
    config = basic_config(receiver.url) + (
        f'\n[sources.clerk]\nverify = "svix"\nsecrets = ["{secret}"]\n'
        '[[routes]]\nsource = "clerk"\ndestination = "app"\n'
    )
    body = b'{"type": "user.created", "data": {}}'
    now = int(time.time())
    signature = standardwebhooks.Webhook(secret).sign(
        "msg_provider1", datetime.fromtimestamp(now, UTC), body.decode()
    )
    headers = {
        "svix-id": "msg_provider1",
        "svix-timestamp": str(now),
        "svix-signature": signature,
        "content-type": "application/json",
    }
    async with hookyard_factory(config) as hy:
        answer = await hy.client.post("/in/clerk", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        await receiver.wait_for(1)
    received = receiver.received[0]
    got = received.headers
    assert not any(name.lower().startswith("svix-") for name in got), json.dumps(dict(got))
    assert got["hookyard-original-svix-id"] == "msg_provider1"
    assert got["hookyard-original-svix-signature"] == signature
    # With no svix-* left, the Svix library checks webhook-*: Hookyard's signature.
    standardwebhooks.Webhook(DEST_SECRET).verify(received.body, got)
