"""Querying the log with filters, replaying events (one, or in bulk), retrying deliveries."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.conftest import DEADLINE, Received, basic_config, until_deadline

STRIPE_LIKE = """
[sources.shop]
verify = "none"
type_field = "type"
id_header = "x-event-id"

[[routes]]
source = "shop"
destination = "app"
"""


async def _ids(api: Any, **params: Any) -> list[str]:
    page = (await api.get("/api/v1/events", params=params)).json()
    assert "data" in page, page
    return [e["id"] for e in page["data"]]


async def test_filters_on_type_origin_status_destination_id_and_fields(hookyard_factory, receiver):
    receiver.behaviour = lambda item: 500 if b"fail" in item.body else 204
    async with hookyard_factory(basic_config(receiver.url) + STRIPE_LIKE) as hy:
        posted = {}
        for name, body in [
            ("paid", {"type": "invoice.paid", "data": {"status": "paid", "amount": 5}}),
            ("failed", {"type": "invoice.failed", "data": {"status": "fail", "amount": 7}}),
            ("charge", {"type": "charge.ok", "data": {"live": True}}),
        ]:
            answer = await hy.client.post(
                "/in/shop", content=json.dumps(body).encode(), headers={"x-event-id": name}
            )
            posted[name] = answer.json()["id"]
        await receiver.wait_for(3 + 2)  # the failing one is tried three times
        await asyncio.sleep(0.3)
        async with hy.api() as api:
            assert set(await _ids(api, type="invoice.*")) == {posted["paid"], posted["failed"]}
            assert await _ids(api, provider_event_id="charge") == [posted["charge"]]
            assert await _ids(api, **{"field.data.status": "paid"}) == [posted["paid"]]
            assert await _ids(api, **{"field.data.amount": "7"}) == [posted["failed"]]
            assert await _ids(api, **{"field.data.live": "true"}) == [posted["charge"]]
            # Integers past 64 bits (the databases' integers): no match, not a 500.
            for huge in ("9223372036854775808", "-9223372036854775809", "1" * 40):
                assert await _ids(api, **{"field.data.amount": huge}) == []
            assert await _ids(api, status="dead") == [posted["failed"]]
            assert len(await _ids(api, status="succeeded", destination="app")) == 2
            assert await _ids(api, destination="nowhere") == []
            assert len(await _ids(api, origin="webhook")) == 3
            bad = await api.get("/api/v1/events", params={"status": "lost"})
            assert bad.status_code == 422


async def test_replay_one_event_with_the_same_webhook_id(hookyard_factory, receiver):
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        event_id = (await hy.client.post("/in/open", content=b"again")).json()["id"]
        await receiver.wait_for(1)
        async with hy.api() as api:
            replayed = await api.post(f"/api/v1/events/{event_id}/replay")
            assert replayed.json() == {"event_id": event_id, "deliveries": 1}
            await receiver.wait_for(2)
            deliveries = (await api.get(f"/api/v1/events/{event_id}")).json()["deliveries"]
            missing = await api.post("/api/v1/events/evt_nope/replay")
            assert missing.status_code == 404
            unknown = await api.post(
                f"/api/v1/events/{event_id}/replay", params={"destination": "nope"}
            )
            assert unknown.status_code == 422
    assert receiver.ids() == [event_id, event_id]
    assert [d["replay"] for d in deliveries] == [False, True]


async def test_retry_a_dead_delivery(hookyard_factory, receiver):
    receiver.behaviour = lambda _: 500
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        event_id = (await hy.client.post("/in/open", content=b"x")).json()["id"]
        async with hy.api() as api:
            deadline = time.monotonic() + DEADLINE
            while True:
                page = (await api.get("/api/v1/deliveries", params={"status": "dead"})).json()
                if page["data"]:
                    break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            delivery = page["data"][0]
            assert delivery["event_id"] == event_id
            receiver.behaviour = None
            retried = await api.post(f"/api/v1/deliveries/{delivery['id']}/retry")
            assert retried.status_code == 200
            # Due at once: the worker may already have claimed it when we read it back.
            assert retried.json()["status"] in ("pending", "in_flight", "succeeded")
            await receiver.wait_for(4)
            await asyncio.sleep(0.2)
            attempts = await api.get(
                "/api/v1/attempts", params={"delivery_id": delivery["id"], "failed": "true"}
            )
            assert [a["status_code"] for a in attempts.json()["data"]] == [500, 500, 500]
            assert attempts.json()["data"][0]["event_id"] == event_id
            ok = await api.get("/api/v1/attempts", params={"destination": "app", "failed": "false"})
            assert [a["status_code"] for a in ok.json()["data"]] == [204]
            again = await api.post(f"/api/v1/deliveries/{delivery['id']}/retry")
            assert again.status_code == 409
            assert "replay" in again.json()["message"]
            assert (await api.post("/api/v1/deliveries/dlv_nope/retry")).status_code == 404


@pytest.mark.slow
async def test_bulk_replay_of_ten_thousand_events_with_a_dry_run(hookyard_factory, receiver):
    count = 10_000
    config = basic_config(receiver.url, destination="concurrency = 64")
    async with hookyard_factory(config) as hy:
        async with hy.api() as api:
            await api.post("/api/v1/destinations/app/pause")  # keep the first round queued

        async def post(start: int) -> None:
            for i in range(start, count, 32):
                assert (await hy.client.post("/in/open", content=f"{i}".encode())).is_success

        await asyncio.gather(*(post(s) for s in range(32)))
        async with hy.api() as api:
            dry = await api.post("/api/v1/events/replay", json={"source": "open", "dry_run": True})
            assert dry.json() == {
                "matched": count,
                "replayed": 0,
                "skipped": 0,
                "deliveries": 0,
                "next_cursor": None,
            }
            assert receiver.received == []
            cursor, total = None, 0
            while True:
                body = {"source": "open", "limit": 3000, "cursor": cursor}
                page = (await api.post("/api/v1/events/replay", json=body)).json()
                total += page["deliveries"]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert total == count
            await api.post("/api/v1/destinations/app/resume")
        await receiver.wait_for(2 * count, timeout=120)
    ids = receiver.ids()
    assert len(set(ids)) == count
    assert all(ids.count(i) == 2 for i in list(set(ids))[:100])  # original + replay


async def test_field_filters_match_as_the_readme_says_on_each_backend(
    hookyard_factory, receiver, backend
):
    """Text or the JSON scalar the value spells; the backends' documented differences at the
    edges (SQLite: 5.0 is 5 and 1 is true; PostgreSQL compares the field's JSON text)."""
    bodies = {
        "int": b'{"x": 5}',
        "float": b'{"x": 5.0}',
        "text": b'{"x": "5"}',
        "true": b'{"x": true}',
        "one": b'{"x": 1}',
    }
    async with hookyard_factory(basic_config(receiver.url)) as hy:
        names = {}
        for name, body in bodies.items():
            names[(await hy.client.post("/in/open", content=body)).json()["id"]] = name
        async with hy.api() as api:
            found = {
                value: sorted(names[i] for i in await _ids(api, **{"field.x": value}))
                for value in ("5", "5.0", "true", "1")
            }
    if backend == "sqlite":
        assert found == {
            "5": ["float", "int", "text"],
            "5.0": ["float", "int"],
            "true": ["one", "true"],
            "1": ["one", "true"],
        }
    else:
        assert found == {"5": ["int", "text"], "5.0": ["float"], "true": ["true"], "1": ["one"]}


@pytest.mark.sqlite_only
async def test_indexed_payload_fields_are_built_used_and_dropped(tmp_path, receiver):
    from hookyard.models import EventFilter
    from hookyard.store.queries import event_where
    from hookyard.store.sqlite import connect
    from tests.conftest import run_hookyard, write_config

    config = basic_config(receiver.url).replace(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\nindexed_fields = ["data.customer"]', 1
    )
    path = write_config(tmp_path, config)
    async with run_hookyard(path) as hy:
        for customer in ("cus_1", "cus_2", "cus_1"):
            body = json.dumps({"data": {"customer": customer}}).encode()
            await hy.client.post("/in/open", content=body)
        async with hy.api() as api:
            found = await _ids(api, **{"field.data.customer": "cus_1"})
        assert len(found) == 2
    db = connect(tmp_path / "hookyard.db")
    clause, params = event_where(db, EventFilter(fields=(("data.customer", "cus_1"),)))
    plan = " ".join(
        row[3]
        for row in db.execute(
            f"EXPLAIN QUERY PLAN SELECT e.id FROM events e WHERE {clause}", params
        )
    )
    assert "USING INDEX events_field_" in plan
    db.close()
    path.write_text(config.replace('indexed_fields = ["data.customer"]', ""))
    async with run_hookyard(path):
        pass  # a field no longer configured loses its index
    db = connect(tmp_path / "hookyard.db")
    left = db.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'events_field_%'")
    assert left.fetchone()[0] == 0
    db.close()


@pytest.mark.postgres_only
async def test_indexed_payload_fields_on_postgres_are_built_used_and_dropped(tmp_path, receiver):
    from tests.conftest import query_database, run_hookyard, write_config

    config = basic_config(receiver.url).replace(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\nindexed_fields = ["data.customer"]', 1
    )
    path = write_config(tmp_path, config)
    async with run_hookyard(path) as hy:
        for body in (b'{"data": {"customer": "cus_1"}}', b"not json", b'{"data": {"customer": 5}}'):
            assert (await hy.client.post("/in/open", content=body)).status_code == 200
        async with hy.api() as api:
            assert len(await _ids(api, **{"field.data.customer": "cus_1"})) == 1
            assert len(await _ids(api, **{"field.data.customer": "5"})) == 1
    indexes = "SELECT indexdef FROM pg_indexes WHERE indexname LIKE 'events_field_%'"
    [(definition,)] = query_database(tmp_path, indexes + " AND schemaname = current_schema()")
    assert "hookyard_json(payload)" in definition
    path.write_text(config.replace('indexed_fields = ["data.customer"]', ""))
    async with run_hookyard(path):
        pass  # a field no longer configured loses its index
    assert query_database(tmp_path, indexes + " AND schemaname = current_schema()") == []


@pytest.mark.parametrize(
    "dead",
    [{"status": "dead"}, {"status": "dead", "destination": "flaky"}],
    ids=["every destination", "one destination"],
)
async def test_replaying_what_died_sends_it_only_where_it_died_and_only_once(
    hookyard_factory, receiver, dead
):
    """With a destination too, it narrows the dead deliveries: it added a delivery there
    whenever none was in that status, so each run of the same replay sent it again."""
    failing = True
    receiver.behaviour = lambda item: 500 if failing and item.path.endswith("/flaky") else 204
    flaky = f"""
        [destinations.flaky]
        url = "{receiver.url}/flaky"
        retry_schedule = ["0", "100ms"]
        jitter = 0

        [[routes]]
        source = "open"
        destination = "flaky"
    """
    async with hookyard_factory(basic_config(receiver.url, extra=flaky)) as hy, hy.api() as api:
        await hy.client.post("/in/open", content=b"{}")
        await receiver.wait_for(1 + 2)  # app once, flaky twice: dead
        for _ in until_deadline():
            if await _ids(api, status="dead"):
                break
            await asyncio.sleep(0.05)
        failing = False
        first = (await api.post("/api/v1/events/replay", json=dead)).json()
        assert (first["replayed"], first["deliveries"]) == (1, 1)  # to flaky alone
        await receiver.wait_for(4)
        assert receiver.received[-1].path.endswith("/flaky")
        for _ in until_deadline():  # the replay's success is recorded
            deliveries = (await api.get("/api/v1/deliveries")).json()["data"]
            if sum(d["status"] == "succeeded" for d in deliveries) == 2:
                break
            await asyncio.sleep(0.05)
        again = (await api.post("/api/v1/events/replay", json=dead)).json()
        # It died, then arrived: nothing to send again.
        assert (again["replayed"], again["skipped"], again["deliveries"]) == (0, 1, 0)


async def test_bulk_replay_refuses_unknown_keys_and_what_is_still_on_its_way(
    hookyard_factory, receiver
):
    async with hookyard_factory(basic_config(receiver.url)) as hy, hy.api() as api:
        for status in ("paid", "open"):
            body = json.dumps({"data": {"status": status}}).encode()
            assert (await hy.client.post("/in/open", content=body)).status_code == 200
        # A payload filter written as the list's query takes it, and a misspelt key.
        for body in ({"field.data.status": "paid"}, {"sorce": "github"}):
            answer = await api.post("/api/v1/events/replay", json={**body, "dry_run": True})
            assert answer.status_code == 422, answer.json()
            assert "not permitted" in answer.json()["message"]
        right = {"fields": {"data.status": "paid"}, "dry_run": True}
        assert (await api.post("/api/v1/events/replay", json=right)).json()["matched"] == 1
        # Deliveries still on their way: a replay would be a second copy (another each run).
        for status in ("pending", "in_flight", "retrying", "held"):
            answer = await api.post("/api/v1/events/replay", json={"status": status})
            assert answer.status_code == 422, answer.json()
            assert "still on their way" in answer.json()["message"]


async def test_cursors_that_no_page_gave_are_refused(hookyard_factory, receiver):
    """A mangled cursor gave the first page again (a script paging on it never ended), another
    list's id an empty page."""
    async with hookyard_factory(basic_config(receiver.url)) as hy, hy.api() as api:
        for _ in range(2):
            assert (await hy.client.post("/in/open", content=b"{}")).status_code == 200
        page = (await api.get("/api/v1/events", params={"limit": 1})).json()
        following = await api.get("/api/v1/events", params={"cursor": page["next_cursor"]})
        assert following.status_code == 200
        delivery = "dlv_" + page["next_cursor"][4:]
        for path, cursor in [
            ("/api/v1/events", "not-a-cursor"),
            ("/api/v1/events", delivery),
            ("/api/v1/deliveries", page["next_cursor"]),
            ("/api/v1/attempts", "x"),
            ("/api/v1/audit", "x"),
            ("/api/v1/rejected", "x"),
        ]:
            answer = await api.get(path, params={"cursor": cursor})
            assert answer.status_code == 422, (path, answer.text)
            assert answer.json()["message"].startswith("cursor: expected the next_cursor")
        bulk = await api.post("/api/v1/events/replay", json={"cursor": "x", "dry_run": True})
        assert bulk.status_code == 422


async def test_a_time_beyond_the_ids_range_means_no_end(hookyard_factory, receiver):
    async with hookyard_factory(basic_config(receiver.url)) as hy, hy.api() as api:
        event_id = (await hy.client.post("/in/open", content=b"{}")).json()["id"]
        assert await _ids(api, until="9999-12-31") == [event_id]
        assert await _ids(api, since="9999-12-31") == []
        # ISO 8601's basic form, not unix seconds in 1970.
        assert await _ids(api, since="20990101") == []
        assert await _ids(api, since="20200101") == [event_id]
        answer = await api.get("/api/v1/events", params={"since": "-5"})
        assert answer.status_code == 422


async def test_bulk_replay_counts_what_it_could_not_send_as_skipped(hookyard_factory, receiver):
    """Retention removed the payload: alone, its replay answers 410; in bulk it was counted as
    replayed though nothing was sent."""
    extra = '[retention]\npayloads = "1s"\nevents = "1h"\ninterval = "1h"\n'
    async with hookyard_factory(basic_config(receiver.url, extra=extra)) as hy, hy.api() as api:
        event_id = (await hy.client.post("/in/open", content=b"{}")).json()["id"]
        await receiver.wait_for(1)
        await asyncio.sleep(1.5)
        assert (await api.post("/api/v1/retention/sweep")).status_code == 200
        assert (await api.post(f"/api/v1/events/{event_id}/replay")).status_code == 410
        bulk = (await api.post("/api/v1/events/replay", json={"source": "open"})).json()
        assert (bulk["replayed"], bulk["skipped"], bulk["deliveries"]) == (0, 1, 0)


async def test_a_replay_to_an_ordered_destination_the_events_never_went_to_keeps_order(
    hookyard_factory, receiver
):
    """The new deliveries took their ordering key from an earlier delivery to that destination:
    with none, they had no key, and went out at once, in any order."""
    in_flight: dict[str, int] = {}
    most: dict[str, int] = {}

    async def answer(item: Received) -> int:
        if not item.path.endswith("/ordered"):
            return 204
        customer = json.loads(item.body)["customer"]
        in_flight[customer] = in_flight.get(customer, 0) + 1
        most[customer] = max(most.get(customer, 0), in_flight[customer])
        await asyncio.sleep(0.2)
        in_flight[customer] -= 1
        return 204

    receiver.behaviour = answer
    ordered = f"""
        [destinations.ordered]
        url = "{receiver.url}/ordered"
        ordering = "field:customer"
        concurrency = 8
    """
    async with hookyard_factory(basic_config(receiver.url, extra=ordered)) as hy, hy.api() as api:
        for n in range(6):
            body = json.dumps({"customer": "ab"[n % 2], "n": n}).encode()
            assert (await hy.client.post("/in/open", content=body)).status_code == 200
        await receiver.wait_for(6)  # to app, the one routed destination
        answer_ = await api.post("/api/v1/events/replay", json={"source": "open", "to": "ordered"})
        assert answer_.json()["deliveries"] == 6
        await receiver.wait_for(12)
    sent = [json.loads(r.body) for r in receiver.received if r.path.endswith("/ordered")]
    assert most == {"a": 1, "b": 1}
    for customer in "ab":
        numbers = [body["n"] for body in sent if body["customer"] == customer]
        assert numbers == sorted(numbers)


async def test_replaying_what_died_to_another_destination_sends_it_there(
    hookyard_factory, receiver
):
    """`to` names where a replay goes, instead of the earlier destinations, with a status too."""
    receiver.behaviour = lambda item: 204 if item.path.endswith("/other") else 500
    other = f"""
        [destinations.other]
        url = "{receiver.url}/other"
    """
    config = basic_config(receiver.url, extra=other)
    async with hookyard_factory(config) as hy, hy.api() as api:
        event_id = (await hy.client.post("/in/open", content=b"{}")).json()["id"]
        for _ in until_deadline():
            if await _ids(api, status="dead"):
                break
            await asyncio.sleep(0.05)
        body = {"status": "dead", "to": "other"}
        answer = (await api.post("/api/v1/events/replay", json=body)).json()
        assert (answer["replayed"], answer["deliveries"]) == (1, 1)
        await receiver.wait_for(3 + 1)  # app: three attempts, then other once
        assert receiver.received[-1].path.endswith("/other")
        assert receiver.ids()[-1] == event_id
