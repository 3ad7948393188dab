"""Reconciliation and backfill against the provider simulator: webhooks for speed, REST checks
for what they dropped, history on demand; each object version is one event."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from standardwebhooks import Webhook

from hookyard.simulator import DEFAULT_SECRET, Simulator, SimulatorOptions
from tests.conftest import DEADLINE, Receiver, Running, local_api, query_database
from tests.integration.test_polling import events, job, payloads, run_job


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def shop_config(receiver_url: str, api_base: str, reconcile: str = "") -> str:
    return f"""
        [server]
        listen = "127.0.0.1:0"

        [egress]
        allow = ["127.0.0.0/8"]

        [sources.orders]
        verify = "standard"
        secrets = ["{DEFAULT_SECRET}"]
        object_id = "data.id"
        object_version = "data.version"

        [sources.orders.api]
        url = "{api_base}/cursor/objects"
        pagination = "cursor"
        page_size = 25
        version_field = "version"
        resource = "order"
        object_url = "{api_base}/objects/{{id}}"
        {reconcile}

        [destinations.app]
        url = "{receiver_url}"
        timeout = "2s"

        [[routes]]
        source = "orders"
        destination = "app"
    """


def object_version(document: dict[str, Any]) -> tuple[str, int]:
    """(id, version) of a webhook's object or of a REST item."""
    obj = document.get("data", document)
    return obj["id"], obj["version"]


async def delivered_versions(running: Running, receiver: Receiver) -> Counter[tuple[str, int]]:
    assert len(receiver.ids()) == len(set(receiver.ids()))  # no event delivered twice
    return Counter(object_version(orjson.loads(r.body)) for r in receiver.received)


async def test_reconciliation_recovers_dropped_webhooks_and_late_ones_are_duplicates(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    port = free_port()
    reconcile = """
        [sources.orders.reconcile]
        interval = "2s"
        window = "10m"
    """
    config = shop_config(receiver.url, f"http://127.0.0.1:{port}", reconcile)
    async with hookyard_factory(config) as running:
        options = SimulatorOptions(
            webhook_url=f"{running.url}/in/orders", drop=0.1, delay=4.0, seed=11
        )
        sim = Simulator(options)
        await sim.start(port=port)
        try:
            changes: list[tuple[str, int]] = []
            for _ in range(60):
                changes.append(object_version(sim.create({"status": "new"})))
            for object_id in sorted(sim.objects)[:40]:  # each object changes once more
                changes.append(object_version(sim.update(object_id, {"status": "paid"})))
            await sim.flush_webhooks(timeout=DEADLINE)
            dropped = {(w["object_id"], w["version"]) for w in sim.stats.webhooks_dropped}
            assert len(dropped) >= 5  # the seed drops about 10 of 100

            # After the last change, its grace and one more interval, every change is in.
            latest = {(i, o["version"]) for i, o in sim.objects.items()}
            before = await job(running, "reconcile")
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                current = await job(running, "reconcile")
                if current.get("last_success_at") and current["last_success_at"] > (
                    before.get("last_success_at") or ""
                ):
                    before = current
                    if (await delivered_versions(running, receiver)).keys() >= latest:
                        break
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.5)  # one more run: nothing more may come
            # Each change once: those whose webhooks came, and each object's latest version
            # (a dropped webhook superseded by a later change is no change to recover).
            sent = {(w["object_id"], w["version"]) for w in sim.stats.webhooks_sent}
            latest = {(i, o["version"]) for i, o in sim.objects.items()}
            expected = Counter(sent | latest)
            assert set(changes) >= expected.keys()
            stored = await events(running)
            documents = await payloads(running, stored)
            assert Counter(object_version(d) for d in documents) == expected
            origins = {
                object_version(d): e["origin"] for d, e in zip(documents, stored, strict=True)
            }
            recovered = [c for c, origin in origins.items() if origin == "reconcile"]
            assert {origins[c] for c in dropped & latest} == {"reconcile"}
            assert len(recovered) >= len(dropped & latest) > 0
            await receiver.wait_for(len(expected))
            assert await delivered_versions(running, receiver) == expected
            status = await job(running, "reconcile")
            assert status["emitted"] == len(recovered) and status["checked"] >= len(sim.objects)
            assert status["last_error"] is None
        finally:
            await sim.stop()


async def start_backfill(running: Running, body: dict[str, Any]) -> None:
    async with running.api() as api:
        response = await api.post("/api/v1/sources/orders/backfill", json=body)
        assert response.status_code == 202, response.text


async def wait_backfill(running: Running, timeout: float = DEADLINE) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    async with running.api() as api:
        while time.monotonic() < deadline:
            status: dict[str, Any] = (await api.get("/api/v1/sources/orders/backfill")).json()
            if (status.get("progress") or {}).get("done"):
                return status
            await asyncio.sleep(0.05)
    raise AssertionError(f"the backfill did not finish: {status}")


def iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


async def test_backfill_emits_the_window_once_without_duplicating(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    sim = Simulator(SimulatorOptions(seed=2))
    await sim.start()
    try:
        day = 86400.0
        start = time.time() - 10 * day
        for index in range(100):  # ten objects a day for ten days
            sim.set_time(start + index * day / 10)
            sim.create({"n": index}, webhook=False)
        sim.set_time(None)
        config = shop_config(receiver.url, sim.url)
        async with hookyard_factory(config) as running:
            # Days 2 to 6: 40 objects. One of them already came by webhook.
            window = {"since": iso(start + 2 * day), "until": iso(start + 6 * day)}
            known = sim.objects["obj_000025"]
            await post_webhook(running, known)
            await start_backfill(running, window)
            status = await wait_backfill(running)
            assert status["last_error"] is None
            assert status["progress"]["items"] == 40
            assert status["emitted"] == 39  # the webhook's version was not emitted again
            found = await events(running, origin="backfill")
            numbers = sorted(d["n"] for d in await payloads(running, found))
            assert numbers == [n for n in range(20, 60) if n != 24]  # obj_000025 is n=24

            # The same window again: resumes nothing, duplicates nothing.
            await start_backfill(running, window)
            await wait_backfill(running)
            assert len(await events(running, origin="backfill")) == 39
            # A wider window adds only what is new.
            await start_backfill(running, {"since": iso(start), "until": iso(start + 6 * day)})
            status = await wait_backfill(running)
            assert status["emitted"] == 20
            assert len(await events(running, origin="backfill")) == 59
    finally:
        await sim.stop()


async def post_webhook(
    running: Running,
    obj: dict[str, Any],
    event_id: str = "evt_manual",
    event_type: str = "order.created",
) -> None:
    """The object's version as the simulator's webhook would carry it."""
    body = orjson.dumps({"id": event_id, "type": event_type, "data": obj})
    stamp = int(time.time())
    sent_at = datetime.fromtimestamp(stamp, UTC)
    signature = Webhook(DEFAULT_SECRET).sign(event_id, sent_at, body.decode())
    response = await running.client.post(
        "/in/orders",
        content=body,
        headers={
            "webhook-id": event_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": signature,
            "content-type": "application/json",
        },
    )
    assert response.status_code == 200, response.text


async def test_a_backfill_skips_what_is_stored_within_the_dedup_window_only(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    """As `hookyard backfill --help`, the API and the README say: a version stored within
    `dedup_window` is skipped; once its keys expired, it is emitted again, origin backfill."""
    sim = Simulator(SimulatorOptions(seed=6))
    await sim.start()
    try:
        obj = sim.create({"status": "paid"}, webhook=False)
        window = {"since": iso(time.time() - 3600)}
        async with hookyard_factory(shop_config(receiver.url, sim.url)) as running:
            await post_webhook(running, obj, "evt_paid", "order.paid")
            await start_backfill(running, window)
            assert (await wait_backfill(running))["emitted"] == 0
            # Eight days go by: maintenance forgets dedup keys older than the window (7 d).
            state = running.service.state
            assert state is not None
            assert await state.store.expire_dedup(time.time() + 1) > 0
            await start_backfill(running, window)
            status = await wait_backfill(running)
            assert status["progress"]["items"] == 1 and status["emitted"] == 1
            assert [e["origin"] for e in await events(running)] == ["webhook", "backfill"]
    finally:
        await sim.stop()


async def test_a_backfill_resumed_at_a_page_the_api_refuses_starts_over(
    receiver: Receiver, hookyard_factory: Any, monkeypatch: Any
) -> None:
    """The first run dies on page 2 and, meanwhile, the API's cursors expire: the stored page
    answers 400 for good. The backfill starts its window over (its counts too) instead of
    failing every retry."""
    monkeypatch.setattr("hookyard.pollers.jobs.BackfillJob.retry_base", lambda self: 0.1)
    state = {"gen": 1, "fail": 3}
    updated = "2026-11-27T10:00:00Z"

    async def listing(request: web.Request) -> web.Response:
        cursor = request.query.get("cursor")
        if cursor is None:
            first = {"id": "a", "version": 1, "updated_at": updated}
            return web.json_response({"data": [first], "next_cursor": f"gen{state['gen']}"})
        if cursor != f"gen{state['gen']}":
            return web.json_response({"error": "cursor expired"}, status=400)
        if state["fail"]:
            state["fail"] -= 1
            state["gen"] += state["fail"] == 0  # the run died: its cursor expires
            return web.Response(status=500)
        second = {"id": "b", "version": 1, "updated_at": updated}
        return web.json_response({"data": [second], "next_cursor": None})

    async with (
        local_api(("/cursor/objects", listing)) as base,
        hookyard_factory(shop_config(receiver.url, base)) as running,
    ):
        await start_backfill(running, {"since": "2026-11-01T00:00:00Z"})
        status = await wait_backfill(running)
        assert status["last_error"] is None, status
        assert status["progress"]["items"] == 2 and status["emitted"] == 2, status


async def test_a_backfill_window_outside_1970_to_now_is_refused(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    """Year 1 in a +14:00 zone was taken, and GET /sources answered 500 until it was
    cancelled."""
    sim = Simulator(SimulatorOptions(seed=5))
    await sim.start()
    try:
        config = shop_config(receiver.url, sim.url)
        async with hookyard_factory(config) as running, running.api() as api:
            for window in (
                {"since": "0001-01-01T00:00:00+14:00"},
                {"since": "1969-12-31T00:00:00Z"},
                {"since": iso(time.time() + 3600)},
                {"since": iso(time.time() - 60), "until": iso(time.time() - 120)},
                {"since": iso(time.time() - 60), "until": "9999-12-31T23:59:59-14:00"},
            ):
                refused = await api.post("/api/v1/sources/orders/backfill", json=window)
                assert refused.status_code == 422, (window, refused.text)
            assert (await api.get("/api/v1/sources")).status_code == 200
    finally:
        await sim.stop()


async def test_current_state_of_an_event_object(receiver: Receiver, hookyard_factory: Any) -> None:
    sim = Simulator(SimulatorOptions(seed=4))
    await sim.start()
    try:
        obj = sim.create({"status": "new"}, webhook=False)
        async with hookyard_factory(shop_config(receiver.url, sim.url)) as running:
            await post_webhook(running, obj)
            sim.update(obj["id"], {"status": "refunded"}, webhook=False)
            [event] = await events(running)
            async with running.api() as api:
                current = await api.get(f"/api/v1/events/{event['id']}/current")
                assert current.status_code == 200, current.text
                assert current.json()["status"] == "refunded"
                assert current.json()["version"] == 2
                sim.delete(obj["id"], webhook=False)
                gone = await api.get(f"/api/v1/events/{event['id']}/current")
                assert gone.status_code == 404, gone.text  # the object is gone, not the API
                assert gone.json()["error"] == "object_gone" and "404" in gone.json()["message"]
    finally:
        await sim.stop()


async def test_current_state_does_not_sit_out_a_rate_limit(
    receiver: Receiver, hookyard_factory: Any, monkeypatch: Any
) -> None:
    """An API that asks to wait a minute: the caller gets 504 at the limit, not a request
    that hangs for as long as the API likes."""
    monkeypatch.setattr("hookyard.api.sources.CURRENT_TIMEOUT", 0.5)

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "60"})

    async with (
        local_api(("/{tail:.*}", busy)) as base,
        hookyard_factory(shop_config(receiver.url, base)) as running,
    ):
        await post_webhook(running, {"id": "obj_1", "version": 1})
        [event] = await events(running)
        async with running.api() as api:
            answer = await api.get(f"/api/v1/events/{event['id']}/current")
        assert answer.status_code == 504, answer.text
        assert answer.json()["error"] == "api_timeout"


async def test_two_webhooks_of_one_version_are_both_events_and_block_its_reemission(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    """Two updates in the same second (or two event types of one change) carry one version:
    both are events; the REST side then finds the version seen and emits nothing for it."""
    sim = Simulator(SimulatorOptions(seed=6))
    await sim.start()
    try:
        obj = sim.create({"status": "paid"}, webhook=False)
        async with hookyard_factory(shop_config(receiver.url, sim.url)) as running:
            await post_webhook(running, obj, "evt_paid", "order.paid")
            await post_webhook(running, obj, "evt_updated", "order.updated")
            assert len(await events(running)) == 2
            await start_backfill(running, {"since": iso(time.time() - 3600)})
            status = await wait_backfill(running)
            assert status["progress"]["items"] == 1 and status["emitted"] == 0
            assert len(await events(running)) == 2
    finally:
        await sim.stop()


async def test_reconciliation_windows_end_on_whole_seconds(
    receiver: Receiver, hookyard_factory: Any
) -> None:
    """APIs take times to the second: a window ending mid-second would leave the rest of that
    second to neither it nor the next (which starts where it ended)."""
    sim = Simulator(SimulatorOptions(seed=3))
    await sim.start()
    try:
        reconcile = '[sources.orders.reconcile]\ninterval = "1h"\nwindow = "10m"'
        async with hookyard_factory(shop_config(receiver.url, sim.url, reconcile)) as running:
            await run_job(running, "reconcile")
            [(checkpoint,)] = query_database(
                running.service.gateway.base_dir,
                "SELECT checkpoint FROM rest_jobs WHERE job = 'reconcile'",
            )
            until = orjson.loads(checkpoint)["until"]
            assert until == int(until)
    finally:
        await sim.stop()
