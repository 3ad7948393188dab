"""The worker against real HTTP receivers on loopback: retries, dead letters, timeouts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from email.utils import formatdate
from typing import Any

import pytest
from aiohttp import web

from hookyard.deliver.http import parse_retry_after
from hookyard.deliver.retry import honour_retry_after
from tests.conftest import DEADLINE, DROP, Received, basic_config, until_deadline


async def _event(hy: Any, event_id: str) -> dict[str, Any]:
    async with hy.api() as api:
        result: dict[str, Any] = (await api.get(f"/api/v1/events/{event_id}")).json()
        return result


async def _wait_status(
    hy: Any, event_id: str, status: str, timeout: float = DEADLINE
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        event = await _event(hy, event_id)
        if event["deliveries"] and event["deliveries"][0]["status"] == status:
            return event
        if time.monotonic() > deadline:
            raise AssertionError(f"delivery never became {status}: {event['deliveries']}")
        await asyncio.sleep(0.05)


async def test_fails_then_succeeds_with_the_same_webhook_id(hookyard_factory, receiver):
    answers = iter([500, 502])
    receiver.behaviour = lambda _: next(answers, 200)
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        event_id = (await hy.client.post("/in/open", content=b"retry me")).json()["id"]
        event = await _wait_status(hy, event_id, "succeeded")
    delivery = event["deliveries"][0]
    assert delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 502, 200]
    assert receiver.ids() == [event_id] * 3


async def test_exhausted_schedule_is_dead_and_visible(hookyard_factory, receiver):
    receiver.behaviour = lambda _: (503, {"x-reason": "down"})
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        event_id = (await hy.client.post("/in/open", content=b"doomed")).json()["id"]
        event = await _wait_status(hy, event_id, "dead")
    delivery = event["deliveries"][0]
    assert delivery["attempts"] == 3  # the schedule in basic_config has three entries
    assert delivery["last_status_code"] == 503
    assert all(a["error"] == "HTTP 503" for a in delivery["attempt_log"])


async def test_redirect_is_a_failure_and_not_followed(hookyard_factory, receiver):
    receiver.behaviour = lambda _: (302, {"location": receiver.url + "/elsewhere"})
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        event_id = (await hy.client.post("/in/open", content=b"moved?")).json()["id"]
        event = await _wait_status(hy, event_id, "dead")
    assert [a["status_code"] for a in event["deliveries"][0]["attempt_log"]] == [302] * 3
    assert len(receiver.received) == 3  # three attempts, never a followed redirect


async def test_a_destination_that_hangs_times_out(hookyard_factory, receiver):
    async def hang(_: Received) -> int:
        await asyncio.sleep(3)
        return 200

    receiver.behaviour = hang
    config = basic_config(receiver.url).replace('timeout = "2s"', 'timeout = "300ms"')
    async with hookyard_factory(config) as hy:
        event_id = (await hy.client.post("/in/open", content=b"slow")).json()["id"]
        event = await _wait_status(hy, event_id, "dead")
    attempts = event["deliveries"][0]["attempt_log"]
    assert all("timed out" in a["error"] for a in attempts)
    assert all(a["status_code"] is None for a in attempts)


async def test_a_destination_that_drops_the_connection_is_retried(hookyard_factory, receiver):
    calls = {"n": 0}

    async def flaky(item: Received) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            return DROP
        return 200

    receiver.behaviour = flaky
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        event_id = (await hy.client.post("/in/open", content=b"again")).json()["id"]
        event = await _wait_status(hy, event_id, "succeeded")
    first, second = event["deliveries"][0]["attempt_log"]
    assert first["status_code"] is None and first["error"]
    assert second["status_code"] == 200


async def test_unreachable_destination_is_retried_then_dead(hookyard_factory, receiver):
    config = basic_config("http://127.0.0.1:9/nothing-listens-here")
    async with hookyard_factory(config) as hy:
        event_id = (await hy.client.post("/in/open", content=b"nowhere")).json()["id"]
        event = await _wait_status(hy, event_id, "dead")
    assert all(a["error"] for a in event["deliveries"][0]["attempt_log"])


async def test_egress_policy_refuses_loopback_unless_allowed(hookyard_factory, receiver):
    config = basic_config(receiver.url).replace('allow = ["127.0.0.0/8"]', "allow = []")
    async with hookyard_factory(config) as hy:
        event_id = (await hy.client.post("/in/open", content=b"blocked")).json()["id"]
        event = await _wait_status(hy, event_id, "dead")
    attempts = event["deliveries"][0]["attempt_log"]
    assert all("egress policy" in a["error"] for a in attempts)
    assert receiver.received == []  # nothing was sent


async def test_destination_egress_allow_opens_its_own_range(hookyard_factory, receiver):
    config = basic_config(receiver.url, destination='egress_allow = ["127.0.0.1/32"]').replace(
        'allow = ["127.0.0.0/8"]', "allow = []"
    )
    async with hookyard_factory(config) as hy:
        event_id = (await hy.client.post("/in/open", content=b"allowed")).json()["id"]
        await _wait_status(hy, event_id, "succeeded")


async def _retry_wait(hy: Any, event_id: str) -> float:
    """Seconds from the first attempt to the second, which the receiver takes: at least the
    wait the first answer got (never less), and it cannot be missed while polling."""
    event = await _wait_status(hy, event_id, "succeeded")
    first, second = event["deliveries"][0]["attempt_log"][:2]
    started = [datetime.fromisoformat(a["started_at"]) for a in (first, second)]
    return (started[1] - started[0]).total_seconds()


def _refuse_once(status: int, headers: Callable[[], dict[str, str]]) -> Callable[[Any], Any]:
    """A receiver behaviour: `status` with `headers()` (made as it answers), then 200."""
    answered: list[int] = []

    def behaviour(_: Any) -> tuple[int, dict[str, str]]:
        answered.append(1)
        return (status, headers()) if len(answered) == 1 else (200, {})

    return behaviour


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        # Each upper bound only tells the right outcome from the wrong ones (the schedule,
        # the cap, the raw value) plus the attempts' own time: none is a speed to beat.
        ("3", 2.9, 5.0),  # longer than the 100 ms schedule: honoured
        ("0", 0.09, 2.0),  # shorter than the schedule: the schedule wins
        ("999999", 5.0, 60.0),  # huge: capped at schedule + retry_after_max (5 s here)
        ("soon", 0.09, 2.0),  # unusable: ignored
    ],
)
async def test_429_retry_after_is_honoured_within_a_cap(
    hookyard_factory, receiver, retry_after, low, high
):
    receiver.behaviour = _refuse_once(429, lambda: {"retry-after": retry_after})
    config = basic_config(receiver.url, destination='retry_after_max = "5s"')
    async with hookyard_factory(config) as hy:
        event_id = (await hy.client.post("/in/open", content=b"slow down")).json()["id"]
        assert low <= await _retry_wait(hy, event_id) <= high


async def test_503_retry_after_as_an_http_date(hookyard_factory, receiver):
    dates: list[float] = []

    def date() -> dict[str, str]:
        dates.append(float(int(time.time()) + 4))  # an HTTP date has whole seconds
        return {"retry-after": formatdate(dates[-1], usegmt=True)}

    receiver.behaviour = _refuse_once(503, date)
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        event_id = (await hy.client.post("/in/open", content=b"later")).json()["id"]
        event = await _wait_status(hy, event_id, "succeeded")
        second = event["deliveries"][0]["attempt_log"][1]
        # Not before the date (the schedule alone says 0.1 s after the first attempt).
        assert datetime.fromisoformat(second["started_at"]).timestamp() >= dates[0]


def test_retry_after_parsing():
    now = 1_000_000.0
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now) == 30
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now) == 0
    # RFC 9110's other two date forms, which a recipient must accept too: asctime, RFC 850.
    later = time.gmtime(now + 600)
    assert parse_retry_after(time.strftime("%a %b %e %H:%M:%S %Y", later), now) == 600
    assert parse_retry_after(time.strftime("%A, %d-%b-%y %H:%M:%S GMT", later), now) == 600
    assert parse_retry_after("", now) is None
    assert parse_retry_after("-5", now) is None
    assert parse_retry_after("Wed, 99 Foo 2026", now) is None
    assert parse_retry_after("²", now) is None  # a digit to str.isdigit(), not to float()
    assert honour_retry_after(10, 5, 3600) == 10
    assert honour_retry_after(10, 50, 3600) == 50
    assert honour_retry_after(10, 10**9, 3600) == 3610


async def test_an_attempt_that_fails_unexpectedly_is_logged_with_its_delivery(
    hookyard_factory, receiver, caplog
):
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        worker = hy.service.worker

        async def broken(*args, **kwargs):  # the one fault: what follows an attempt raises
            raise RuntimeError("destination state could not be written")

        worker.aftermath.follow = broken
        posted = await hy.client.post("/in/open", content=b"{}")
        await receiver.wait_for(1)
        for _ in until_deadline():
            if "failed unexpectedly" in caplog.text:
                break
            await asyncio.sleep(0.05)
        [record] = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
        assert record.exc_info and "could not be written" in str(record.exc_info[1])
        assert getattr(record, "event_id", None) == posted.json()["id"]


async def test_a_destination_answering_nul_bytes_is_recorded_and_retried(
    hookyard_factory, receiver
):
    """PostgreSQL text refuses NUL: an excerpt holding one must not stop the outcome's commit."""
    answers = iter([web.Response(status=500, body=b"bad\x00news")])
    receiver.behaviour = lambda _: next(answers, 200)
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        event_id = (await hy.client.post("/in/open", content=b"lies")).json()["id"]
        event = await _wait_status(hy, event_id, "succeeded")
    first, second = event["deliveries"][0]["attempt_log"]
    assert (first["status_code"], first["response_excerpt"]) == (500, "bad\ufffdnews")
    assert second["status_code"] == 200


