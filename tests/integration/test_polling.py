"""Poll sources against the provider simulator: each pagination style, change-detection mode
and auth method, boundary timestamps, clock skew, failing and rate-limiting APIs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import textwrap
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import orjson
import pytest
from aiohttp import web

import hookyard.cli  # noqa: F401  (cli_sources is loaded through it)
from hookyard.cli_sources import _job_line
from hookyard.pollers.api import parse_time
from hookyard.simulator import Auth, Simulator, SimulatorOptions
from tests.conftest import DEADLINE, Receiver, Running, local_api
from tests.integration.test_console import console

STYLES = {  # pagination style -> (path, [api] settings)
    "cursor": ("/cursor/objects", 'pagination = "cursor"'),
    "page": ("/page/objects", 'pagination = "page"\nlimit_param = "per_page"'),
    "offset": ("/offset/objects", 'pagination = "offset"'),
    "link": ("/link/objects", 'pagination = "link"\nlimit_param = "per_page"\nitems = ""'),
    "next_url": (
        "/next/objects",
        'pagination = "next_url"\nlimit_param = "per_page"\nitems = "results"',
    ),
}


def poll_config(
    receiver_url: str,
    api_base: str,
    *,
    style: str = "cursor",
    detect: str = "cursor",
    page_size: int = 20,
    initial: str = "emit",
    api_extra: str = "",
    poll_extra: str = 'interval = "1h"',
) -> str:
    path, pagination = STYLES[style]
    return f"""
        [server]
        listen = "127.0.0.1:0"

        [egress]
        allow = ["127.0.0.0/8"]

        [sources.orders]
        kind = "poll"

        [sources.orders.api]
        url = "{api_base}{path}"
        {pagination}
        page_size = {page_size}
        version_field = "version"
        resource = "order"
        object_url = "{api_base}/objects/{{id}}"
        {api_extra}

        [sources.orders.poll]
        detect = "{detect}"
        initial = "{initial}"
        {poll_extra}

        [destinations.app]
        url = "{receiver_url}"
        timeout = "2s"
        retry_schedule = ["0", "100ms"]

        [[routes]]
        source = "orders"
        destination = "app"
    """


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(SimulatorOptions(seed=7))
    await sim.start()
    yield sim
    await sim.stop()


async def job(running: Running, name: str = "poll", source: str = "orders") -> dict[str, Any]:
    async with running.api() as api:
        response = await api.get(f"/api/v1/sources/{source}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
    return next((j for j in body["jobs"] if j["job"] == name), {})


async def run_job(
    running: Running, name: str = "poll", source: str = "orders", timeout: float = DEADLINE
) -> dict[str, Any]:
    """Run the job now and wait until that run has ended (successfully or not)."""
    before = await job(running, name, source)
    async with running.api() as api:
        if name == "backfill":
            raise AssertionError("start backfills with start_backfill")
        response = await api.post(f"/api/v1/sources/{source}/{name}")
        assert response.status_code == 202, response.text
    return await wait_run(running, before, name, source, timeout)


async def wait_run(
    running: Running,
    before: dict[str, Any],
    name: str = "poll",
    source: str = "orders",
    timeout: float = DEADLINE,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = await job(running, name, source)
        ended = now.get("last_run_at") and not now["running"]
        if ended and (
            now["last_success_at"] != before.get("last_success_at")
            or now["failures"] != before.get("failures")
        ):
            return now
        await asyncio.sleep(0.05)
    raise AssertionError(f"the {name} run did not end: {await job(running, name, source)}")


async def events(running: Running, **filters: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"source": "orders", "order": "asc", "limit": 1000, **filters}
    async with running.api() as api:
        while True:
            page = (await api.get("/api/v1/events", params=params)).json()
            found += page["data"]
            if not page["next_cursor"]:
                return found
            params["cursor"] = page["next_cursor"]


async def payloads(running: Running, listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    async with running.api() as api:
        return [
            orjson.loads((await api.get(f"/api/v1/events/{e['id']}/raw")).content) for e in listed
        ]


def versions(documents: list[dict[str, Any]]) -> Counter[tuple[str, int]]:
    return Counter((d["id"], d.get("version", -1)) for d in documents)


@pytest.mark.parametrize("style", list(STYLES))
async def test_each_pagination_style_lists_every_item_once(
    style: str, simulator: Simulator, receiver: Receiver, hookyard_factory: Any
) -> None:
    simulator.seed(95)  # not a multiple of the page size: a short last page
    config = poll_config(receiver.url, simulator.url, style=style, detect="hash")
    async with hookyard_factory(config) as running:
        first = await wait_run(running, {})
        assert first["last_error"] is None
        created = await events(running)
        assert len(created) == 95
        assert {e["event_type"] for e in created} == {"order.created"}
        assert {e["origin"] for e in created} == {"poll"}
        await receiver.wait_for(95)
        # A second pass over unchanged data emits nothing.
        await run_job(running)
        assert len(await events(running)) == 95

        changed = sorted(simulator.objects)[:3]
        for object_id in changed:
            simulator.update(object_id, {"status": "paid"})
        gone = sorted(simulator.objects)[-1]
        simulator.delete(gone)
        simulator.create({"status": "new"})
        result = await run_job(running)
        assert result["last_error"] is None
        later = (await events(running))[95:]
        kinds = Counter(e["event_type"] for e in later)
        assert kinds == {"order.updated": 3, "order.deleted": 1, "order.created": 1}
        documents = await payloads(running, later)
        assert {d["id"] for d in documents} >= {*changed, gone}
        deleted = next(
            d for d, e in zip(documents, later, strict=True) if "deleted" in e["event_type"]
        )
        assert deleted == {"id": gone, "deleted": True}
        await receiver.wait_for(100)
        assert len(set(receiver.ids())) == 100


async def test_cursor_mode_sees_same_second_updates_skew_and_double_updates(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    # The API's clock runs an hour behind ours: only its own timestamps may be compared.
    sim = Simulator(SimulatorOptions(seed=3, clock_skew=-3600))
    await sim.start()
    try:
        frozen = time.time()
        sim.set_time(frozen)  # every change below shares one updated_at second
        for _ in range(30):
            sim.create({"status": "new"})
        config = poll_config(receiver.url, sim.url, page_size=7, initial="skip")
        async with hookyard_factory(config) as running:
            baseline = await wait_run(running, {})
            assert baseline["last_error"] is None and baseline["checked"] == 30
            assert await events(running) == []  # initial = "skip": history is for backfill

            # In the checkpoint's own second: an update, a second update of one item, a new one.
            sim.update("obj_000001", {"status": "paid"})
            sim.update("obj_000002", {"status": "paid"})
            sim.update("obj_000002", {"status": "shipped"})
            created = sim.create({"status": "new"})
            await run_job(running)
            found = await events(running)
            kinds = Counter(e["event_type"] for e in found)
            assert kinds == {"order.updated": 2, "order.created": 1}
            documents = {d["id"]: d for d in await payloads(running, found)}
            assert documents["obj_000002"]["status"] == "shipped"  # the latest state, once
            assert documents["obj_000002"]["version"] == 3
            assert created["id"] in documents

            # Nothing changed: the lookback re-reads those items and emits nothing.
            await run_job(running)
            assert len(await events(running)) == 3

            sim.set_time(frozen + 5)
            sim.update("obj_000003", {"status": "paid"})
            await run_job(running)
            assert [e["event_type"] for e in (await events(running))[3:]] == ["order.updated"]
    finally:
        await sim.stop()


async def test_etag_mode_costs_no_work_when_nothing_changed(
    simulator: Simulator, receiver: Receiver, hookyard_factory: Any
) -> None:
    simulator.seed(60)
    config = poll_config(receiver.url, simulator.url, style="page", detect="etag")
    async with hookyard_factory(config) as running:
        await wait_run(running, {})
        assert len(await events(running)) == 60
        before = simulator.stats.not_modified
        await run_job(running)
        # Pages 1-3 and the empty page 4 that ends the listing: all answered 304.
        assert simulator.stats.not_modified - before == 4
        assert len(await events(running)) == 60
        simulator.delete("obj_000010")
        await run_job(running)
        assert [e["event_type"] for e in (await events(running))[60:]] == ["order.deleted"]
        async with running.api() as api:
            source = (await api.get("/api/v1/sources/orders")).json()
        today = source["api_calls_today"]
        assert today["not_modified"] >= 3 and today["calls"] > today["not_modified"]
        assert source["api_calls"][-1] == today


AUTHS = {
    "bearer": (Auth("bearer", token="t0ken"), 'auth = { bearer = "t0ken" }'),
    "basic": (
        Auth("basic", username="poller", password="s3cret"),
        'auth = { basic = "poller:s3cret" }',
    ),
    "header": (
        Auth("header", name="X-Api-Key", token="k3y"),
        'auth = { header = "X-Api-Key", key = "k3y" }',
    ),
    "query": (
        Auth("query", name="api_key", token="k3y"),
        'auth = { query = "api_key", key = "k3y" }',
    ),
    "oauth2": (
        Auth("oauth2", username="client", password="s3cret", token_ttl=2),
        'auth = { token_url = "BASE/oauth/token", client_id = "client",'
        ' client_secret = "s3cret", scope = "read" }',
    ),
}


@pytest.mark.parametrize("kind", list(AUTHS))
async def test_each_auth_method(kind: str, receiver: Receiver, hookyard_factory: Any) -> None:
    auth, setting = AUTHS[kind]
    sim = Simulator(SimulatorOptions(seed=5, auth=auth))
    await sim.start()
    try:
        sim.seed(45)
        extra = setting.replace("BASE", sim.url)
        config = poll_config(receiver.url, sim.url, api_extra=extra)
        async with hookyard_factory(config) as running:
            result = await wait_run(running, {})
            assert result["last_error"] is None, result
            assert len(await events(running)) == 45
            assert sim.stats.unauthorized == 0
            if kind == "oauth2":  # the token expires: a new one is fetched
                await asyncio.sleep(2.1)
                sim.update("obj_000001", {"status": "paid"})
                result = await run_job(running)
                assert result["last_error"] is None, result
                assert sim.stats.token_requests >= 2
                assert len(await events(running)) == 46
            if kind == "query":  # the key never lands in stored URLs or errors
                assert "k3y" not in str(result)
    finally:
        await sim.stop()


async def test_wrong_credentials_are_a_visible_error(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    sim = Simulator(SimulatorOptions(auth=Auth("bearer", token="right")))
    await sim.start()
    try:
        sim.seed(3)
        config = poll_config(receiver.url, sim.url, api_extra='auth = { bearer = "wrong" }')
        async with hookyard_factory(config) as running:
            result = await wait_run(running, {})
            assert result["failures"] == 1
            assert "HTTP 401" in result["last_error"]
            assert result["next_run_at"] is not None
            assert "wrong" not in result["last_error"]
            assert await events(running) == []
    finally:
        await sim.stop()


async def test_an_api_failing_for_a_while_backs_off_then_recovers(
    simulator: Simulator, receiver: Receiver, hookyard_factory: Any
) -> None:
    simulator.seed(50)
    simulator.fail_next(3, status=500)  # one run: the call and its two retries
    config = poll_config(receiver.url, simulator.url, poll_extra='interval = "1s"')
    async with hookyard_factory(config) as running:
        failed = await wait_run(running, {})
        assert failed["failures"] == 1 and "HTTP 500" in failed["last_error"]
        recovered = await wait_run(running, failed)
        assert recovered["failures"] == 0 and recovered["last_error"] is None
        found = await events(running)
        assert len(found) == 50
        assert len({d["id"] for d in await payloads(running, found)}) == 50


async def test_429_with_retry_after_is_waited_out_not_failed(
    simulator: Simulator, receiver: Receiver, hookyard_factory: Any
) -> None:
    simulator.seed(30)
    simulator.fail_next(2, status=429, retry_after=1)
    config = poll_config(receiver.url, simulator.url)
    async with hookyard_factory(config) as running:
        started = time.monotonic()
        result = await wait_run(running, {})
        assert result["failures"] == 0 and result["last_error"] is None
        assert time.monotonic() - started >= 2  # waited for each Retry-After
        assert len(await events(running)) == 30
        async with running.api() as api:
            metrics = (await api.get("/metrics")).text
        assert 'hookyard_rest_calls_total{source="orders",result="rate_limited"} 2' in metrics


async def test_a_pause_longer_than_a_run_waits_puts_off_the_next_run(
    simulator: Simulator, receiver: Receiver, hookyard_factory: Any
) -> None:
    simulator.seed(5)
    simulator.fail_next(1, status=429, retry_after=3600)
    config = poll_config(receiver.url, simulator.url, poll_extra='interval = "1s"')
    async with hookyard_factory(config) as running:
        asked = time.time()
        failed = await wait_run(running, {})
        assert "Retry-After 3600s" in failed["last_error"]
        next_run = datetime.fromisoformat(failed["next_run_at"]).timestamp()
        assert next_run >= asked + 3600 - 5  # not the 1 s interval, nor a backoff of seconds
        await asyncio.sleep(1.5)  # past the interval: still no second call
        assert simulator.stats.calls == 1


@contextlib.asynccontextmanager
async def odd_api(
    listing: Callable[[web.Request], list[dict[str, Any]]], objects: set[str] = frozenset()
) -> AsyncIterator[str]:
    """An API of our own making, for what the simulator will not do: GET /objects answers
    `listing(request)`; GET /objects/{id} answers 200 for the ids in `objects`, else 404."""

    async def list_objects(request: web.Request) -> web.Response:
        return web.json_response(listing(request))

    async def one(request: web.Request) -> web.Response:
        found = request.match_info["id"] in objects
        return web.json_response({"id": request.match_info["id"]}, status=200 if found else 404)

    async with local_api(("/objects", list_objects), ("/objects/{id}", one)) as base:
        yield base


def odd_config(receiver: Receiver, base: str, pagination: str, **options: Any) -> str:
    config = poll_config(receiver.url, base, detect="hash", **options)
    config = config.replace("/cursor/objects", "/objects")
    return config.replace('pagination = "cursor"', pagination)


def thing(name: str, version: int = 1) -> dict[str, Any]:
    return {"id": name, "version": version, "updated_at": "2026-11-27T10:00:00Z"}


async def test_an_item_listed_twice_on_a_page_is_one_item(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    listing = [thing("a"), thing("a"), thing("b")]
    async with odd_api(lambda _: listing) as base:
        config = odd_config(receiver, base, 'pagination = "none"\nitems = ""')
        async with hookyard_factory(config) as running:
            result = await wait_run(running, {})
            assert result["last_error"] is None and result["failures"] == 0
            assert len(await events(running)) == 2


async def test_a_response_too_large_ends_the_run_with_a_clear_error(
    receiver: Receiver, hookyard_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hookyard.pollers.client.MAX_RESPONSE", 10_000)
    listing = [thing(f"item-{n}") for n in range(200)]  # about 14 KB
    async with odd_api(lambda _: listing) as base:
        config = odd_config(receiver, base, 'pagination = "none"\nitems = ""')
        async with hookyard_factory(config) as running:
            failed = await wait_run(running, {})
            assert "a response exceeded 10,000 bytes" in failed["last_error"]


async def test_an_item_that_moved_pages_mid_listing_is_not_deleted(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    """Sorted by update time, an item updated while the list is paged through jumps to a page
    read already: missing from the pass, it still exists, as its own URL tells."""
    order = [thing(name) for name in "abcde"]

    def page(request: web.Request) -> list[dict[str, Any]]:
        number, size = int(request.query.get("page", 1)), int(request.query["per_page"])
        served = order[(number - 1) * size : number * size]
        if number == 1 and shifting:
            order.insert(0, order.pop())  # "e" is updated: now first
        return served

    shifting = False
    pagination = 'pagination = "page"\nlimit_param = "per_page"\nitems = ""'
    async with odd_api(page, objects=set("abcde")) as base:
        config = odd_config(receiver, base, pagination, page_size=2, poll_extra='interval = "1s"')
        async with hookyard_factory(config) as running:
            first = await wait_run(running, {})
            assert len(await events(running)) == 5
            shifting = True
            second = await wait_run(running, first)
            assert second["last_error"] is None
            assert [e["event_type"] for e in await events(running)][5:] == []


async def test_an_item_gone_from_a_page_is_deleted_after_a_pass_cut_short_by_a_later_page(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    """etag: the pass that saw page 1 without "x" failed on page 2. Had it stored page 1's
    new ETag, the next passes' 304 would vouch for page 1 and "x" would never be deleted."""
    pages = {"1": ["a", "b", "x"], "2": ["c"]}
    failing = 0

    async def listing(request: web.Request) -> web.Response:
        nonlocal failing
        number = request.query.get("p", "1")
        if number == "2" and failing:
            failing -= 1
            return web.Response(status=500, text="boom")
        raw = orjson.dumps(
            {
                "results": [thing(name) for name in pages[number]],
                "next": "/objects?p=2" if number == "1" else None,
            }
        )
        etag = '"' + hashlib.sha1(raw).hexdigest() + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=raw, content_type="application/json", headers={"ETag": etag})

    async with local_api(("/objects", listing)) as base:
        config = poll_config(receiver.url, base, detect="etag")
        config = config.replace("/cursor/objects", "/objects").replace(
            'pagination = "cursor"', 'pagination = "next_url"\nitems = "results"'
        )
        async with hookyard_factory(config) as running:
            first = await wait_run(running, {})
            assert first["last_error"] is None and len(await events(running)) == 4
            pages["1"], failing = ["a", "b"], 3  # "x" is deleted; page 2 fails every try
            assert (await run_job(running))["last_error"]
            assert (await run_job(running))["last_error"] is None
            kinds = [e["event_type"] for e in await events(running)]
            assert kinds.count("order.deleted") == 1, kinds


