"""Destination states against real receivers: pause and resume, 410 and failing too long
disable, alerts routed like any event, and dead deliveries retried."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.conftest import DEADLINE, Received, basic_config

ALERTS = """
[destinations.alerts]
url = "{url}/alerts"
timeout = "2s"

[[routes]]
source = "hookyard"
destination = "alerts"
"""


def with_alerts(receiver_url: str, destination: str = "") -> str:
    base = receiver_url.rsplit("/", 1)[0]
    return basic_config(receiver_url, destination=destination) + ALERTS.format(url=base)


async def _statuses(hy: Any, event_ids: list[str]) -> list[str]:
    async with hy.api() as api:
        return [
            (await api.get(f"/api/v1/events/{e}")).json()["deliveries"][0]["status"]
            for e in event_ids
        ]


async def _until(check: Any, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.05)


def _alerts(received: list[Received]) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in received if r.path == "/alerts"]


@pytest.mark.slow
async def test_paused_destination_holds_then_delivers_everything_at_its_pace(
    hookyard_factory, receiver
):
    in_flight = {"now": 0, "most": 0}

    async def measured(_: Received) -> int:
        in_flight["now"] += 1
        in_flight["most"] = max(in_flight["most"], in_flight["now"])
        await asyncio.sleep(0.01)
        in_flight["now"] -= 1
        return 204

    receiver.behaviour = measured
    pace = 'concurrency = 4\nrate_limit = "400/s"'
    async with hookyard_factory(basic_config(receiver.url, destination=pace)) as hy:
        async with hy.api() as api:
            paused = await api.post("/api/v1/destinations/app/pause")
            assert paused.json() == {"destination": "app", "state": "paused", "changed": True}
            again = await api.post("/api/v1/destinations/app/pause")
            assert again.json()["changed"] is False
        ids = [
            (await hy.client.post("/in/open", content=f"{i}".encode())).json()["id"]
            for i in range(1000)
        ]
        await asyncio.sleep(0.5)
        assert receiver.received == []
        assert set(await _statuses(hy, ids[:5])) == {"held"}
        async with hy.api() as api:
            listed = (await api.get("/api/v1/destinations")).json()
            assert listed[0]["state"] == "paused"
            assert (await api.post("/api/v1/destinations/app/resume")).json()["changed"]
        await receiver.wait_for(1000)
    assert sorted(receiver.ids()) == sorted(ids)
    assert in_flight["most"] <= 4
    times = sorted(r.at for r in receiver.received)
    # One second's worth of tokens (400) at once, then 400 a second: 1,000 take >= 1.5 s.
    assert times[-1] - times[0] >= 1.4


async def test_410_disables_the_destination_and_raises_an_alert(hookyard_factory, receiver):
    receiver.behaviour = lambda item: 204 if item.path == "/alerts" else 410
    async with hookyard_factory(with_alerts(receiver.url)) as hy:
        first = (await hy.client.post("/in/open", content=b"gone")).json()["id"]

        async def disabled() -> bool:
            return hy.service.state.destination_states.get("app") == "disabled"

        await _until(disabled)
        second = (await hy.client.post("/in/open", content=b"waits")).json()["id"]
        await _until(lambda: _has_alert(receiver, "destination.disabled"))
        assert await _statuses(hy, [first, second]) == ["held", "held"]
        alert = next(a for a in _alerts(receiver.received) if a["type"] == "destination.disabled")
        assert alert["data"] == {
            "destination": "app",
            "reason": "the destination answered 410 Gone",
        }

        receiver.behaviour = None  # fixed: answers 204
        async with hy.api() as api:
            assert (await api.post("/api/v1/destinations/app/enable")).json()["changed"]
        await _until(lambda: _has_alert(receiver, "destination.enabled"))

        async def delivered() -> bool:
            return await _statuses(hy, [first, second]) == ["succeeded", "succeeded"]

        await _until(delivered)


async def test_failing_too_long_disables(hookyard_factory, receiver):
    receiver.behaviour = lambda item: 204 if item.path == "/alerts" else 500
    config = with_alerts(receiver.url, destination='disable_after = "300ms"').replace(
        'retry_schedule = ["0", "100ms", "100ms"]', 'retry_schedule = ["0", "200ms", "200ms"]'
    )
    async with hookyard_factory(config) as hy:
        await hy.client.post("/in/open", content=b"a")

        async def disabled() -> bool:
            return hy.service.state.destination_states.get("app") == "disabled"

        await _until(disabled)
        async with hy.api() as api:
            app = (await api.get("/api/v1/destinations")).json()
        row = next(d for d in app if d["name"] == "app")
        assert row["reason"].startswith("failing continuously since")


async def test_dead_delivery_alert_and_retry_dead(hookyard_factory, receiver):
    receiver.behaviour = lambda item: 204 if item.path == "/alerts" else 503
    async with hookyard_factory(with_alerts(receiver.url)) as hy:
        event_id = (await hy.client.post("/in/open", content=b"doomed")).json()["id"]
        await _until(lambda: _has_alert(receiver, "delivery.dead"))
        alert = next(a for a in _alerts(receiver.received) if a["type"] == "delivery.dead")
        assert alert["data"]["event_id"] == event_id
        assert alert["data"]["last_status_code"] == 503
        async with hy.api() as api:
            alerts = (await api.get("/api/v1/events", params={"source": "hookyard"})).json()
            assert [e["event_type"] for e in alerts["data"]] == ["delivery.dead"]

            receiver.behaviour = None
            retried = await api.post("/api/v1/destinations/app/retry-dead")
            assert retried.json() == {"destination": "app", "retried": 1}
            missing = await api.post("/api/v1/destinations/nope/pause")
            assert missing.status_code == 404

        async def succeeded() -> bool:
            return await _statuses(hy, [event_id]) == ["succeeded"]

        await _until(succeeded)


async def test_actions_need_the_admin_token(hookyard_factory, receiver):
    from hookyard.tokens import hash_token

    async with hookyard_factory(basic_config(receiver.url)) as hy:
        hy.service.store.ensure_token("reader", hash_token("hky_r"), "read")
        answer = await hy.client.post(
            "/api/v1/destinations/app/pause", headers={"authorization": "Bearer hky_r"}
        )
        assert answer.status_code == 403
        assert hy.service.state.destination_states.get("app", "active") == "active"


async def _has_alert(receiver: Any, kind: str) -> bool:
    return any(a["type"] == kind for a in _alerts(receiver.received))


async def test_verification_failure_spike_raises_one_alert(hookyard_factory, receiver):
    import time as clock

    config = with_alerts(receiver.url).replace(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\nalert_verification_failures = 5', 1
    )
    async with hookyard_factory(config) as hy:
        for _ in range(6):
            forged = await hy.client.post("/in/github", content=b"{}")
            assert forged.status_code == 401
        log = hy.service.state.rejected
        later = clock.monotonic() + 61  # the end of the one-minute window
        await log.check_spikes(now=later)
        for _ in range(6):
            await hy.client.post("/in/github", content=b"{}")
        await log.check_spikes(now=later + 61)  # still attacked: no second alert yet
        await _until(lambda: _has_alert(receiver, "source.verification_failures"))
        await asyncio.sleep(0.3)
    spikes = [a for a in _alerts(receiver.received) if a["type"] == "source.verification_failures"]
    assert len(spikes) == 1
    assert spikes[0]["data"]["source"] == "github"
    assert spikes[0]["data"]["failures"] == 6


async def test_an_outage_raises_one_dead_alert_not_one_per_delivery(hookyard_factory, receiver):
    receiver.behaviour = lambda item: 204 if item.path == "/alerts" else 503
    async with hookyard_factory(with_alerts(receiver.url)) as hy:
        for i in range(5):
            await hy.client.post("/in/open", content=f"{i}".encode())

        async def all_dead() -> bool:
            async with hy.api() as api:
                page = await api.get("/api/v1/deliveries", params={"status": "dead"})
                return len(page.json()["data"]) == 5

        await _until(all_dead)
        await asyncio.sleep(0.3)
    dead = [a for a in _alerts(receiver.received) if a["type"] == "delivery.dead"]
    assert len(dead) == 1
