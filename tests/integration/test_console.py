"""The web console over real HTTP: logging in, sessions, CSRF, the pages and their actions."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.conftest import CLIENT_TIMEOUT, Running, basic_config, until_deadline
from tests.integration.test_ingest import github_headers

TYPED = """
[sources.shop]
verify = "none"
type_field = "type"

[[routes]]
source = "shop"
destination = "app"
"""


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


@contextlib.asynccontextmanager
async def console(hy: Running, token: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client logged in with `token` (the admin token by default)."""
    async with httpx.AsyncClient(base_url=hy.url, timeout=CLIENT_TIMEOUT) as client:
        answer = await client.post("/console/login", data={"token": token or hy.token})
        assert answer.status_code == 303, answer.text
        yield client


async def csrf(client: httpx.AsyncClient, path: str = "/console/") -> str:
    return csrf_of(await client.get(path))


async def destination_state(hy: Running) -> str:
    async with hy.api() as api:
        listed = (await api.get("/api/v1/destinations")).json()
    return str(next(d for d in listed if d["name"] == "app")["state"])


async def test_login_takes_only_a_live_admin_token(hookyard_factory, receiver):
    async with (
        hookyard_factory(basic_config(receiver.url)) as hy,
        httpx.AsyncClient(base_url=hy.url, timeout=CLIENT_TIMEOUT) as client,
    ):
        away = await client.get("/console/events?source=open")
        assert away.status_code == 303
        assert away.headers["location"] == "/console/login?next=%2Fconsole%2Fevents%3Fsource%3Dopen"
        form = await client.get("/console/login")
        assert form.status_code == 200
        assert '<label for="token">' in form.text and 'type="password"' in form.text
        assert form.headers["content-security-policy"].startswith("default-src 'self'")
        assert "frame-ancestors 'none'" in form.headers["content-security-policy"]
        assert form.headers["x-content-type-options"] == "nosniff"
        assert form.headers["referrer-policy"] == "same-origin"

        wrong = await client.post("/console/login", data={"token": "hky_wrong"})
        assert wrong.status_code == 401
        assert "unknown or revoked" in wrong.text
        assert "set-cookie" not in wrong.headers

        async with hy.api() as api:
            made = await api.post("/api/v1/tokens", json={"name": "viewer", "scope": "read"})
        read_only = await client.post("/console/login", data={"token": made.json()["token"]})
        assert read_only.status_code == 403
        assert "needs the admin token" in read_only.text
        assert "set-cookie" not in read_only.headers
        assert (await client.get("/console/")).status_code == 303  # still logged out

        good = await client.post(
            "/console/login", data={"token": hy.token, "next": "/console/events"}
        )
        assert good.status_code == 303
        assert good.headers["location"] == "/console/events"
        cookie = good.headers["set-cookie"]
        assert hy.token not in cookie
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/console"} <= flags
        assert "secure" not in flags  # plain HTTP here; see the proxy test for HTTPS
        overview = await client.get("/console/")
        assert overview.status_code == 200
        assert "<h1>Overview</h1>" in overview.text
        assert overview.headers["cache-control"] == "no-store"

        # Logging in never sends the browser to another site.
        elsewhere = await client.post(
            "/console/login", data={"token": hy.token, "next": "//evil.example/"}
        )
        assert elsewhere.headers["location"] == "/console/"

        out = await client.post("/console/logout", data={"csrf": await csrf(client)})
        assert out.status_code == 303
        assert (await client.get("/console/")).status_code == 303


async def test_the_cookie_is_secure_behind_a_trusted_https_proxy(hookyard_factory, receiver):
    config = basic_config(receiver.url).replace(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\ntrusted_proxies = ["127.0.0.1/32"]', 1
    )
    async with hookyard_factory(config) as hy:
        answer = await hy.client.post(
            "/console/login", data={"token": hy.token}, headers={"x-forwarded-proto": "https"}
        )
        assert answer.status_code == 303
        assert "secure" in answer.headers["set-cookie"].lower().split("; ")