async def test_an_answer_in_as_the_worker_stops_is_recorded_not_given_back(
    hookyard_factory, receiver
):
    """The destination answered 2xx, the record is still on its way to the database, and the
    shutdown grace runs out: the delivery must end succeeded. It was given back first, so the
    record matched nothing, the delivery stayed pending and went again after a restart."""
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        worker, store = hy.service.worker, hy.service.state.store
        gate = asyncio.Event()
        finish = store.finish

        async def slow_finish(outcomes):  # the writer is busy elsewhere
            await gate.wait()
            return await finish(outcomes)

        store.finish = slow_finish
        event_id = (await hy.client.post("/in/open", content=b"{}")).json()["id"]
        await receiver.wait_for(1)
        for _ in until_deadline():  # the answer is in, its record waits
            if any(worker._answered.values()):
                break
            await asyncio.sleep(0.01)
        stopping = asyncio.create_task(worker.stop(grace=0.2))
        await asyncio.sleep(0.5)  # the grace ran out: what it gives back is given back
        gate.set()
        await stopping
        await _wait_status(hy, event_id, "succeeded")


async def test_a_reload_that_changes_the_egress_policy_lets_attempts_under_way_end(
    hookyard_factory, receiver, tmp_path
):
    """The destination's old connection pool closed at once: an attempt under way was cut off
    after the receiver had the request, recorded as failed and sent again."""

    async def slow(_: Received) -> int:
        await asyncio.sleep(1.0)
        return 204

    receiver.behaviour = slow
    config = basic_config(receiver.url)
    async with hookyard_factory(config) as hy:
        event_id = (await hy.client.post("/in/open", content=b"under way")).json()["id"]
        await receiver.wait_for(1)  # the receiver has it and takes its time to answer
        widened = config.replace(
            'allow = ["127.0.0.0/8"]', 'allow = ["127.0.0.0/8", "10.9.0.0/16"]'
        )
        (tmp_path / "hookyard.toml").write_text(widened)
        assert hy.service.reload()
        # The next attempt to the destination builds the new pool.
        await hy.client.post("/in/open", content=b"next")
        event = await _wait_status(hy, event_id, "succeeded")
    attempts = [(a["status_code"], a["error"]) for a in event["deliveries"][0]["attempt_log"]]
    assert attempts == [(204, None)]
    assert receiver.ids().count(event_id) == 1
