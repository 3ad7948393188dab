"""The provider simulator, over real HTTP on loopback: pagination, filters, conditional requests,
rate limits, forced failures, every auth kind, webhooks and their knobs, the control endpoints."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner
from standardwebhooks.webhooks import Webhook

from hookyard.simulator import DEFAULT_SECRET, Auth, Simulator, SimulatorOptions
from hookyard.simulator.cli import parse_auth, simulate
from tests.conftest import DEADLINE, until_deadline

T = 1_800_000_000  # 2027-01-15T08:00:00Z: a fixed clock for tests that care about seconds
STYLES = ["cursor", "page", "offset", "link", "next"]

Make = Callable[..., Awaitable[Simulator]]


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def order(sim: Simulator) -> list[str]:
    """The ids as every list endpoint must return them: by (updated_at, id)."""
    return [o["id"] for o in sorted(sim.objects.values(), key=lambda o: (o["updated_at"], o["id"]))]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    sims: list[Simulator] = []

    async def start(**options: Any) -> Simulator:
        sim = Simulator(SimulatorOptions(**options))
        sims.append(sim)
        await sim.start()
        return sim

    yield start
    for sim in sims:
        await sim.stop()


@dataclass
class Receiver:
    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give first, then 204

    def ids(self) -> list[str]:
        return [headers["webhook-id"] for headers, _ in self.received]

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()

    async def handle(request: web.Request) -> web.Response:
        got.received.append(
            ({k.lower(): v for k, v in request.headers.items()}, await request.read())
        )
        return web.Response(status=got.statuses.pop(0) if got.statuses else 204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    got.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield got
    await runner.cleanup()


async def get(
    http: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.get(url, **kwargs) as resp:
        raw = await resp.read()
        return resp.status, json.loads(raw) if raw else None, resp


async def walk(
    http: aiohttp.ClientSession, base: str, style: str, size: int, **params: Any
) -> tuple[list[dict[str, Any]], int]:
    """Every object through one pagination style, as a client would: (items, pages fetched)."""
    items: list[dict[str, Any]] = []
    pages = 0
    size_name = "limit" if style in ("cursor", "offset") else "per_page"
    query: dict[str, str] = {size_name: str(size), **{k: str(v) for k, v in params.items()}}
    url: str | None = f"{base}/{style}/objects"
    while url is not None:
        status, body, resp = await get(http, url, params=query)
        assert status == 200, body
        pages += 1
        assert pages <= 2000, "the walk does not stop"
        if style == "cursor":
            items += body["data"]
            if not body["has_more"]:
                assert body["next_cursor"] is None
                break
            query = {"limit": str(size), "cursor": body["next_cursor"]}
        elif style == "page":
            items += body["data"]
            if body["page"] >= body["total_pages"]:
                break
            query["page"] = str(body["page"] + 1)
        elif style == "offset":
            items += body["data"]
            if body["offset"] + len(body["data"]) >= body["total"]:
                break
            query["offset"] = str(body["offset"] + len(body["data"]))
        elif style == "link":
            items += body
            link = resp.links.get("next")
            url, query = (str(link["url"]), {}) if link else (None, {})
        else:
            items += body["results"]
            url, query = body["next"], {}
    return items, pages


# -- pagination and filters --------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
async def test_each_style_walks_every_object_once_in_order(make: Make, http, style: str) -> None:
    sim = await make()
    for i in range(250):
        sim.set_time(T + i // 7)  # seven objects per second: ties broken by id
        sim.create()
    items, pages = await walk(http, sim.url, style, 40)
    assert [o["id"] for o in items] == order(sim)
    assert pages == 7
    assert items[0] == sim.objects[items[0]["id"]]
    assert items[0]["created_at"] == iso(T) and items[0]["object"] == "order"


async def test_pages_past_the_end_are_empty_and_sizes_default(make: Make, http) -> None:
    sim = await make(page_size=3)
    sim.seed(5)
    status, body, _ = await get(http, f"{sim.url}/page/objects", params={"page": "9"})
    assert (status, body["data"], body["total_pages"], body["per_page"]) == (200, [], 2, 3)
    status, body, _ = await get(http, f"{sim.url}/offset/objects", params={"offset": "4"})
    assert [o["id"] for o in body["data"]] == ["obj_000005"] and body["limit"] == 3
    status, body, resp = await get(http, f"{sim.url}/link/objects", params={"page": "2"})
    assert len(body) == 2 and "next" not in resp.links
    assert resp.links["prev"]["url"].query["page"] == "1"


@pytest.mark.parametrize("style", STYLES)
async def test_filters_hold_across_pages_in_every_style(make: Make, http, style: str) -> None:
    sim = await make()
    for second in range(4):
        sim.set_time(T + second)
        for _ in range(5):
            sim.create()
    items, pages = await walk(
        http, sim.url, style, 2, updated_since=iso(T + 1), updated_until=iso(T + 3)
    )
    assert [o["id"] for o in items] == [f"obj_{n:06d}" for n in range(6, 16)]
    assert pages == 5


@pytest.mark.parametrize(
    ("since", "count"),
    [
        (iso(T + 1), 10),  # inclusive, with five objects sharing that second
        (str(T + 1), 10),  # unix seconds
        (str(T + 0.5), 10),  # fractional unix seconds: nothing at T is >= T+0.5
        ("2027-01-15T08:00:01+00:00", 10),
        ("2027-01-15T08:00:01 00:00", 10),  # an unencoded + arrives as a space
        ("2027-01-15T08:00:00.250Z", 10),
        ("2027-01-15T09:00:01+01:00", 10),
        ("2027-01-15T08:00:00", 15),  # naive: UTC
        (iso(T + 3), 0),
    ],
)
async def test_updated_since_formats(make: Make, http, since: str, count: int) -> None:
    sim = await make()
    for second in range(3):
        sim.set_time(T + second)
        for _ in range(5):
            sim.create()
    status, body, _ = await get(http, f"{sim.url}/offset/objects", params={"updated_since": since})
    assert status == 200
    assert body["total"] == count == len(body["data"])
    status, body, _ = await get(http, f"{sim.url}/offset/objects", params={"updated_until": since})
    assert body["total"] == 15 - count


async def test_keyset_cursor_does_not_skip_an_object_updated_mid_walk(make: Make, http) -> None:
    sim = await make()
    sim.set_time(T)
    sim.seed(10)
    _, first, _ = await get(http, f"{sim.url}/cursor/objects", params={"limit": "3"})
    seen = [o["id"] for o in first["data"]]
    sim.set_time(T + 5)
    sim.update("obj_000001", {"status": "paid"})  # already listed: it moves to the end
    sim.update("obj_000006", {"status": "paid"})  # not listed yet: it moves, but is not lost
    cursor: str | None = first["next_cursor"]
    seen_after: list[str] = []
    while cursor:
        _, body, _ = await get(http, f"{sim.url}/cursor/objects", params={"cursor": cursor})
        seen_after += [o["id"] for o in body["data"]]
        cursor = body["next_cursor"]
    assert seen_after == [f"obj_{n:06d}" for n in (4, 5, 7, 8, 9, 10, 1, 6)]
    assert set(seen + seen_after) == set(sim.objects)


async def test_offset_pagination_skips_an_object_when_one_moves_as_real_apis_do(
    make: Make, http
) -> None:
    sim = await make()
    sim.set_time(T)
    sim.seed(10)
    params = {"limit": "3", "offset": "0"}
    await get(http, f"{sim.url}/offset/objects", params=params)
    sim.set_time(T + 5)
    sim.update("obj_000001")
    _, second, _ = await get(http, f"{sim.url}/offset/objects", params={**params, "offset": "3"})
    assert [o["id"] for o in second["data"]] == ["obj_000005", "obj_000006", "obj_000007"]


async def test_single_object_and_not_found(make: Make, http) -> None:
    sim = await make(clock_skew=-3600)
    sim.set_time(T)
    obj = sim.create({"status": "paid", "amount": 5, "id": "ignored", "version": 9})
    assert obj["id"] == "obj_000001" and obj["version"] == 1
    assert obj["created_at"] == obj["updated_at"] == iso(T - 3600)  # the skew
    status, body, _ = await get(http, f"{sim.url}/objects/obj_000001")
    assert (status, body) == (200, obj)
    sim.delete("obj_000001", webhook=False)
    status, body, _ = await get(http, f"{sim.url}/objects/obj_000001")
    assert (status, body) == (404, {"error": "not_found"})
    assert sim.objects == {}


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("cursor", "limit=0"),
        ("cursor", "limit=abc"),
        ("cursor", "limit=1001"),
        ("cursor", "cursor=garbage"),
        ("cursor", "cursor=" + base64.urlsafe_b64encode(b'["a", 1, null, null]').decode()),
        ("page", "page=0"),
        ("page", "per_page=-5"),
        ("offset", "offset=-1"),
        ("link", "updated_since=yesterday"),
        ("next", "updated_until=nan"),
    ],
)
async def test_bad_parameters_are_400(make: Make, http, path: str, query: str) -> None:
    sim = await make()
    status, body, _ = await get(http, f"{sim.url}/{path}/objects?{query}")
    assert status == 400
    assert body["error"] == "bad_request" and body["message"]


# -- conditional requests, rate limits, failures -----------------------------------------------


async def test_etag_and_if_none_match(make: Make, http) -> None:
    sim = await make()
    sim.set_time(T)
    sim.seed(5)
    url = f"{sim.url}/page/objects"
    status, _, resp = await get(http, url)
    etag = resp.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert resp.headers["Last-Modified"] == formatdate(T, usegmt=True)
    status, body, resp = await get(http, url, headers={"If-None-Match": etag})
    assert (status, body, resp.headers["ETag"]) == (304, None, etag)
    status, _, _ = await get(http, url, headers={"If-None-Match": f'"x", W/{etag}'})
    assert status == 304
    status, _, _ = await get(http, f"{url}?per_page=2", headers={"If-None-Match": etag})
    assert status == 200  # another page, another tag
    sim.update("obj_000002")
    status, _, resp = await get(http, url, headers={"If-None-Match": etag})
    assert status == 200 and resp.headers["ETag"] != etag
    _, _, one = await get(http, f"{sim.url}/objects/obj_000003")
    status, _, _ = await get(
        http, f"{sim.url}/objects/obj_000003", headers={"If-None-Match": one.headers["ETag"]}
    )
    assert status == 304
    assert sim.stats.not_modified == 3 and sim.stats.calls == 7


async def test_if_modified_since(make: Make, http) -> None:
    sim = await make()
    sim.set_time(T)
    sim.seed(3)
    url = f"{sim.url}/cursor/objects"
    for ims, expected in [(T, 304), (T + 10, 304), (T - 1, 200)]:
        status, _, _ = await get(
            http, url, headers={"If-Modified-Since": formatdate(ims, usegmt=True)}
        )
        assert status == expected
    stale = {"If-Modified-Since": formatdate(T, usegmt=True), "If-None-Match": '"other"'}
    assert (await get(http, url, headers=stale))[0] == 200  # If-None-Match wins
    assert (await get(http, url, headers={"If-Modified-Since": "nonsense"}))[0] == 200
    # An empty listing is as new as the newest change, a deletion included.
    sim.set_time(T + 20)
    sim.delete("obj_000001")
    empty = f"{url}?updated_since={T + 100}"
    status, body, resp = await get(http, empty)
    assert body["data"] == [] and resp.headers["Last-Modified"] == formatdate(T + 20, usegmt=True)


async def test_etag_off(make: Make, http) -> None:
    sim = await make(etag=False)
    sim.seed(2)
    status, _, resp = await get(http, f"{sim.url}/next/objects", headers={"If-None-Match": "*"})
    assert status == 200 and "ETag" not in resp.headers and "Last-Modified" not in resp.headers


async def test_rate_limit(make: Make, http) -> None:
    sim = await make(rate_limit=3, rate_window=0.5)
    sim.seed(2)
    url = f"{sim.url}/offset/objects"
    for remaining in (2, 1, 0):
        status, _, resp = await get(http, url)
        assert status == 200
        assert resp.headers["X-RateLimit-Limit"] == "3"
        assert resp.headers["X-RateLimit-Remaining"] == str(remaining)
        assert time.time() <= int(resp.headers["X-RateLimit-Reset"]) <= time.time() + 2
        assert "Retry-After" not in resp.headers
    status, body, resp = await get(http, f"{sim.url}/objects/obj_000001")
    assert (status, body) == (429, {"error": "rate_limited"})
    assert resp.headers["Retry-After"] == "1" and resp.headers["X-RateLimit-Remaining"] == "0"
    assert (await get(http, f"{sim.url}/_sim/stats"))[0] == 200  # control is never limited
    await asyncio.sleep(0.55)
    status, _, resp = await get(http, url)
    assert status == 200 and resp.headers["X-RateLimit-Remaining"] == "2"
    assert (sim.stats.calls, sim.stats.rate_limited) == (5, 1)


async def test_fail_next(make: Make, http) -> None:
    sim = await make(rate_limit=100)
    sim.seed(2)
    url = f"{sim.url}/cursor/objects"
    sim.fail_next(2, 503, retry_after=7)
    sim.fail_next(1, retry_after=0.25)
    assert (await get(http, f"{sim.url}/_sim/stats"))[0] == 200  # control does not take one
    for status, retry_after, error in [
        (503, "7", "service_unavailable"),
        (503, "7", "service_unavailable"),
        (500, "0.25", "internal_server_error"),
    ]:
        got, body, resp = await get(http, url)
        assert (got, body) == (status, {"error": error})
        assert resp.headers["Retry-After"] == retry_after
        assert "X-RateLimit-Remaining" in resp.headers
    sim.fail_next(1, 502)
    status, _, resp = await get(http, url)
    assert status == 502 and "Retry-After" not in resp.headers
    assert (await get(http, url))[0] == 200
    assert (sim.stats.failed, sim.stats.calls) == (4, 5)


# -- auth ----------------------------------------------------------------------------------------

AUTH_CASES = {
    "bearer": (
        Auth("bearer", token="s3cret"),
        {"headers": {"Authorization": "Bearer s3cret"}},
        {"headers": {"Authorization": "Bearer s3cre"}},
    ),
    "basic": (
        Auth("basic", username="user", password="pa:ss"),
        {"headers": basic("user", "pa:ss")},
        {"headers": basic("user", "pass")},
    ),
    "header": (
        Auth("header", name="X-Api-Key", token="k1"),
        {"headers": {"X-Api-Key": "k1"}},
        {"headers": {"X-Api-Key": "k2"}},
    ),
    "query": (
        Auth("query", name="api_key", token="k1"),
        {"params": {"api_key": "k1"}},
        {"params": {"api_key": "K1"}},
    ),
}


@pytest.mark.parametrize("kind", AUTH_CASES)
async def test_auth(make: Make, http, kind: str) -> None:
    auth, right, wrong = AUTH_CASES[kind]
    sim = await make(auth=auth, page_size=2)
    sim.seed(3)
    url = f"{sim.url}/link/objects"
    for credentials in ({}, wrong):
        status, body, resp = await get(http, url, **credentials)
        assert (status, body) == (401, {"error": "unauthorized"})
        assert "realm=" in resp.headers["WWW-Authenticate"]
    status, body, resp = await get(http, url, **right)
    assert status == 200 and len(body) == 2
    if kind == "query":  # the next link keeps the key, so a client can just follow it
        assert (await get(http, str(resp.links["next"]["url"])))[0] == 200
    assert (await get(http, f"{sim.url}/_sim/stats"))[0] == 200
    assert sim.stats.unauthorized == 2


async def test_oauth2_client_credentials_and_expiry(make: Make, http) -> None:
    sim = await make(auth=Auth("oauth2", username="cid", password="csecret", token_ttl=60))
    sim.set_time(T)
    sim.seed(1)
    token_url = f"{sim.url}/oauth/token"
    grant = {"grant_type": "client_credentials"}

    async def post(data: dict[str, str], **kwargs: Any) -> tuple[int, Any]:
        async with http.post(token_url, data=data, **kwargs) as resp:
            return resp.status, await resp.json()

    status, issued = await post(grant, headers=basic("cid", "csecret"))
    assert status == 200
    assert (issued["token_type"], issued["expires_in"]) == ("Bearer", 60)
    status, other = await post(
        {**grant, "client_id": "cid", "client_secret": "csecret", "scope": "r"}
    )
    assert status == 200 and other["scope"] == "r"
    assert (await post({**grant, "client_id": "cid", "client_secret": "nope"})) == (
        401,
        {"error": "invalid_client"},
    )
    status, body = await post({"grant_type": "password"}, headers=basic("cid", "csecret"))
    assert (status, body["error"]) == (400, "unsupported_grant_type")

    url = f"{sim.url}/objects/obj_000001"
    bearer = {"Authorization": f"Bearer {issued['access_token']}"}
    assert (await get(http, url, headers=bearer))[0] == 200
    for headers in ({}, {"Authorization": "Bearer made-up"}):
        status, body, _ = await get(http, url, headers=headers)
        assert (status, body) == (401, {"error": "unauthorized"})
    sim.set_time(T + 59)
    assert (await get(http, url, headers=bearer))[0] == 200
    sim.set_time(T + 60)
    status, body, resp = await get(http, url, headers=bearer)
    assert (status, body) == (401, {"error": "invalid_token"})
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert sim.stats.token_requests == 4
    assert sim.stats.unauthorized == 4  # the bad client and three refused calls


# -- webhooks ------------------------------------------------------------------------------------


async def test_webhooks_are_signed_and_describe_each_change(make: Make, receiver) -> None:
    sim = await make(webhook_url=receiver.url)
    sim.seed(3)  # no webhooks
    sim.create({"status": "new"}, id="ord_1")
    sim.update("ord_1", {"status": "paid"})
    sim.update("obj_000001", webhook=False)
    sim.delete("ord_1")
    await sim.flush_webhooks(timeout=DEADLINE)
    assert len(receiver.received) == 3
    for headers, body in receiver.received:
        Webhook(DEFAULT_SECRET).verify(body, headers)  # raises unless the signature is right
        assert headers["content-type"] == "application/json"
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
        assert json.loads(body)["id"] == headers["webhook-id"]
    payloads = receiver.payloads()
    assert [(p["type"], p["data"]["version"]) for p in payloads] == [
        ("order.created", 1),
        ("order.updated", 2),
        ("order.deleted", 3),
    ]
    assert payloads[2]["data"]["status"] == "paid"  # the last state
    assert payloads[1]["created_at"] == payloads[1]["data"]["updated_at"]
    assert len(set(receiver.ids())) == 3
    assert sim.stats.webhooks_sent == [
        {"webhook_id": p["id"], "type": p["type"], "object_id": "ord_1", "version": v}
        for p, v in zip(payloads, (1, 2, 3), strict=True)
    ]


async def test_drop_sends_nothing(make: Make, receiver) -> None:
    sim = await make(webhook_url=receiver.url, drop=1.0)
    sim.seed(5)
    changes = sim.mutate(10)
    await sim.flush_webhooks(timeout=DEADLINE)
    assert receiver.received == [] and sim.stats.webhooks_sent == []
    assert [
        (d["type"].split(".")[1], d["object_id"]) for d in sim.stats.webhooks_dropped
    ] == changes


async def test_duplicate_sends_each_twice_with_one_id(make: Make, receiver) -> None:
    sim = await make(webhook_url=receiver.url, duplicate=1.0)
    for _ in range(3):
        sim.create()
    await sim.flush_webhooks(timeout=DEADLINE)
    assert list(Counter(receiver.ids()).values()) == [2, 2, 2]
    bodies: dict[str, set[bytes]] = {}
    for headers, body in receiver.received:
        bodies.setdefault(headers["webhook-id"], set()).add(body)
    assert all(len(same) == 1 for same in bodies.values())  # the same bytes, twice
    assert sorted(sim.stats.duplicates_sent) == sorted(bodies)
    assert len(sim.stats.webhooks_sent) == 3


async def test_delay_and_flush(make: Make, receiver) -> None:
    sim = await make(webhook_url=receiver.url, delay=0.4, seed=3)
    started = time.monotonic()
    created = [sim.create()["id"] for _ in range(6)]
    await asyncio.sleep(0.01)
    assert len(receiver.received) < 6
    await sim.flush_webhooks(timeout=DEADLINE)
    assert time.monotonic() - started > 0.1  # held back, not sent at once
    assert sorted(p["data"]["id"] for p in receiver.payloads()) == created


async def test_reorder_holds_back_until_the_next_one_is_sent(make: Make, receiver) -> None:
    sim = await make(webhook_url=receiver.url, reorder=1.0)
    sim.create()
    await asyncio.sleep(0.2)
    assert receiver.received == []  # held until another webhook goes: none does
    await sim.flush_webhooks(timeout=DEADLINE)
    assert len(receiver.received) == 1

    sim = await make(webhook_url=receiver.url, reorder=0.5, seed=1)
    created = [sim.create()["id"] for _ in range(12)]
    await sim.flush_webhooks(timeout=DEADLINE)
    got = [p["data"]["id"] for p in receiver.payloads()[1:]]
    assert sorted(got) == created and got != created


async def test_knobs_are_reproducible_with_a_seed(make: Make, receiver) -> None:
    fates = []
    for _ in range(2):
        sim = await make(webhook_url=receiver.url, drop=0.5, seed=42)
        sim.seed(20)
        changes = sim.mutate(30)
        dropped = [(d["type"], d["object_id"]) for d in sim.stats.webhooks_dropped]
        fates.append((changes, dropped))
        await sim.stop()
    assert fates[0] == fates[1] and 0 < len(fates[0][1]) < 30


async def test_retries_and_webhooks_made_before_start(receiver) -> None:
    sim = Simulator(SimulatorOptions(webhook_url=receiver.url, webhook_retries=2))
    sim.create()  # before start: sent once the simulator runs
    receiver.statuses = [500]
    await sim.start()
    try:
        await sim.flush_webhooks(timeout=DEADLINE)
    finally:
        await sim.stop()
    assert len(receiver.received) == 2 and len(set(receiver.ids())) == 1
    assert len(sim.stats.webhooks_sent) == 1


async def test_stop_cancels_pending_webhooks(make: Make, receiver) -> None:
    sim = await make(webhook_url=receiver.url, delay=30)
    sim.create()
    started = time.monotonic()
    await sim.stop()
    await sim.stop()  # idempotent
    # Well short of the 30 s delay: the held webhook was cancelled, not waited out.
    assert time.monotonic() - started < 20 and receiver.received == []
    with pytest.raises(TimeoutError):
        sim = await make(webhook_url=receiver.url, delay=30, seed=1)
        sim.create()
        await sim.flush_webhooks(timeout=0.1)


# -- scale, control, CLI -------------------------------------------------------------------------


async def test_100k_objects_seed_and_page_through(make: Make, http) -> None:
    sim = await make()
    sim.seed(100_000)
    items, pages = await walk(http, sim.url, "cursor", 100)
    assert pages == 1000 and len({o["id"] for o in items}) == 100_000
    status, body, _ = await get(http, f"{sim.url}/page/objects?page=1000&per_page=100")
    assert (status, body["total_pages"], body["data"][-1]["id"]) == (200, 1000, "obj_100000")


async def test_control_endpoints(make: Make, http) -> None:
    sim = await make(auth=Auth("bearer", token="t"), rate_limit=1)
    base = f"{sim.url}/_sim/objects"
    async with http.post(base, json={"id": "ord_1", "status": "paid"}) as resp:
        assert resp.status == 201
        created = await resp.json()
    assert created["id"] == "ord_1" and created["status"] == "paid" and sim.objects["ord_1"]
    async with http.post(base, json={"id": "ord_1"}) as resp:
        assert resp.status == 409
    async with http.post(base) as resp:
        assert resp.status == 201 and (await resp.json())["status"] == "new"
    async with http.patch(f"{base}/ord_1", json={"status": "shipped"}) as resp:
        assert (await resp.json())["version"] == 2
    async with http.patch(f"{base}/nope", json={}) as resp:
        assert resp.status == 404
    async with http.patch(f"{base}/ord_1", data=b"[1]") as resp:
        assert resp.status == 400
    async with http.delete(f"{base}/ord_1") as resp:
        assert resp.status == 204
    async with http.delete(f"{base}/ord_1") as resp:
        assert resp.status == 404
    async with http.post(f"{sim.url}/_sim/mutate?count=5") as resp:
        changes = await resp.json()
    assert len(changes) == 5 and {c["change"] for c in changes} <= {"created", "updated", "deleted"}
    async with http.post(f"{sim.url}/_sim/mutate?count=x") as resp:
        assert resp.status == 400
    _, stats, _ = await get(http, f"{sim.url}/_sim/stats")
    assert stats["calls"] == 0 and stats["objects"] == len(sim.objects)
    assert set(stats) >= {"not_modified", "webhooks_sent", "duplicates_sent", "token_requests"}


def test_options_are_checked() -> None:
    for bad in (
        {"page_size": 0},
        {"page_size": 2000},
        {"drop": 1.5},
        {"rate_limit": 0},
        {"webhook_url": "http://x", "webhook_secret": "whsec_!!"},
        {"auth": Auth("header", token="t")},
    ):
        with pytest.raises(ValueError):
            Simulator(SimulatorOptions(**bad))


def test_auth_specs() -> None:
    assert parse_auth("bearer:a:b") == Auth("bearer", token="a:b")
    assert parse_auth("basic:u:p:q") == Auth("basic", username="u", password="p:q")
    assert parse_auth("query:api_key:k") == Auth("query", name="api_key", token="k")
    assert parse_auth("oauth2:id:sec", 5) == Auth(
        "oauth2", username="id", password="sec", token_ttl=5
    )
    for bad in ("bearer:", "header:X", "digest:x", "basic"):
        with pytest.raises(ValueError):
            parse_auth(bad)
    result = CliRunner().invoke(simulate, ["--help"])
    assert result.exit_code == 0 and "/cursor/objects" in result.output
    result = CliRunner().invoke(simulate, ["--auth", "digest:x"])
    assert result.exit_code == 2 and "--auth" in result.output


async def test_cli_serves_prints_changes_and_stops_on_ctrl_c(http) -> None:
    code = "from hookyard.simulator.cli import simulate; simulate()"
    args = ["--listen", "127.0.0.1:0", "--objects", "5", "--changes-per-second", "20"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        *args,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), DEADLINE)).decode()
        assert first.startswith("simulator listening on http://127.0.0.1:")
        url = first.split()[3]
        lines = [
            (await asyncio.wait_for(proc.stdout.readline(), DEADLINE)).decode() for _ in range(3)
        ]
        assert all(line.split()[1] in ("created", "updated", "deleted") for line in lines)
        status, stats, _ = await get(http, f"{url}/_sim/stats")
        assert status == 200 and stats["objects"] >= 4
        async with http.post(f"{url}/_sim/objects", json={"id": "by_hand"}) as resp:
            assert resp.status == 201
        for _ in until_deadline():  # changes through /_sim are printed too
            if "by_hand v1" in (await asyncio.wait_for(proc.stdout.readline(), DEADLINE)).decode():
                break
        else:
            raise AssertionError("the change made through /_sim was not printed")
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0 and out.decode().rstrip().endswith("stopped")