async def test_behind_a_proxy_that_rewrites_host_the_public_url_is_the_site(
    hookyard_factory, receiver
):
    """nginx sends Host: its upstream's address; the browser's Origin is the public site."""
    public = {"origin": "https://hooks.example"}
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        refused = await hy.client.post("/console/login", data={"token": hy.token}, headers=public)
        assert refused.status_code == 403  # without public_url: another site
    config = basic_config(receiver.url).replace(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\npublic_url = "https://hooks.example"'
    )
    async with hookyard_factory(config) as hy:
        answer = await hy.client.post("/console/login", data={"token": hy.token}, headers=public)
        assert answer.status_code == 303
        assert "secure" in answer.headers["set-cookie"].lower().split("; ")
        evil = {"origin": "https://evil.example"}
        still = await hy.client.post("/console/login", data={"token": hy.token}, headers=evil)
        assert still.status_code == 403


async def test_a_forged_action_does_nothing(hookyard_factory, receiver):
    async with hookyard_factory(basic_config(receiver.url)) as hy, console(hy) as client:
        token = await csrf(client)
        cases = [
            {},  # no CSRF token
            {"data": {"csrf": "not-the-token"}},
            {"data": {"csrf": token}, "headers": {"origin": "https://evil.example"}},
        ]
        for case in cases:
            refused = await client.post("/console/destinations/app/pause", **case)
            assert refused.status_code == 403, case
            assert "did nothing" in refused.text
            assert await destination_state(hy) == "active"
        # Another session's token does not do either.
        async with console(hy) as other:
            assert await csrf(other) != token
            refused = await other.post("/console/destinations/app/pause", data={"csrf": token})
            assert refused.status_code == 403
        # Without a session: refused, not redirected (a redirect would become a GET).
        async with httpx.AsyncClient(base_url=hy.url, timeout=CLIENT_TIMEOUT) as stranger:
            refused = await stranger.post("/console/destinations/app/pause", data={"csrf": token})
            assert refused.status_code == 403
        assert await destination_state(hy) == "active"
        done = await client.post(
            "/console/destinations/app/pause", data={"csrf": token}, headers={"origin": hy.url}
        )
        assert done.status_code == 303
        assert await destination_state(hy) == "paused"


async def test_pause_and_resume_through_the_confirmation(hookyard_factory, receiver):
    async with hookyard_factory(basic_config(receiver.url)) as hy, console(hy) as client:
        listed = await client.get("/console/destinations")
        assert 'href="/console/destinations/app/pause"' in listed.text
        asked = await client.get("/console/destinations/app/pause")
        assert asked.status_code == 200
        assert "Pause app?" in asked.text
        assert await destination_state(hy) == "active"  # asking changes nothing
        paused = await client.post("/console/destinations/app/pause", data={"csrf": csrf_of(asked)})
        assert paused.headers["location"] == "/console/destinations"
        assert await destination_state(hy) == "paused"
        shown = await client.get("/console/destinations")
        assert "app is paused." in shown.text
        assert 'state-paused">paused' in shown.text
        assert 'href="/console/destinations/app/resume"' in shown.text

        # Held while paused; delivered once resumed.
        await hy.client.post("/in/open", content=b"waiting")
        await asyncio.sleep(0.3)
        assert receiver.received == []
        await client.post("/console/destinations/app/resume", data={"csrf": csrf_of(shown)})
        assert await destination_state(hy) == "active"
        await receiver.wait_for(1)
        assert (await client.get("/console/destinations/nope/pause")).status_code == 404
        async with hy.api() as api:
            audit = (await api.get("/api/v1/audit")).json()["data"]
    actions = [(entry["action"], entry["detail"]["via"]) for entry in reversed(audit)]
    assert actions == [("destination.paused", "console"), ("destination.active", "console")]
    assert audit[0]["token_name"] == "admin (generated)"


async def test_revoking_the_token_ends_its_sessions(hookyard_factory, receiver):
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        async with hy.api() as api:
            made = (await api.post("/api/v1/tokens", json={"name": "ops", "scope": "admin"})).json()
        async with console(hy, made["token"]) as client:
            assert (await client.get("/console/events")).status_code == 200
            async with hy.api() as api:
                assert (await api.delete(f"/api/v1/tokens/{made['id']}")).status_code == 204
            assert (await client.get("/console/events")).status_code == 303


