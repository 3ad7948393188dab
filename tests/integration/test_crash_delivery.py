"""Promise 6: a worker's claim is a lease. `hookyard serve` is SIGKILLed while its deliveries
are in flight at a receiver that has not answered yet; after a restart on the same database the
leases run out, the deliveries return to the queue, and every event reaches the receiver with
its own `webhook-id`."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web

from hookyard.tokens import read_token_file
from tests.conftest import (
    CLIENT_TIMEOUT,
    DEADLINE,
    DEST_SECRET,
    GITHUB_SECRET,
    Receiver,
    ServeProcess,
    api_client,
    github_push,
    start_serve,
    write_config,
)

EVENTS = 20


def config_body(receiver_url: str) -> str:
    # The receiver holds the first run's attempts until the kill; the 2 s lease (which must
    # outlast the 1.5 s attempt timeout) is what brings them back after the restart.
    return f"""
        [server]
        listen = "127.0.0.1:0"

        [worker]
        lease = "2s"

        [egress]
        allow = ["127.0.0.0/8"]

        [sources.github]
        verify = "github"
        secrets = ["{GITHUB_SECRET}"]

        [destinations.app]
        url = "{receiver_url}"
        secret = "{DEST_SECRET}"
        timeout = "1.5s"
        retry_schedule = ["0", "100ms", "100ms"]
        jitter = 0

        [[routes]]
        source = "github"
        destination = "app"
    """


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("seed", [5, 23])
async def test_deliveries_in_flight_at_sigkill_are_delivered_after_restart(
    tmp_path: Path, receiver: Receiver, serve_processes: list[ServeProcess], seed: int
) -> None:
    rng = random.Random(seed)
    answer = asyncio.Event()  # the receiver holds every request until this is set

    async def slow(_: object) -> web.Response:
        await asyncio.wait_for(answer.wait(), 60)
        return web.Response(status=204)

    receiver.behaviour = slow
    config = write_config(tmp_path, config_body(receiver.url))
    first = await asyncio.to_thread(start_serve, config)
    serve_processes.append(first)
    token = read_token_file(tmp_path / "hookyard.token")
    assert token, first.log()

    bodies: dict[str, bytes] = {}
    async with httpx.AsyncClient(base_url=first.url, timeout=CLIENT_TIMEOUT) as http:
        for number in range(EVENTS):
            body = orjson.dumps({"seed": seed, "n": number, "nonce": rng.getrandbits(64)})
            delivery = str(uuid.UUID(int=rng.getrandbits(128)))
            response = await http.post(
                "/in/github", content=body, headers=github_push(body, delivery)
            )
            assert response.status_code == 200, response.text
            bodies[response.json()["id"]] = body

    # Kill once some (seeded: 1 to all) deliveries are waiting on the receiver's answer.
    in_flight = rng.randint(1, EVENTS)
    await receiver.wait_for(in_flight)
    await asyncio.to_thread(first.kill)
    caught = set(receiver.ids())
    assert caught <= set(bodies)
    assert len(caught) >= in_flight

    receiver.behaviour = None  # answers 204 at once from now on
    answer.set()  # the held requests answer a dead connection
    restarted_at = len(receiver.received)
    second = await asyncio.to_thread(start_serve, config)
    serve_processes.append(second)

    def undelivered() -> set[str]:
        return set(bodies) - set(receiver.ids()[restarted_at:])

    deadline = time.monotonic() + DEADLINE
    while undelivered():
        assert time.monotonic() < deadline, (
            f"{len(undelivered())} of {EVENTS} events never delivered after the restart "
            f"({len(caught & undelivered())} of them were in flight at the kill)"
        )
        await asyncio.sleep(0.1)

    for item in receiver.received:
        event_id = item.headers["webhook-id"]
        assert event_id in bodies
        assert item.body == bodies[event_id]

    async with api_client(second.url, token) as api:

        async def statuses() -> dict[str, list[str]]:
            found = {}
            for event_id in bodies:
                got = await api.get(f"/api/v1/events/{event_id}")
                assert got.status_code == 200, got.text
                found[event_id] = [d["status"] for d in got.json()["deliveries"]]
            return found

        # The attempt is recorded just after the receiver answers: allow it a moment.
        deadline = time.monotonic() + DEADLINE
        while True:
            found = await statuses()
            if all(s == ["succeeded"] for s in found.values()):
                break
            assert time.monotonic() < deadline, found
            await asyncio.sleep(0.1)
