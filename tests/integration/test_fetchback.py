"""Fetch-back (Mollie): a hint is stored at once, the worker fetches what it names from the
provider's API (a fake Mollie on loopback here), and the fetched object is the event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

import hookyard.fetchback
import hookyard.store.queries
from tests.conftest import DEADLINE, Receiver, basic_config, query_database

API_KEY = "test_dHar4XY7LxsDOtmnkVtjNVWXLSlXsM"


@dataclass
class FakeMollie:
    url: str = ""
    payments: dict[str, dict[str, object]] = field(default_factory=dict)
    failures: int = 0  # answer 500 this many times first
    seen: list[str] = field(default_factory=list)


@pytest.fixture
async def mollie() -> AsyncIterator[FakeMollie]:
    fake = FakeMollie()

    async def payment(request: web.Request) -> web.Response:
        fake.seen.append(request.match_info["id"])
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return web.json_response({"status": 401, "title": "Unauthorized"}, status=401)
        if fake.failures:
            fake.failures -= 1
            return web.json_response({"status": 500}, status=500)
        found = fake.payments.get(request.match_info["id"])
        if found is None:
            return web.json_response({"status": 404, "title": "Not Found"}, status=404)
        return web.json_response(found)

    app = web.Application()
    app.router.add_get("/v2/payments/{id}", payment)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    yield fake
    await runner.cleanup()


def _config(receiver: Receiver, fetch_url: str) -> str:
    return basic_config(
        receiver.url,
        extra=f"""
[sources.mollie]
verify = "mollie"
secrets = ["{API_KEY}"]
fetch_url = "{fetch_url}"

[[routes]]
source = "mollie"
destination = "app"