async def test_replay_and_retry_from_the_event_page(hookyard_factory, receiver):
    receiver.behaviour = lambda item: 500 if item.body == b"fails" else 204
    async with hookyard_factory(basic_config(receiver.url)) as hy, console(hy) as client:
        event_id = (await hy.client.post("/in/open", content=b'{"n": 1}')).json()["id"]
        await receiver.wait_for(1)
        await asyncio.sleep(0.2)
        listed = await client.get("/console/events")
        assert f'href="/console/events/{event_id}"' in listed.text
        assert 'status-succeeded">succeeded' in listed.text
        page = await client.get(f"/console/events/{event_id}")
        assert page.text.count("HTTP 204") == 1
        assert "&#34;n&#34;: 1" in page.text  # pretty-printed JSON, escaped
        replayed = await client.post(
            f"/console/events/{event_id}/replay", data={"csrf": csrf_of(page)}
        )
        assert replayed.status_code == 303
        assert replayed.headers["location"] == f"/console/events/{event_id}"
        await receiver.wait_for(2)
        await asyncio.sleep(0.2)
        page = await client.get(f"/console/events/{event_id}")
        assert "Replayed: 1 new delivery." in page.text
        assert page.text.count("HTTP 204") == 2
        assert '<span class="tag">replay</span>' in page.text
        assert receiver.ids() == [event_id, event_id]

        dead_id = (await hy.client.post("/in/open", content=b"fails")).json()["id"]
        await receiver.wait_for(5)  # three attempts
        await asyncio.sleep(0.3)
        page = await client.get(f"/console/events/{dead_id}")
        assert page.text.count("HTTP 500") == 3
        assert "Retry now" in page.text
        delivery = re.search(r'action="/console/deliveries/([^/]+)/retry"', page.text)
        assert delivery
        retried = await client.post(
            f"/console/deliveries/{delivery.group(1)}/retry", data={"csrf": csrf_of(page)}
        )
        assert retried.headers["location"] == f"/console/events/{dead_id}"
        await receiver.wait_for(8)


async def test_filters_and_paging(hookyard_factory, receiver):
    async with hookyard_factory(basic_config(receiver.url, extra=TYPED)) as hy:
        for n in range(55):
            kind = "invoice.paid" if n % 5 == 0 else "charge.ok"
            body = json.dumps({"type": kind, "n": n}).encode()
            await hy.client.post("/in/shop", content=body)
        await hy.client.post("/in/open", content=b"other")
        async with console(hy) as client:
            first = await client.get("/console/events", params={"source": "shop"})
            assert first.text.count('href="/console/events/evt_') == 50
            older = re.search(r'href="/console/events\?([^"]+)" rel="next"', first.text)
            assert older
            second = await client.get("/console/events?" + html.unescape(older.group(1)))
            assert second.text.count('href="/console/events/evt_') == 5
            assert "Newest" in second.text
            typed = await client.get("/console/events", params={"type": "invoice.*"})
            assert typed.text.count('href="/console/events/evt_') == 11
            field = await client.get("/console/events", params={"field": "n=10"})
            assert field.text.count('href="/console/events/evt_') == 1
            bad = await client.get("/console/events", params={"since": "yesterday"})
            assert bad.status_code == 422
            assert "since: expected ISO 8601" in bad.text
            bad_field = await client.get("/console/events", params={"field": "a b=1"})
            assert bad_field.status_code == 422
            window = await client.get(
                "/console/events", params={"since": "2000-01-01T00:00", "until": "2000-01-02T00:00"}
            )
            assert "No events match." in window.text
            overview = await client.get("/console/")
        row = re.search(
            r'<th scope="row"><a href="/console/events\?source=shop">shop</a></th>'
            r'\s*<td class="num">(\d+)</td>',
            overview.text,
        )
        assert row and row.group(1) == "55"
        assert 'aria-label="55 events in the last hour' in overview.text


async def test_a_rejected_request_shows_its_reason(hookyard_factory, receiver):
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        body = b'{"a": 1}'
        bad = await hy.client.post(
            "/in/github", content=body, headers=github_headers(body, secret="wrong")
        )
        assert bad.status_code == 401
        await hy.service.state.rejected.flush()
        async with console(hy) as client:
            page = await client.get("/console/rejected")
            overview = await client.get("/console/")
    assert "bad_signature" in page.text
    assert "X-Hub-Signature-256" in page.text
    row = re.search(r'source=github">github</a></th>(.*?)</tr>', overview.text, re.DOTALL)
    assert row
    assert re.findall(r'<td class="num">(\d+)</td>', row.group(1)) == ["0", "1", "0"]


