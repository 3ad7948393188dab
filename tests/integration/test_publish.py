"""Applications publish events into a source of kind `api`."""

from __future__ import annotations

import asyncio
import threading

from tests.conftest import DEADLINE, basic_config, until_deadline

API_SOURCE = """
[sources.orders]
kind = "api"

[[routes]]
source = "orders"
destination = "app"
types = ["order.*"]
"""


async def test_publish_idempotency_and_routing(hookyard_factory, receiver):
    async with hookyard_factory(basic_config(receiver.url) + API_SOURCE) as hy:
        async with hy.api() as api:
            made = await api.post(
                "/api/v1/tokens", json={"name": "shop", "scope": "publish:orders"}
            )
        token = {"authorization": f"Bearer {made.json()['token']}"}
        headers = {
            **token,
            "content-type": "application/json",
            "hookyard-event-type": "order.created",
            "idempotency-key": "order-42",
        }
        body = b'{"order": 42,  "total": 9.5}'
        first = await hy.client.post("/api/v1/sources/orders/events", content=body, headers=headers)
        assert first.status_code == 201
        assert first.json()["duplicate"] is False
        repeat = await hy.client.post(
            "/api/v1/sources/orders/events", content=body, headers=headers
        )
        assert repeat.status_code == 200
        assert repeat.json() == {"id": first.json()["id"], "duplicate": True}
        reused = await hy.client.post(
            "/api/v1/sources/orders/events", content=b'{"order": 43}', headers=headers
        )
        assert reused.status_code == 409
        assert reused.json()["error"] == "idempotency_key_reused"

        # Without a key every call is a new event; an unrouted type is stored, not delivered.
        other = {**token, "hookyard-event-type": "audit.note"}
        a = await hy.client.post("/api/v1/sources/orders/events", content=b"x", headers=other)
        b = await hy.client.post("/api/v1/sources/orders/events", content=b"x", headers=other)
        assert a.json()["id"] != b.json()["id"]

        # A publish token reaches its own source only, and reads nothing.
        elsewhere = await hy.client.post("/api/v1/sources/open/events", content=b"x", headers=token)
        assert elsewhere.status_code == 403
        assert (await hy.client.get("/api/v1/events", headers=token)).status_code == 403
        # An api source takes no webhooks, and a webhook source takes no publishing.
        # Answered as a name that is none: the public endpoint tells no internal sources.
        webhook = await hy.client.post("/in/orders", content=b"x")
        nothing = await hy.client.post("/in/no-such-source", content=b"x")
        assert webhook.status_code == nothing.status_code == 404
        assert webhook.json()["message"] == nothing.json()["message"].replace(
            "no-such-source", "orders"
        )
        async with hy.api() as api:
            not_api = await api.post("/api/v1/sources/open/events", content=b"x")
            assert not_api.status_code == 404
            event = (await api.get(f"/api/v1/events/{first.json()['id']}")).json()
        await receiver.wait_for(1)
    assert event["origin"] == "publish" and event["event_type"] == "order.created"
    got = receiver.received[0]
    assert got.body == body
    assert got.headers["webhook-id"] == first.json()["id"]
    assert len(receiver.received) == 1


async def test_publish_refuses_oversized_bodies_and_reserved_names(hookyard_factory, receiver):
    config = (basic_config(receiver.url) + API_SOURCE).replace(
        'kind = "api"', 'kind = "api"\nmax_body = 100', 1
    )
    async with hookyard_factory(config) as hy, hy.api() as api:
        big = await api.post("/api/v1/sources/orders/events", content=b"x" * 101)
        assert big.status_code == 413
        assert big.json()["error"] == "body_too_large"

        async def chunks():
            for _ in range(5):
                yield b"y" * 50

        streamed = await api.post("/api/v1/sources/orders/events", content=chunks())
        assert streamed.status_code == 413
        reserved = await api.post(
            "/api/v1/tokens", json={"name": "admin (configured)", "scope": "read"}
        )
        assert reserved.status_code == 422
        useless = await api.post("/api/v1/tokens", json={"name": "x", "scope": "publish:open"})
        assert useless.status_code == 422  # open is a webhook source: nothing to publish to


async def test_a_retry_is_told_from_a_reuse_after_retention_removed_the_payload(
    hookyard_factory, receiver
):
    """The payload may go long before the key's window ends: a retry with the same body is
    still a duplicate (it got 409 once the payload was gone), and another body still 409."""
    retention = '\n[sources.orders.retention]\npayloads = "1s"\n'
    config = basic_config(receiver.url) + API_SOURCE + retention
    async with hookyard_factory(config) as hy, hy.api() as api:
        headers = {"hookyard-event-type": "order.created", "idempotency-key": "order-7"}
        body = b'{"order": 7}'
        url = "/api/v1/sources/orders/events"
        first = await api.post(url, content=body, headers=headers)
        assert first.status_code == 201
        await receiver.wait_for(1)
        event_id = first.json()["id"]
        for _ in until_deadline():  # delivered and old enough: the sweep strips the payload
            await asyncio.sleep(0.3)
            await api.post("/api/v1/retention/sweep")
            raw = await api.get(f"/api/v1/events/{event_id}/raw")
            if raw.status_code != 200:
                break
        assert raw.status_code != 200, "the payload was never removed"
        repeat = await api.post(url, content=body, headers=headers)
        assert (repeat.status_code, repeat.json()) == (200, {"id": event_id, "duplicate": True})
        reused = await api.post(url, content=b'{"order": 8}', headers=headers)
        assert reused.status_code == 409


async def test_a_publish_whose_commit_hangs_gets_503_in_time(hookyard_factory, receiver):
    """As for webhooks (server.commit_timeout): a 503 rather than a wait on a database that
    hangs. The write is dropped if its transaction had not begun (the retry is then new: 201),
    or commits after all (the retry is then a duplicate: 200); either way it is sent once."""
    config = basic_config(receiver.url).replace(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\ncommit_timeout = "1s"', 1
    )
    async with hookyard_factory(config + API_SOURCE) as hy:
        async with hy.api() as api:
            made = await api.post("/api/v1/tokens", json={"name": "s", "scope": "publish:orders"})
        headers = {
            "authorization": f"Bearer {made.json()['token']}",
            "hookyard-event-type": "order.created",
            "idempotency-key": "order-7",
        }
        writer = hy.service.state.store.writer
        gate = threading.Event()
        writer.commit_hook = lambda conn: gate.wait(DEADLINE)  # the commit hangs
        try:
            url = "/api/v1/sources/orders/events"
            refused = await hy.client.post(url, content=b'{"order": 7}', headers=headers)
            assert refused.status_code == 503, refused.text
        finally:
            gate.set()
        for _ in until_deadline():
            retry = await hy.client.post(url, content=b'{"order": 7}', headers=headers)
            if retry.status_code != 503:
                break
            await asyncio.sleep(0.1)
        assert retry.status_code in (200, 201), retry.text
        assert retry.json()["duplicate"] is (retry.status_code == 200)
        await receiver.wait_for(1)
        await asyncio.sleep(0.3)
        assert receiver.ids() == [retry.json()["id"]]