@contextlib.asynccontextmanager
async def expiring_cursors(state: dict[str, int]) -> AsyncIterator[str]:
    """Two pages; page 2's cursor is good for one generation of `state["gen"]` only, and
    fails with a 500 while `state["fail"]` lasts."""

    async def listing(request: web.Request) -> web.Response:
        cursor = request.query.get("cursor")
        if cursor is None:
            return web.json_response({"data": [thing("a")], "next_cursor": f"gen{state['gen']}"})
        if cursor != f"gen{state['gen']}":
            return web.json_response({"error": "cursor expired"}, status=400)
        if state["fail"]:
            state["fail"] -= 1
            return web.Response(status=500)
        return web.json_response({"data": [thing("b")], "next_cursor": None})

    async with local_api(("/objects", listing)) as base:
        yield base


async def test_a_stored_page_the_api_refuses_later_starts_the_pass_over(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    """A pass cut short resumes at its stored page; once the API's cursor expired, that page
    answers 400 for good: the pass starts over instead of failing every run."""
    state = {"gen": 1, "fail": 3}
    async with expiring_cursors(state) as base:
        config = poll_config(receiver.url, base).replace("/cursor/objects", "/objects")
        async with hookyard_factory(config) as running:
            cut_short = await wait_run(running, {})
            assert "HTTP 500" in cut_short["last_error"]
            state["gen"] = 2  # the stored cursor expires
            again = await run_job(running)
            assert again["last_error"] is None, again
            assert sorted(e["event_type"] for e in await events(running)) == [
                "order.created",
                "order.created",
            ]


async def test_a_pass_cut_short_does_not_resume_on_a_host_the_source_left(
    receiver: Receiver, hookyard_factory: Any, tmp_path: Any
) -> None:
    asked: list[str] = []

    def old_host(request: web.Request) -> dict[str, Any]:
        asked.append(request.query.get("page", "1"))
        if request.query.get("page") == "2":
            raise web.HTTPBadRequest()  # the run ends here; its checkpoint holds page 2
        return {"results": [thing("a")], "next": str(request.url.with_query(page="2"))}

    pagination = 'pagination = "next_url"\nitems = "results"'
    async with odd_api(old_host) as old, odd_api(lambda _: {"results": [thing("b")]}) as new:
        config = odd_config(receiver, old, pagination).replace('detect = "hash"', "")
        async with hookyard_factory(config) as running:
            failed = await wait_run(running, {})
            assert "HTTP 400" in failed["last_error"] and asked == ["1", "2"]
            (tmp_path / "hookyard.toml").write_text(textwrap.dedent(config.replace(old, new)))
            assert running.service.reload()
            recovered = await run_job(running)
            assert recovered["last_error"] is None and asked == ["1", "2"]
            documents = await payloads(running, await events(running))
            assert [d["id"] for d in documents] == ["a", "b"]


async def test_an_api_that_ignores_the_page_parameter_ends_the_pass(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    listing = [thing("a"), thing("b")]  # a full page, whatever page is asked for
    pagination = 'pagination = "page"\nlimit_param = "per_page"\nitems = ""'
    async with odd_api(lambda _: listing) as base:
        config = odd_config(receiver, base, pagination, page_size=2)
        async with hookyard_factory(config) as running:
            failed = await wait_run(running, {})
            assert "lists the same items as the page before it" in failed["last_error"]
            assert "pagination settings" in failed["last_error"]


async def test_rate_limit_window_is_respected(receiver: Receiver, hookyard_factory: Any) -> None:
    sim = Simulator(SimulatorOptions(rate_limit=3, rate_window=2))
    await sim.start()
    try:
        sim.seed(100)  # 5 pages of 20, 6 calls: the window is exhausted once
        config = poll_config(receiver.url, sim.url)
        async with hookyard_factory(config) as running:
            result = await wait_run(running, {})
            assert result["last_error"] is None
            assert len(await events(running)) == 100
            assert sim.stats.rate_limited == 0  # X-RateLimit-Remaining: 0 was heeded
    finally:
        await sim.stop()


async def test_calls_per_minute_budget_paces_the_calls(
    simulator: Simulator, receiver: Receiver, hookyard_factory: Any
) -> None:
    simulator.seed(200)  # 10 pages: a burst of 5, then one call every 0.2 s
    config = poll_config(receiver.url, simulator.url, api_extra="calls_per_minute = 300")
    async with hookyard_factory(config) as running:
        result = await wait_run(running, {})
        assert result["last_error"] is None and len(await events(running)) == 200
        started = datetime.fromisoformat(result["last_run_at"])
        ended = datetime.fromisoformat(result["last_success_at"])
        assert (ended - started).total_seconds() >= 0.9
        assert simulator.stats.calls == 10


async def test_an_item_deleted_and_back_is_created_again_and_keeps_changing(
    simulator: Simulator, receiver: Receiver, hookyard_factory: Any
) -> None:
    simulator.seed(5)
    config = poll_config(receiver.url, simulator.url, detect="hash", initial="skip")
    async with hookyard_factory(config) as running:
        await wait_run(running, {})
        simulator.delete("obj_000003")
        await run_job(running)
        simulator.create({"status": "back"}, id="obj_000003")
        await run_job(running)
        for status in ("paid", "shipped"):
            simulator.update("obj_000003", {"status": status})
            await run_job(running)
        kinds = [e["event_type"] for e in await events(running)]
        assert kinds == ["order.deleted", "order.created", "order.updated", "order.updated"]


async def test_a_malformed_item_is_skipped_and_counted_not_a_stuck_source(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    """A bad record is skipped (logged, counted) and the pass goes on, even when it is alone on
    its page; it never reads as a deletion."""
    listings = iter(
        [
            [thing("a"), thing("b"), {"id": "c"}, {"name": "no id"}, thing("n\x00ul")],
            [thing("a"), {"id": "b"}],  # b lost its version: skipped, but listed, so not gone
            [thing("a"), {"name": "no id"}],  # b missing, but so is an id: nothing reads as gone
            [thing("a")],  # a clean pass: b is gone
            [{"name": "no id"}],  # nothing usable, but the job has run before: skipped
        ]
    )
    async with odd_api(lambda _: next(listings)) as base:
        config = odd_config(receiver, base, 'pagination = "none"\nitems = ""')
        async with hookyard_factory(config) as running:
            result = await wait_run(running, {})
            assert result["last_error"] is None and result["failures"] == 0
            assert result["skipped"] == 3  # c, the one without an id, the NUL in an id
            seen = []
            for _ in range(4):
                result = await run_job(running)
                assert result["last_error"] is None and result["failures"] == 0
                seen.append([e["event_type"] for e in await events(running)])
            assert result["skipped"] == 6  # the job's count, all runs
            assert "6 malformed items skipped (all runs" in _job_line(result)  # sources show
            async with running.api() as api:
                metrics = (await api.get("/metrics")).text
            async with console(running) as client:
                overview = (await client.get("/console/")).text
    assert "6 malformed items skipped</span>" in overview
    created = ["order.created", "order.created"]
    deleted = [*created, "order.deleted"]
    assert seen == [created, created, deleted, deleted]
    assert 'hookyard_rest_items_skipped_total{source="orders"} 6' in metrics


async def test_a_first_run_with_no_usable_item_fails_with_the_reason(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    """Before a job has ever finished, a page with no usable item is more likely a setting
    that does not fit the API (`id_field`, `items`) than bad data: the run fails and says so."""
    listings = iter([[{"uid": "a"}], [thing("a")]])
    async with odd_api(lambda _: next(listings)) as base:
        config = odd_config(receiver, base, 'pagination = "none"\nitems = ""')
        async with hookyard_factory(config) as running:
            failed = await wait_run(running, {})
            assert failed["failures"] == 1 and "has no usable 'id'" in failed["last_error"]
            fixed = await run_job(running)
            assert fixed["last_error"] is None
            assert [e["event_type"] for e in await events(running)] == ["order.created"]


async def test_a_page_of_bad_items_after_good_ones_is_skipped_on_a_first_run(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    """Once this run has seen a usable item the settings fit the API: a later page with
    none (its only item malformed) is skipped, even before the job has ever finished."""
    order = [thing("a"), thing("b"), {"id": "c"}]

    def page(request: web.Request) -> list[dict[str, Any]]:
        number, size = int(request.query.get("page", 1)), int(request.query["per_page"])
        return order[(number - 1) * size : number * size]

    pagination = 'pagination = "page"\nlimit_param = "per_page"\nitems = ""'
    async with odd_api(page) as base:
        config = odd_config(receiver, base, pagination, page_size=2)
        async with hookyard_factory(config) as running:
            result = await wait_run(running, {})
            assert result["last_error"] is None and result["failures"] == 0
            assert len(await events(running)) == 2


async def test_an_empty_page_with_a_next_cursor_does_not_end_the_pass(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    """APIs that filter after paging (Slack, Salesforce, search APIs) send empty pages that
    still name a next one: the items after it are listed."""

    async def listing(request: web.Request) -> web.Response:
        if request.query.get("cursor") is None:
            return web.json_response({"data": [], "next_cursor": "c2"})
        return web.json_response({"data": [thing("a")], "next_cursor": None})

    async with local_api(("/objects", listing)) as base:
        config = poll_config(receiver.url, base).replace("/cursor/objects", "/objects")
        async with hookyard_factory(config) as running:
            assert (await wait_run(running, {}))["last_error"] is None
            documents = await payloads(running, await events(running))
            assert [d["id"] for d in documents] == ["a"]


async def test_items_after_an_empty_page_are_not_reported_deleted(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    """hash (and etag) mode: a pass that ended at an empty page with a next cursor took the
    items after it for deleted."""
    empty_between = False

    async def listing(request: web.Request) -> web.Response:
        cursor = request.query.get("cursor")
        if cursor is None:
            return web.json_response({"data": [thing("a")], "next_cursor": "c2"})
        if cursor == "c2" and empty_between:
            return web.json_response({"data": [], "next_cursor": "c3"})
        return web.json_response({"data": [thing("b")], "next_cursor": None})

    async with local_api(("/objects", listing)) as base:
        config = odd_config(receiver, base, 'pagination = "cursor"')
        config = "\n".join(line for line in config.splitlines() if "object_url" not in line)
        async with hookyard_factory(config) as running:
            first = await wait_run(running, {})
            assert first["last_error"] is None and len(await events(running)) == 2
            empty_between = True  # the same items, with an empty page between them
            assert (await run_job(running))["last_error"] is None
            kinds = [e["event_type"] for e in await events(running)]
            assert kinds == ["order.created", "order.created"]


@pytest.mark.parametrize("empty", [{}, {"data": None}, 204], ids=["missing", "null", "204"])
async def test_an_empty_listing_without_an_items_array_is_no_error(
    empty: Any, receiver: Receiver, hookyard_factory: Any
) -> None:
    """An API saying "no items" by leaving the array out (proto3 JSON: Google APIs), by null
    (Go's nil slice) or by 204 No Content lists an empty page: no failed run."""
    quiet = False

    async def listing(request: web.Request) -> web.Response:
        if not quiet:
            return web.json_response({"data": [thing("a")]})
        if empty == 204:
            return web.Response(status=204)
        return web.json_response(empty)

    async with local_api(("/objects", listing)) as base:
        config = poll_config(receiver.url, base).replace("/cursor/objects", "/objects")
        async with hookyard_factory(config) as running:
            first = await wait_run(running, {})
            assert first["last_error"] is None and len(await events(running)) == 1
            quiet = True  # nothing updated since the last poll
            second = await run_job(running)
            assert second["last_error"] is None and second["failures"] == 0, second
            assert len(await events(running)) == 1


async def test_an_expired_next_page_stored_with_a_304_page_starts_the_pass_over(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    """etag: page 1 answers 304, so the pass goes on to the next page stored with it; once
    that page's cursor expired the API answers 400 for good. The pass starts over without
    validators (a 304 would lead to the same page) instead of failing every run."""
    state = {"gen": 1}

    async def listing(request: web.Request) -> web.Response:
        cursor = request.query.get("cursor")
        if cursor is None:
            raw = orjson.dumps([thing("a")])
            etag = '"' + hashlib.sha1(raw).hexdigest() + '"'
            following = request.url.with_query(cursor=f"gen{state['gen']}")
            headers = {"ETag": etag, "Link": f'<{following}>; rel="next"'}
            if request.headers.get("If-None-Match") == etag:
                return web.Response(status=304, headers=headers)
            return web.Response(body=raw, content_type="application/json", headers=headers)
        if cursor != f"gen{state['gen']}":
            return web.json_response({"error": "cursor expired"}, status=400)
        return web.json_response([thing("b")])

    async with local_api(("/objects", listing)) as base:
        config = odd_config(receiver, base, 'pagination = "link"\nitems = ""')
        config = config.replace('detect = "hash"', 'detect = "etag"')
        async with hookyard_factory(config) as running:
            first = await wait_run(running, {})
            assert first["last_error"] is None and len(await events(running)) == 2
            state["gen"] = 2  # page 2's cursor expires; page 1 is unchanged
            for _ in range(2):
                again = await run_job(running)
                assert again["last_error"] is None, again
            assert len(await events(running)) == 2  # nothing new, nothing deleted


async def test_an_item_stamped_hours_ahead_does_not_hide_the_changes_after_it(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    """Update times up to a day ahead are accepted (a client that wrote local time as UTC);
    the cursor still goes no further than the time of asking, so a change made meanwhile is
    listed."""

    def stamp(when: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))

    now = time.time()
    items = {"a": {"id": "a", "version": 1, "updated_at": stamp(now - 600)}}

    def listing(request: web.Request) -> dict[str, Any]:
        since = request.query.get("updated_since")
        bound = parse_time(since) if since else None
        found = [i for i in items.values() if bound is None or parse_time(i["updated_at"]) >= bound]
        return {"data": found}

    async with odd_api(listing) as base:
        config = odd_config(receiver, base, 'pagination = "none"').replace(
            'detect = "hash"', 'detect = "cursor"'
        )
        async with hookyard_factory(config) as running:
            assert (await wait_run(running, {}))["last_error"] is None
            items["ahead"] = {"id": "ahead", "version": 1, "updated_at": stamp(now + 8 * 3600)}
            assert (await run_job(running))["last_error"] is None
            items["b"] = {"id": "b", "version": 1, "updated_at": stamp(time.time())}
            assert (await run_job(running))["last_error"] is None
            documents = await payloads(running, await events(running))
            assert [d["id"] for d in documents] == ["a", "ahead", "b"]


async def test_an_api_that_moved_says_where(receiver: Receiver, hookyard_factory: Any) -> None:
    """A redirect is not followed (the credentials go with every call); the error said only
    "HTTP 301: " and a resumed pass took it for an expired page."""

    async def moved(_: web.Request) -> web.Response:
        return web.Response(status=301, headers={"Location": "/v2/objects"})

    async with local_api(("/objects", moved)) as base:
        config = odd_config(receiver, base, 'pagination = "none"')
        async with hookyard_factory(config) as running:
            failed = await wait_run(running, {})
            assert failed["last_error"].startswith(f"GET {base}/objects"), failed["last_error"]
            assert f"HTTP 301: redirected to {base}/v2/objects" in failed["last_error"]