async def test_provider_markup_is_shown_as_text(hookyard_factory, receiver):
    evil = "<script>alert(1)</script>"
    async with hookyard_factory(basic_config(receiver.url, extra=TYPED)) as hy:
        body = json.dumps({"type": evil, "note": evil}).encode()
        event_id = (
            await hy.client.post("/in/shop", content=body, headers={"x-note": evil})
        ).json()["id"]
        binary = (await hy.client.post("/in/open", content=b"\xff\xfe\x00<b>")).json()["id"]
        async with console(hy) as client:
            pages: list[Any] = [
                await client.get("/console/events"),
                await client.get(f"/console/events/{event_id}"),
            ]
            raw = await client.get(f"/console/events/{binary}")
    for page in pages:
        assert "<script>alert" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "shown as base64" in raw.text
    assert "//4APGI+" in raw.text


async def test_credentials_inside_a_body_are_masked(hookyard_factory, receiver):
    slack = json.dumps(
        {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "event": {"text": "deploy done"}}
    ).encode()
    graph = json.dumps({"value": [{"clientState": "graph-state-4f2a9c", "id": 3}]}).encode()
    form = b"token=gIkuvaNzQIHg97ATvDxqgjtO&team_id=T0001&text=94070"
    action = json.dumps({"type": "block_actions", "token": "Wq2dZrVaK7ZwHHjRyZWjbD0p"})
    interaction = urlencode({"payload": action}).encode()  # Slack's interactions
    cut = json.dumps({"token": "Lm3dZrVaK7ZwHHjRyZWjbD9x", "data": "x" * 300_000}).encode()
    async with hookyard_factory(basic_config(receiver.url)) as hy, console(hy) as client:
        pages = []
        for body in (slack, graph, form, interaction, cut):
            event_id = (await hy.client.post("/in/open", content=body)).json()["id"]
            pages.append((await client.get(f"/console/events/{event_id}")).text)
        async with hy.api() as api:  # the stored bytes are untouched, for admin tokens
            assert (await api.get(f"/api/v1/events/{event_id}/raw")).content == cut
    secrets = (
        "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "graph-state-4f2a9c",
        "gIkuvaNzQIHg97ATvDxqgjtO",
        "Wq2dZrVaK7ZwHHjRyZWjbD0p",
        "Lm3dZrVaK7ZwHHjRyZWjbD9x",  # in a payload too long to parse whole
    )
    for secret, page in zip(secrets, pages, strict=True):
        assert secret not in page
        assert "[redacted]" in page
    assert "deploy done" in pages[0] and "94070" in pages[2]


async def test_an_attempt_without_an_answer_shows_its_error(hookyard_factory):
    async with hookyard_factory(basic_config("http://127.0.0.1:9/hooks")) as hy:
        event_id = (await hy.client.post("/in/open", content=b"x")).json()["id"]
        async with console(hy) as client:
            for _ in until_deadline():
                page = await client.get(f"/console/events/{event_id}")
                if page.text.count('class="detail"') == 3:
                    break
                await asyncio.sleep(0.1)
    assert page.text.count('class="detail"') == 3, page.text
    assert 'status-dead">dead' in page.text


def hidden_rows(page: str, caption: str) -> list[tuple[str, str]]:
    """The rows of the visually hidden table that carries a chart's numbers."""
    match = re.search(
        rf"<caption>{re.escape(caption)}</caption>.*?<tbody>(.*?)</tbody>", page, re.DOTALL
    )
    assert match, caption
    return re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>", match.group(1))


async def test_the_overview_charts_traffic_failures_and_latency(hookyard_factory, receiver):
    receiver.behaviour = lambda item: 500 if item.body == b"fails" else 204
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        for _ in range(4):
            await hy.client.post("/in/open", content=b"fine")
        await hy.client.post("/in/open", content=b"fails")
        await receiver.wait_for(7)  # four, and three attempts of the failing one
        for _ in until_deadline():
            async with console(hy) as client:
                page = (await client.get("/console/")).text
            if "3 failed attempts" in page:
                break
            await asyncio.sleep(0.1)
    # Every source together: open's five, and the dead delivery's alert (built-in source).
    per_source = re.findall(r'</a></th>\s*<td class="num">(\d+)</td>', page)
    total = sum(int(n) for n in per_source)
    assert total >= 5
    assert f'<title id="events-chart-svg-title">{total} events in the last hour' in page
    assert "3 failed attempts in the last hour" in page
    assert 'role="img" aria-labelledby="events-chart-svg-title"' in page
    minutes = hidden_rows(page, "Events per minute, minutes without events left out")
    assert sum(int(n) for _, n in minutes) == total
    failed = hidden_rows(page, "Failed attempts per minute, minutes without failures left out")
    assert sum(int(n) for _, n in failed) == 3
    assert page.count("<rect ") >= 2 * 60  # a bar a minute in each chart
    latency = hidden_rows(page, "Latency of app per 5 minutes")
    assert len(latency) in (1, 2)  # the attempts fall in the last bucket, or straddle two
    assert all(re.fullmatch(r"\d+ ms / \d+ ms", value) for _, value in latency)
    assert re.search(r'<path class="p95" d="M[\d.]+,[\d.]+', page)
    assert "Latency p50 / p95 per 5 minutes (UTC):" in page