[worker]
poll_interval = "100ms"
""",
    )


FORM = {"content-type": "application/x-www-form-urlencoded"}


async def _eventually(check, timeout: float = DEADLINE) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


async def test_a_hint_becomes_the_fetched_payment_once_per_status(
    hookyard_factory, receiver: Receiver, mollie: FakeMollie
) -> None:
    mollie.payments["tr_WDqYK6vllg"] = {"id": "tr_WDqYK6vllg", "status": "open", "amount": "10.00"}
    async with hookyard_factory(_config(receiver, mollie.url)) as hy:
        answer = await hy.client.post("/in/mollie", content=b"id=tr_WDqYK6vllg", headers=FORM)
        assert answer.status_code == 200 and answer.json()["pending"] is True
        assert (
            answer.json()["id"] == answer.json()["request_id"]
        )  # {"id", "pending"}, as documented
        await receiver.wait_for(1)
        first = receiver.received[0]
        assert json.loads(first.body) == mollie.payments["tr_WDqYK6vllg"]
        assert first.headers["hookyard-event-type"] == "payment.open"
        assert first.headers["hookyard-provider-event-id"] == "tr_WDqYK6vllg"

        # Mollie calls again for the same state: one more fetch, no second event.
        await hy.client.post("/in/mollie", content=b"id=tr_WDqYK6vllg", headers=FORM)
        await _eventually(lambda: _true_if(len(mollie.seen) == 2))
        mollie.payments["tr_WDqYK6vllg"]["status"] = "paid"
        await hy.client.post("/in/mollie", content=b"id=tr_WDqYK6vllg", headers=FORM)
        await receiver.wait_for(2)
        assert receiver.received[1].headers["hookyard-event-type"] == "payment.paid"
        # A refund leaves the status `paid` but changes the payment: a new event too.
        mollie.payments["tr_WDqYK6vllg"]["amountRefunded"] = "10.00"
        await hy.client.post("/in/mollie", content=b"id=tr_WDqYK6vllg", headers=FORM)
        await receiver.wait_for(3)
        assert json.loads(receiver.received[2].body)["amountRefunded"] == "10.00"
        await asyncio.sleep(0.3)
        assert len(receiver.received) == 3
        async with hy.api() as api:
            events = (await api.get("/api/v1/events", params={"source": "mollie"})).json()["data"]
            assert {e["origin"] for e in events} == {"fetch-back"}
            assert len(events) == 3
        # The repeated hint's request went with its duplicate: one stored request per event.
        requests = query_database(hy.service.gateway.base_dir, "SELECT state FROM requests")
        assert sorted(requests) == [("accepted",)] * 3


async def _true_if(value: bool) -> bool:
    return value


async def test_an_unknown_id_is_answered_200_and_fails_visibly(
    hookyard_factory, receiver: Receiver, mollie: FakeMollie, tmp_path
) -> None:
    async with hookyard_factory(_config(receiver, mollie.url)) as hy:
        answer = await hy.client.post("/in/mollie", content=b"id=tr_nosuchpay", headers=FORM)
        assert answer.status_code == 200  # no oracle: the caller learns nothing
        state = "SELECT state, last_error FROM requests WHERE source = 'mollie'"

        async def failed() -> bool:
            rows = query_database(tmp_path, state)
            return bool(rows) and rows[0][0] == "failed"

        await _eventually(failed)
        assert "Mollie knows no tr_nosuchpay" in query_database(tmp_path, state)[0][1]
        async with hy.api() as api:

            async def listed() -> bool:
                rows = (await api.get("/api/v1/rejected", params={"source": "mollie"})).json()
                return any(r["code"] == "fetch_failed" for r in rows["data"])

            await _eventually(listed)
    assert receiver.received == []


async def test_a_failing_api_is_retried(
    hookyard_factory, receiver: Receiver, mollie: FakeMollie, monkeypatch
) -> None:
    monkeypatch.setattr(hookyard.fetchback, "SCHEDULE", (0.2, 0.2, 0.2))
    mollie.failures = 2
    mollie.payments["tr_retry123"] = {"id": "tr_retry123", "status": "paid"}
    async with hookyard_factory(_config(receiver, mollie.url)) as hy:
        await hy.client.post("/in/mollie", content=b"id=tr_retry123", headers=FORM)
        await receiver.wait_for(1)
    assert mollie.seen == ["tr_retry123"] * 3


@pytest.mark.parametrize(
    "body", [b"id=cst_8wmqcHMN4U", b"id=tr_x&id=tr_y", b'{"id": "tr_abc"}', b"", b"id=tr_a%00"]
)
async def test_malformed_hints_are_refused(hookyard_factory, receiver, mollie, body) -> None:
    async with hookyard_factory(_config(receiver, mollie.url)) as hy:
        answer = await hy.client.post("/in/mollie", content=body, headers=FORM)
        assert answer.status_code == 401 and answer.json()["error"] == "not_a_hint"
    assert mollie.seen == []


async def test_fetches_obey_the_egress_policy(
    hookyard_factory, receiver: Receiver, tmp_path
) -> None:
    # 10.0.0.1 is outside the policy (loopback only): refused before any connection is tried.
    async with hookyard_factory(_config(receiver, "http://10.0.0.1")) as hy:
        await hy.client.post("/in/mollie", content=b"id=tr_egress1", headers=FORM)
        query = "SELECT last_error FROM requests WHERE source = 'mollie'"

        async def refused() -> bool:
            rows = query_database(tmp_path, query)
            return bool(rows) and "EgressRefused" in (rows[0][0] or "")

        await _eventually(refused)


async def test_fetches_are_rate_limited_per_source(
    hookyard_factory, receiver: Receiver, mollie: FakeMollie
) -> None:
    for n in range(6):
        mollie.payments[f"tr_rate{n}"] = {"id": f"tr_rate{n}", "status": "paid"}
    config = _config(receiver, mollie.url).replace(
        f'fetch_url = "{mollie.url}"', f'fetch_url = "{mollie.url}"\nfetch_rate = "2/s"'
    )
    async with hookyard_factory(config) as hy:
        started = asyncio.get_running_loop().time()
        for n in range(6):
            await hy.client.post("/in/mollie", content=f"id=tr_rate{n}".encode(), headers=FORM)
        await receiver.wait_for(6)
        elapsed = asyncio.get_running_loop().time() - started
    # A bucket of 2 (one second's worth), then 2 a second: the last of 6 waits about 2 s.
    assert elapsed >= 1.5, elapsed
    assert len(mollie.seen) == 6


# -- bounds on what forged hints can do, orphaned hints, metrics ---------------------------------

UNREACHABLE = "http://127.0.0.1:9"  # no worker fetches from it in the tests that use it


def _no_worker(config: str) -> str:
    """The config for a process without the worker role: hints are stored, nobody fetches."""
    return config.replace(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\nroles = ["ingest", "api"]'
    )


async def _metrics(hy) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    async with hy.api() as api:
        answer = await api.get("/metrics")
    assert answer.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


PENDING = "SELECT id FROM requests WHERE source = 'mollie' AND state = 'pending' ORDER BY id"


async def test_a_hint_already_waiting_is_answered_as_that_one_not_stored_again(
    hookyard_factory, receiver: Receiver, tmp_path
) -> None:
    async with hookyard_factory(_no_worker(_config(receiver, UNREACHABLE))) as hy:
        first = await hy.client.post("/in/mollie", content=b"id=tr_merged1", headers=FORM)
        again = await hy.client.post("/in/mollie", content=b"id=tr_merged1", headers=FORM)
        other = await hy.client.post("/in/mollie", content=b"id=tr_merged2", headers=FORM)
        assert first.status_code == again.status_code == other.status_code == 200
        assert again.json() == first.json()  # the same pending request
        assert other.json()["id"] != first.json()["id"]
        pending = query_database(tmp_path, PENDING)
        assert pending == sorted([(first.json()["id"],), (other.json()["id"],)])
        metrics = await _metrics(hy)
    merged = ("hookyard_ingest_total", (("outcome", "hint_merged"), ("source", "mollie")))
    assert metrics[merged] == 1


async def test_past_its_cap_a_source_refuses_new_hints_with_503_and_retry_after(
    hookyard_factory, receiver: Receiver, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(hookyard.fetchback, "MAX_PENDING", 3)
    async with hookyard_factory(_no_worker(_config(receiver, UNREACHABLE))) as hy:
        kept = []
        for n in range(3):
            answer = await hy.client.post(
                "/in/mollie", content=f"id=tr_cap{n}".encode(), headers=FORM
            )
            assert answer.status_code == 200
            kept.append(answer.json()["id"])
        refused = await hy.client.post("/in/mollie", content=b"id=tr_cap3", headers=FORM)
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"] == "unavailable"
        # A hint already waiting is still answered: it costs nothing more.
        repeat = await hy.client.post("/in/mollie", content=b"id=tr_cap0", headers=FORM)
        assert repeat.status_code == 200 and repeat.json()["id"] == kept[0]
        # Another source's hints are not held back by this one's backlog.
        assert (await hy.client.post("/in/open", content=b"{}")).status_code == 200
        assert query_database(tmp_path, PENDING) == [(i,) for i in sorted(kept)]
        metrics = await _metrics(hy)
    assert metrics[("hookyard_pending_hints", (("source", "mollie"),))] == 3
    unavailable = ("hookyard_ingest_total", (("outcome", "unavailable"), ("source", "mollie")))
    assert metrics[unavailable] == 1


async def test_fetches_are_counted_by_source_and_outcome(
    hookyard_factory, receiver: Receiver, mollie: FakeMollie, monkeypatch
) -> None:
    monkeypatch.setattr(hookyard.fetchback, "SCHEDULE", (0.2, 0.2, 0.2))
    mollie.payments["tr_counted1"] = {"id": "tr_counted1", "status": "paid"}
    mollie.payments["tr_counted2"] = {"id": "tr_counted2", "status": "open"}

    def fetches(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
        return {
            dict(labels)["outcome"]: value
            for (name, labels), value in metrics.items()
            if name == "hookyard_fetches_total" and dict(labels)["source"] == "mollie"
        }

    async with hookyard_factory(_config(receiver, mollie.url)) as hy:
        await hy.client.post("/in/mollie", content=b"id=tr_counted1", headers=FORM)
        await receiver.wait_for(1)
        await hy.client.post("/in/mollie", content=b"id=tr_counted1", headers=FORM)  # unchanged
        await hy.client.post("/in/mollie", content=b"id=tr_nosuchpay", headers=FORM)  # 404
        await _eventually(lambda: _true_if(len(mollie.seen) == 3))
        mollie.failures = 1  # the next fetch gets a 500, then is retried
        await hy.client.post("/in/mollie", content=b"id=tr_counted2", headers=FORM)
        await receiver.wait_for(2)
        expected = {"ok": 2, "duplicate": 1, "failed": 1, "retry": 1}

        async def counted() -> bool:
            return fetches(await _metrics(hy)) == expected

        await _eventually(counted)


async def test_hints_of_a_source_that_no_longer_fetches_fail_visibly(
    hookyard_factory, receiver: Receiver, tmp_path, monkeypatch
) -> None:
    # The wait that lets a source come back (an hour) is cut to nothing here.
    monkeypatch.setattr(hookyard.store.queries, "ORPHANED_AFTER", 0.0)
    async with hookyard_factory(_no_worker(_config(receiver, UNREACHABLE))) as hy:
        answer = await hy.client.post("/in/mollie", content=b"id=tr_orphan1", headers=FORM)
        assert answer.status_code == 200
    # The source is removed from the config; the worker runs again.
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        query = "SELECT state, last_error FROM requests WHERE source = 'mollie'"

        async def failed() -> bool:
            return query_database(tmp_path, query)[0][0] == "failed"

        await _eventually(failed)
        assert "no longer fetches hints" in query_database(tmp_path, query)[0][1]
        async with hy.api() as api:  # the rejected log is written off the commit path

            async def listed() -> bool:
                rows = (await api.get("/api/v1/rejected", params={"source": "mollie"})).json()
                return any(
                    r["code"] == "fetch_failed" and answer.json()["id"] in r["reason"]
                    for r in rows["data"]
                )

            await _eventually(listed)
        metrics = await _metrics(hy)
    assert metrics[("hookyard_fetches_total", (("outcome", "failed"), ("source", "mollie")))] == 1
    assert ("hookyard_pending_hints", (("source", "mollie"),)) not in metrics
