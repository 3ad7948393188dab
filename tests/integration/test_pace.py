"""Ordering per key, rate limits and outbound identity, against real receivers."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import standardwebhooks

from tests.conftest import DEST_SECRET, Received, basic_config

SECOND_SECRET = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()


async def test_order_is_kept_per_key_while_other_keys_flow(hookyard_factory, receiver):
    failures = {"a1": 2}  # the first event of customer a fails twice, then succeeds

    def answer(item: Received) -> int:
        name = json.loads(item.body)["n"]
        if failures.get(name, 0) > 0:
            failures[name] -= 1
            return 500
        return 204

    receiver.behaviour = answer
    config = basic_config(receiver.url, destination='ordering = "field:customer"').replace(
        'retry_schedule = ["0", "100ms", "100ms"]', 'retry_schedule = ["0", "300ms", "300ms"]'
    )
    async with hookyard_factory(config) as hy:
        for name, customer in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("a3", "a"), ("b2", "b")]:
            body = json.dumps({"n": name, "customer": customer}).encode()
            assert (await hy.client.post("/in/open", content=body)).status_code == 200
        await receiver.wait_for(7)
        await asyncio.sleep(0.3)
    seen = [json.loads(r.body)["n"] for r in receiver.received]
    assert [n for n in seen if n.startswith("a")] == ["a1", "a1", "a1", "a2", "a3"]
    assert [n for n in seen if n.startswith("b")] == ["b1", "b2"]
    # b kept flowing while a1 waited for its retries.
    assert seen.index("b2") < seen.index("a2")


async def test_rate_limit_spreads_a_backlog(hookyard_factory, receiver):
    config = basic_config(receiver.url, destination='rate_limit = "20/s"')
    async with hookyard_factory(config) as hy:
        async with hy.api() as api:
            await api.post("/api/v1/destinations/app/pause")
        for i in range(60):
            await hy.client.post("/in/open", content=f"{i}".encode())
        async with hy.api() as api:
            resumed = time.time()
            await api.post("/api/v1/destinations/app/resume")
        await receiver.wait_for(60)
    times = sorted(r.at for r in receiver.received)
    # A bucket of one second's worth (20) plus 20 per second: the 60th goes 2 seconds after
    # the resume at the earliest. (Counted from the resume, not the first arrival, which a
    # loaded machine can delay while the bucket refills.)
    assert times[-1] - resumed >= 1.9
    for start in times:
        assert sum(1 for t in times if start <= t < start + 1.0) <= 41


async def test_static_headers_auth_and_rotated_signatures(hookyard_factory, receiver, monkeypatch):
    monkeypatch.setenv("APP_TOKEN", "tok-123")
    destination = 'headers = { X-Env = "prod" }\nbearer_token = "env:APP_TOKEN"\n'
    config = basic_config(receiver.url, destination=destination).replace(
        f'secret = "{DEST_SECRET}"', f'secret = ["{DEST_SECRET}", "{SECOND_SECRET}"]'
    )
    async with hookyard_factory(config) as hy:
        await hy.client.post("/in/open", content=b'{"x": 1}')
        await receiver.wait_for(1)
    got = receiver.received[0]
    assert got.headers["x-env"] == "prod"
    assert got.headers["authorization"] == "Bearer tok-123"
    assert len(got.headers["webhook-signature"].split()) == 2
    for secret in (DEST_SECRET, SECOND_SECRET):  # receivers on either secret accept it
        standardwebhooks.Webhook(secret).verify(got.body, got.headers)


async def test_a_blocked_key_does_not_make_the_worker_spin(hookyard_factory, receiver):
    receiver.behaviour = lambda item: 500 if b'"first"' in item.body else 204
    config = basic_config(receiver.url, destination='ordering = "source"').replace(
        'retry_schedule = ["0", "100ms", "100ms"]', 'retry_schedule = ["0", "30s"]'
    )
    async with hookyard_factory(config) as hy:
        await hy.client.post("/in/open", content=b'{"n": "first"}')
        await receiver.wait_for(1)
        await hy.client.post("/in/open", content=b'{"n": "second"}')  # waits behind the first
        await asyncio.sleep(0.3)
        before = hy.service.store.writer.commits
        await asyncio.sleep(1.0)
        idle_commits = hy.service.store.writer.commits - before
    assert len(receiver.received) == 1
    assert idle_commits < 30  # a worker polling the blocked key would commit ~1,000 claims


async def test_deliveries_go_through_the_configured_proxy(hookyard_factory, receiver):
    """The receiver plays an HTTP proxy: aiohttp sends it the absolute URL of the real
    destination (which does not exist), and it answers in the destination's place."""
    config = basic_config("http://destination.invalid/hooks").replace(
        'secret = "', f'proxy = "{receiver.url.rsplit("/", 1)[0]}"\nsecret = "', 1
    )
    async with hookyard_factory(config) as hy:
        event_id = (await hy.client.post("/in/open", content=b"via proxy")).json()["id"]
        await receiver.wait_for(1)
    got = receiver.received[0]
    assert got.path == "/hooks"  # the proxy saw the destination's path
    assert got.headers["host"] == "destination.invalid"
    assert got.headers["webhook-id"] == event_id
    assert got.body == b"via proxy"