async def test_a_lease_call_shows_a_connected_relay_listener(hookyard_factory, receiver):
    config = basic_config(receiver.url) + "\n[destinations.laptop]\nrelay = true\n"
    async with hookyard_factory(config) as hy, console(hy) as client:
        before = (await client.get("/console/")).text
        assert "Relay listeners connected" in before and "(this process)" in before
        row = r'<tr><th scope="row">laptop</th><td class="num">(\d+)</td></tr>'
        assert re.findall(row, before) == ["0"]
        async with hy.api() as api:
            leased = await api.post(
                "/api/v1/destinations/laptop/lease",
                json={"wait": 0},
                headers={"user-agent": "hookyard-listen/test"},
            )
            assert leased.status_code == 200, leased.text
            assert re.findall(row, (await client.get("/console/")).text) == ["1"]
            # The same client again is still one; another User-Agent is another client.
            await api.post(
                "/api/v1/destinations/laptop/lease",
                json={"wait": 0},
                headers={"user-agent": "hookyard-listen/test"},
            )
            await api.post(
                "/api/v1/destinations/laptop/lease",
                json={"wait": 0},
                headers={"user-agent": "another-client"},
            )
        assert re.findall(row, (await client.get("/console/")).text) == ["2"]
    # A destination that is not a relay is not listed.
    assert '<th scope="row">app</th><td class="num">' not in before


async def test_the_overview_shows_each_poller(hookyard_factory, receiver):
    from hookyard.simulator import Simulator, SimulatorOptions
    from tests.integration.test_polling import poll_config, wait_run

    sim = Simulator(SimulatorOptions(seed=7))
    await sim.start()
    try:
        sim.seed(30)
        async with hookyard_factory(poll_config(receiver.url, sim.url, detect="hash")) as hy:
            done = await wait_run(hy, {})
            assert done["last_error"] is None
            async with console(hy) as client:
                page = (await client.get("/console/")).text
    finally:
        await sim.stop()
    assert '<h2 id="pollers-heading">Pollers</h2>' in page
    card = page[page.index('<article class="card poller"') :]
    assert 'href="/console/events?source=orders">orders</a>' in card
    calls = int(re.search(r"API calls today: <strong>(\d+)</strong>", card).group(1))
    assert calls >= 1
    days = hidden_rows(card, "API calls of orders per day")
    assert len(days) == 7 and days[-1][1] == str(calls)
    assert "API calls per day, the last 7 days (UTC)" in card
    job = re.search(r'<th scope="row">poll</th>(.*?)</tr>', card, re.DOTALL)
    assert job
    cells = job.group(1)
    assert cells.count(" ago</time>") == 2  # last run and last success
    assert re.search(r">in \d+ (min|s)</time>", cells)  # next run, an hour on
    assert re.search(r'<td class="num">30 <span class="muted">of 30</span></td>', cells)
    assert '<td class="wrap">—</td>' in cells  # no error


async def test_events_filter_by_destination_and_provider_event_id(hookyard_factory, receiver):
    extra = f"""
[sources.shop]
verify = "none"
id_header = "x-event-id"

[destinations.audit]
url = "{receiver.url}"

[[routes]]
source = "shop"
destination = ["app", "audit"]
"""
    async with hookyard_factory(basic_config(receiver.url, extra=extra)) as hy:
        shop = []
        for n in range(3):
            posted = await hy.client.post(
                "/in/shop", content=b"{}", headers={"x-event-id": f"ord_{n}"}
            )
            shop.append(posted.json()["id"])
        opened = (await hy.client.post("/in/open", content=b"x")).json()["id"]
        async with console(hy) as client:
            form = (await client.get("/console/events")).text
            to_audit = (await client.get("/console/events", params={"destination": "audit"})).text
            to_app = (await client.get("/console/events", params={"destination": "app"})).text
            by_id = await client.get("/console/events", params={"provider_event_id": "ord_1"})
            unknown = await client.get("/console/events", params={"destination": "nope"})
    assert '<label for="f-destination">Delivered to</label>' in form
    assert '<label for="f-provider-id">Provider event id' in form
    assert "<option>audit</option>" in form
    shown = re.compile(r'href="/console/events/(evt_[^"]+)"')
    assert shown.findall(to_audit) == shop[::-1]  # newest first
    assert shown.findall(to_app) == [opened, *shop[::-1]]
    assert shown.findall(by_id.text) == [shop[1]]
    assert 'value="ord_1"' in by_id.text  # the form keeps what was typed
    assert "<option selected>audit</option>" in to_audit
    assert unknown.status_code == 422
    assert "destination: expected one of app, audit" in unknown.text


STRIPE_SECRET = "whsec_console_test"


def stripe_headers(body: bytes, at: int) -> dict[str, str]:
    digest = hmac.new(STRIPE_SECRET.encode(), f"{at}.".encode() + body, hashlib.sha256)
    return {"stripe-signature": f"t={at},v1={digest.hexdigest()}"}


async def test_rejections_are_explained_in_plain_words(hookyard_factory, receiver):
    extra = f"""
[sources.stripe]
verify = "stripe"
secrets = ["{STRIPE_SECRET}"]
max_body = "1KiB"
"""
    async with hookyard_factory(basic_config(receiver.url, extra=extra)) as hy:
        body = b'{"id": "evt_1", "type": "invoice.paid"}'
        requests = [
            ("/in/github", body, {}, 401),  # no signature
            ("/in/github", body, github_headers(body, secret="wrong"), 401),
            ("/in/stripe", body, stripe_headers(body, int(time.time()) - 3600), 401),
            ("/in/nowhere", body, {}, 404),
            ("/in/stripe", b"x" * 2000, stripe_headers(b"x" * 2000, int(time.time())), 413),
        ]
        for path, content, headers, status in requests:
            answer = await hy.client.post(path, content=content, headers=headers)
            assert answer.status_code == status, (path, answer.text)
        assert (await hy.client.get("/in/open")).status_code == 405
        await hy.service.state.rejected.flush()
        async with console(hy) as client:
            page = (await client.get("/console/rejected")).text
    cells = re.findall(
        r'<td class="wrap">(.*?)</td>\s*<td>(\d+) <code>(\w+)</code>', page, re.DOTALL
    )
    found = {code: html.unescape(cell) for cell, _, code in cells}
    assert set(found) == {
        "missing_signature",
        "bad_signature",
        "stale_timestamp",
        "unknown_source",
        "body_too_large",
        "method_not_allowed",
    }
    # The stored reason, specific, then what it usually means.
    assert "missing header X-Hub-Signature-256" in found["missing_signature"]
    assert "no signing secret set" in found["missing_signature"]
    assert "signature did not match; expected header X-Hub-Signature-256" in found["bad_signature"]
    assert "1 secret tried" in found["bad_signature"]
    assert "rotated on one side only" in found["bad_signature"]
    assert "s old; allowed ±300 s" in found["stale_timestamp"]
    assert "check NTP" in found["stale_timestamp"]
    assert "no webhook source named 'nowhere'" in found["unknown_source"]
    assert "a typo in the URL" in found["unknown_source"]
    assert "exceeds this source's limit of 1024 bytes" in found["body_too_large"]
    assert "raise max_body" in found["body_too_large"]
    assert "GET is not allowed" in found["method_not_allowed"]
    assert page.count('<p class="explain">') == 6


def flash_of(page: str) -> str:
    match = re.search(r'<p class="flash" role="status">([^<]*)</p>', page)
    return html.unescape(match.group(1)) if match else ""


def formatted(page: str) -> str:
    """The formatted JSON view of an event page, unescaped."""
    after = html.unescape(page).split('aria-label="Body, formatted">', 1)
    assert len(after) == 2, "no formatted view"
    return after[1].split("</pre>", 1)[0]


async def test_a_deeply_nested_body_is_shown(hookyard_factory, receiver):
    """1 KB nested 500 deep once made the page answer 500 (RecursionError): anyone able to post
    to a source could make an event unviewable. It is shown, its credentials still masked."""
    body = b"[" * 500 + b'{"token": "Deep5ecretTokenValue"}' + b"]" * 500
    # Too deep to parse, compact, with an "=" in a string: taken for a form, it was shown as
    # received, its token in clear.
    formlike = b"[" * 3000 + b'{"token":"Form5ecretTokenValue","url":"https://x/?a=b"}'
    formlike += b"]" * 3000
    # 18 KB whose formatted view would be 5 MB of indentation: shown as received instead.
    wide = b"[" + b",".join([b"[" * 300 + b"]" * 300] * 30) + b"]"
    async with hookyard_factory(basic_config(receiver.url)) as hy, console(hy) as client:
        event_id = (await hy.client.post("/in/open", content=body)).json()["id"]
        page = await client.get(f"/console/events/{event_id}")
        wide_id = (await hy.client.post("/in/open", content=wide)).json()["id"]
        wide_page = await client.get(f"/console/events/{wide_id}")
        formlike_id = (await hy.client.post("/in/open", content=formlike)).json()["id"]
        formlike_page = await client.get(f"/console/events/{formlike_id}")
    assert page.status_code == 200, page.text[:300]
    assert formlike_page.status_code == 200
    assert "Form5ecretTokenValue" not in formlike_page.text
    assert "[[[[[[[[" in page.text and "[redacted]" in page.text
    assert "Deep5ecretTokenValue" not in page.text
    assert wide_page.status_code == 200
    assert "Body, formatted" not in wide_page.text and wide.decode() in wide_page.text


async def test_a_lone_surrogate_escape_is_shown_as_sent(hookyard_factory, receiver):
    """JavaScript writes "\ud83d" for a string cut mid-emoji; UTF-8 cannot carry the character
    (the page once answered 500), so the formatted view keeps the escape."""
    body = b'{"text": "cut in the middle of an emoji \\ud83d", "name": "J\\u00fcrgen"}'
    async with hookyard_factory(basic_config(receiver.url)) as hy, console(hy) as client:
        event_id = (await hy.client.post("/in/open", content=body)).json()["id"]
        page = await client.get(f"/console/events/{event_id}")
    assert page.status_code == 200, page.text[:300]
    shown = formatted(page.text)
    assert '"cut in the middle of an emoji \\ud83d"' in shown
    assert '"Jürgen"' in shown  # other escapes are decoded, as before


@pytest.mark.parametrize(
    ("body", "hidden"),
    [
        (b'{"token": "Zm9vYmFy\\/c2VjcmV0LXRva2Vu"}', "c2VjcmV0LXRva2Vu"),  # PHP's "\/"
        ('{"clientState": "geheim-schlüssel-4f2a9c"}'.encode(), "schlüssel-4f2a9c"),
        (b'{"token": "\\u0053ecretSlackToken12345"}', "ecretSlackToken12345"),
        (b'{"\\u0074oken": "EscapedKeyToken12345"}', "EscapedKeyToken12345"),
    ],
    ids=["escaped-slash", "non-ascii", "u-escape", "escaped-name"],
)
async def test_the_raw_view_masks_a_field_however_it_is_spelt(
    hookyard_factory, receiver, body, hidden
):
    """The Raw view once searched for the value as json.dumps spells it, so another spelling
    of the same value was masked in the formatted view and shown in the Raw one."""
    async with hookyard_factory(basic_config(receiver.url)) as hy, console(hy) as client:
        event_id = (await hy.client.post("/in/open", content=body)).json()["id"]
        page = (await client.get(f"/console/events/{event_id}")).text
    assert "[redacted]" in formatted(page)
    assert hidden not in page
    assert page.count("[redacted]") == 2  # the formatted view and the Raw one


@pytest.mark.parametrize(
    "body",
    [
        b'\xef\xbb\xbf{"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "type": "url_verification"}',
        b'{"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl"}\n{"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl"}\n',
        b"token=Jhj5dZrVaK7ZwHHjRyZWjbDl&team_id=T0001&text=94070\n",
    ],
    ids=["json-with-bom", "ndjson", "form-ending-in-a-newline"],
)
async def test_credentials_are_masked_in_any_text(hookyard_factory, receiver, body):
    """Fields were masked only in a body that parsed whole as JSON or was a form without
    whitespace: a byte-order mark, NDJSON or a final newline showed them in clear."""
    async with hookyard_factory(basic_config(receiver.url)) as hy, console(hy) as client:
        event_id = (await hy.client.post("/in/open", content=body)).json()["id"]
        page = (await client.get(f"/console/events/{event_id}")).text
    assert "Jhj5dZrVaK7ZwHHjRyZWjbDl" not in page
    assert "[redacted]" in page


@pytest.mark.parametrize(
    "public", ["https://hooks.example:443", "https://Hooks.Example", "HTTPS://hooks.example/"]
)
async def test_public_url_is_compared_as_a_site_not_as_text(hookyard_factory, receiver, public):
    """The browser's Origin never carries the default port nor capitals: a public_url written
    with either once refused every form, login included."""
    config = basic_config(receiver.url).replace(
        'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:0"\npublic_url = "{public}"'
    )
    async with hookyard_factory(config) as hy:
        login = {"token": hy.token}
        answer = await hy.client.post(
            "/console/login", data=login, headers={"origin": "https://hooks.example"}
        )
        assert answer.status_code == 303, answer.text[-300:]
        for other in ("http://hooks.example", "https://hooks.example:8443", "null"):
            refused = await hy.client.post("/console/login", data=login, headers={"origin": other})
            assert refused.status_code == 403, other


async def test_retry_and_replay_to_a_paused_destination_say_they_wait(hookyard_factory, receiver):
    """Retry now said "will be tried again now" while the paused destination held it."""
    receiver.behaviour = lambda item: 500
    async with hookyard_factory(basic_config(receiver.url)) as hy, console(hy) as client:
        event_id = (await hy.client.post("/in/open", content=b"fails")).json()["id"]
        for _ in until_deadline():
            page = await client.get(f"/console/events/{event_id}")
            if 'status-dead">dead' in page.text:
                break
            await asyncio.sleep(0.05)
        async with hy.api() as api:
            assert (await api.post("/api/v1/destinations/app/pause")).status_code == 200
        delivery = re.search(r'action="/console/deliveries/([^/]+)/retry"', page.text)
        assert delivery
        await client.post(
            f"/console/deliveries/{delivery.group(1)}/retry", data={"csrf": csrf_of(page)}
        )
        page = await client.get(f"/console/events/{event_id}")
        assert 'status-held">held' in page.text
        waits = "app is paused: its deliveries wait until it is resumed."
        assert flash_of(page.text) == f"Delivery to app is due again, but {waits}"
        await client.post(f"/console/events/{event_id}/replay", data={"csrf": csrf_of(page)})
        page = await client.get(f"/console/events/{event_id}")
        assert flash_of(page.text) == f"Replayed: 1 new delivery. {waits}"
    assert len(receiver.received) == 3  # the three attempts before the pause, nothing since


async def test_the_formatted_view_keeps_numbers_as_sent(hookyard_factory, receiver):
    """Numbers went through float: 12345678901234567.89 was shown as 1.2345678901234568e+16."""
    body = b'{"amount": 12345678901234567.89, "rate": 0.10000000000000000001, "n": [1E400, -0]}'
    async with hookyard_factory(basic_config(receiver.url)) as hy, console(hy) as client:
        event_id = (await hy.client.post("/in/open", content=body)).json()["id"]
        page = (await client.get(f"/console/events/{event_id}")).text
    assert formatted(page) == (
        '{\n  "amount": 12345678901234567.89,\n  "rate": 0.10000000000000000001,\n'
        '  "n": [\n    1E400,\n    -0\n  ]\n}'
    )


async def test_a_cursor_no_page_gave_is_refused(hookyard_factory, receiver):
    """Like the API's: an unknown cursor once showed the first page as if it were the next."""
    async with hookyard_factory(basic_config(receiver.url)) as hy, console(hy) as client:
        await hy.client.post("/in/open", content=b"x")
        events = await client.get("/console/events", params={"cursor": "2"})
        rejected = await client.get("/console/rejected", params={"cursor": "evt_2"})
    for page, prefix in ((events, "evt"), (rejected, "rej")):
        assert page.status_code == 422
        assert f"cursor: expected the next_cursor of this list's previous page ({prefix}_...)" in (
            html.unescape(page.text)
        )
    assert 'href="/console/events/evt_' not in events.text
    assert "Nothing was rejected." not in rejected.text
