"""The relay: deliveries of a relay destination reach a receiver behind a firewall through the
pull API and `hookyard listen`, byte for byte, signed, at least once, whatever gets cut."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from standardwebhooks import Webhook

from hookyard.relay.listen import Fatal, Listener
from tests.conftest import (
    CLIENT_TIMEOUT,
    DEADLINE,
    DEST_SECRET,
    GITHUB_SECRET,
    Receiver,
    ServeProcess,
    local_api,
    start_serve,
    until_deadline,
    write_config,
)
from tests.integration.test_reconcile import free_port

RELAY_CONFIG = f"""
    [server]
    listen = "127.0.0.1:0"

    [sources.open]
    verify = "none"

    [sources.github]
    verify = "github"
    secrets = ["{GITHUB_SECRET}"]

    [destinations.laptop]
    relay = true
    secret = "{DEST_SECRET}"
    retry_schedule = ["0", "200ms", "200ms", "200ms"]
    jitter = 0
    {{extra}}

    [destinations.direct]
    url = "http://127.0.0.1:9/unused"

    [[routes]]
    source = "open"
    destination = "laptop"

    [[routes]]
    source = "github"
    destination = "laptop"
"""


def relay_config(extra: str = "") -> str:
    return RELAY_CONFIG.format(extra=extra)


async def lease(api: httpx.AsyncClient, **body: Any) -> list[dict[str, Any]]:
    response = await api.post("/api/v1/destinations/laptop/lease", json=body)
    assert response.status_code == 200, response.text
    deliveries: list[dict[str, Any]] = response.json()["deliveries"]
    return deliveries


async def report(api: httpx.AsyncClient, *results: dict[str, Any]) -> list[str]:
    response = await api.post("/api/v1/destinations/laptop/results", json={"results": results})
    assert response.status_code == 200, response.text
    return [r["status"] for r in response.json()["results"]]


async def test_pull_api_hands_out_exact_signed_bytes_and_applies_the_retry_policy(
    hookyard_factory: Any,
) -> None:
    async with hookyard_factory(relay_config()) as running, running.api() as api:
        body = b"\xff\xfe not utf-8, not json \x00"
        sent = await running.client.post("/in/open", content=body)
        assert sent.status_code == 200
        [delivery] = await lease(api, max=5, wait=5)
        assert base64.b64decode(delivery["body"]) == body
        headers = delivery["headers"]
        assert headers["webhook-id"] == delivery["event_id"] == sent.json()["id"]
        # Standard Webhooks' libraries want text; over bytes, the scheme by hand:
        key = base64.b64decode(DEST_SECRET.removeprefix("whsec_"))
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert headers["webhook-signature"] == f"v1,{expected}"
        assert await lease(api, max=5) == []  # leased: nobody else gets it

        # The receiver answered 500: retried on the destination's schedule.
        failed = {"delivery_id": delivery["delivery_id"], "lease": delivery["lease"]}
        assert await report(api, {**failed, "status_code": 500, "duration_ms": 3}) == ["retrying"]
        assert await report(api, {**failed, "status_code": 200}) == ["stale"]  # reported already
        [again] = await lease(api, max=5, wait=5)
        assert again["delivery_id"] == delivery["delivery_id"] and again["attempt"] == 2
        ok = {"delivery_id": again["delivery_id"], "lease": again["lease"], "status_code": 204}
        assert await report(api, ok) == ["succeeded"]
        attempts = await api.get("/api/v1/attempts", params={"delivery_id": again["delivery_id"]})
        codes = sorted(a["status_code"] for a in attempts.json()["data"])
        assert codes == [204, 500]


async def test_a_result_with_an_impossible_duration_is_refused(hookyard_factory: Any) -> None:
    """1e309 reads as infinity: stored, the attempt's start was -inf and every page of
    attempts, deliveries and the event answered 500 from then on."""
    async with hookyard_factory(relay_config()) as running, running.api() as api:
        await running.client.post("/in/open", content=b'{"n": 1}')
        [delivery] = await lease(api, wait=5)
        result = {"delivery_id": delivery["delivery_id"], "lease": delivery["lease"]}
        for bad in ('{"duration_ms": 1e309}', '{"duration_ms": 1e300}', '{"retry_after": 1e309}'):
            body = '{"results": [' + json.dumps(result)[:-1] + ', "status_code": 503, '
            body += bad[1:-1] + "}]}"
            refused = await api.post(
                "/api/v1/destinations/laptop/results",
                content=body,
                headers={"content-type": "application/json"},
            )
            assert refused.status_code == 422, (bad, refused.text)
        # A receiver's Retry-After of three years is taken as a year, not refused: a 422 for
        # the batch stopped `hookyard listen` for good.
        later = {**result, "status_code": 503, "retry_after": 99_999_999, "duration_ms": 12.5}
        assert await report(api, later) == ["retrying"]
        assert (await api.get("/api/v1/attempts")).status_code == 200
        assert (await api.get(f"/api/v1/events/{delivery['event_id']}")).status_code == 200


async def test_an_unreported_lease_comes_back(hookyard_factory: Any) -> None:
    async with hookyard_factory(relay_config()) as running, running.api() as api:
        await running.client.post("/in/open", content=b'{"n": 1}')
        [first] = await lease(api, wait=5, lease=1)
        await asyncio.sleep(1.2)
        [second] = await lease(api, wait=5)
        assert second["delivery_id"] == first["delivery_id"] and second["lease"] != first["lease"]
        late = {"delivery_id": first["delivery_id"], "lease": first["lease"], "status_code": 200}
        assert await report(api, late) == ["stale"]  # another client holds it now


async def test_a_waiting_lease_sleeps_where_no_worker_runs(hookyard_factory: Any) -> None:
    """Work committed wakes a waiting lease call; a process without a worker (an ingest and
    API node) must not then claim in a loop for the rest of the wait."""
    config = relay_config().replace(
        'listen = "127.0.0.1:0"', 'listen = "127.0.0.1:0"\nroles = ["ingest", "api"]'
    )
    async with hookyard_factory(config) as running, running.api() as api:
        store = running.service.store
        claims = 0
        claim = store.claim

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal claims
            claims += 1
            return await claim(*args, **kwargs)

        store.claim = counted  # type: ignore[method-assign]
        await running.client.post("/in/open", content=b'{"n": 1}')  # sets "work may be waiting"
        [delivery] = await lease(api, wait=5)
        await report(api, {"delivery_id": delivery["delivery_id"], "lease": delivery["lease"],
                           "status_code": 200})  # fmt: skip
        claims = 0
        assert await lease(api, wait=2) == []
        assert claims <= 10  # one claim per half-second poll; it spun into the thousands


async def test_relay_tokens_are_scoped(hookyard_factory: Any) -> None:
    config = relay_config() + "\n[destinations.other]\nrelay = true\n"
    async with hookyard_factory(config) as running, running.api() as api:
        made = await api.post("/api/v1/tokens", json={"name": "lap", "scope": "relay:laptop"})
        token = made.json()["token"]
        other = await api.post("/api/v1/tokens", json={"name": "oth", "scope": "relay:other"})
        headers = {"authorization": f"Bearer {token}"}
        ok = await running.client.post(
            "/api/v1/destinations/laptop/lease", json={}, headers=headers
        )
        assert ok.status_code == 200
        for path, who, status in [
            ("other", headers, 403),  # its token is for laptop only
            ("laptop", {"authorization": f"Bearer {other.json()['token']}"}, 403),
            ("laptop", {"authorization": "Bearer wrong"}, 401),
            ("direct", {}, 409),  # admin, but not a relay destination
            ("nope", {}, 404),
        ]:
            client = running.client if who else api
            answer = await client.post(f"/api/v1/destinations/{path}/lease", json={}, headers=who)
            assert answer.status_code == status, (path, answer.text)
        await api.delete(f"/api/v1/tokens/{made.json()['id']}")
        revoked = await running.client.post(
            "/api/v1/destinations/laptop/lease", json={}, headers=headers
        )
        assert revoked.status_code == 401
        bad = await api.post(
            "/api/v1/destinations/laptop/results",
            json={
                "results": [{"delivery_id": "x", "lease": "1", "status_code": 200, "error": "e"}]
            },
        )
        assert bad.status_code == 422


async def events_of(response: httpx.Response) -> Any:
    """(kind, data) of each server-sent event, as they arrive."""
    kind = ""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            yield kind, json.loads(line[5:])


@pytest.mark.parametrize("room", [1, 10])
async def test_a_stream_nobody_answers_ends_before_it_uses_up_the_attempts(
    hookyard_factory: Any, room: int
) -> None:
    """A client that reads but never reports (a half-open link, a stuck process): the stream
    ends once its leases ran out twice with no result, instead of re-leasing forever. With
    room for more (max 10), the stream's own next lease took back the delivery whose lease
    had run out, unseen as an expiry: it was leased again every second, each time an attempt,
    until the schedule ran out."""
    async with hookyard_factory(relay_config()) as running, running.api() as api:
        await running.client.post("/in/open", content=b'{"n": 1}')
        params = {"max": room, "lease": 1, "heartbeat": 0.3 if room == 1 else 5}
        kinds = []
        async with api.stream("GET", "/api/v1/destinations/laptop/stream", params=params) as stream:
            async for kind, _ in events_of(stream):
                kinds.append(kind)
        assert kinds[-1] == "unanswered" and kinds.count("delivery") == 2
        [delivery] = (await api.get("/api/v1/deliveries")).json()["data"]
        assert delivery["attempts"] == 2 and delivery["status"] != "dead"


async def test_a_result_reported_twice_is_recorded_once(hookyard_factory: Any) -> None:
    """At once, or twice in one call: one attempt recorded, the other answers stale (both
    were recorded, and the answers could contradict the stored status)."""
    async with hookyard_factory(relay_config()) as running, running.api() as api:
        for n in range(2):
            await running.client.post("/in/open", content=b'{"n": %d}' % n)
        first, second = await lease(api, wait=5, max=2)
        ok = {"delivery_id": first["delivery_id"], "lease": first["lease"], "status_code": 200}
        answers = await asyncio.gather(*(report(api, ok) for _ in range(4)))
        assert sorted(a for [a] in answers) == ["stale", "stale", "stale", "succeeded"]
        both = [
            {"delivery_id": second["delivery_id"], "lease": second["lease"], "status_code": code}
            for code in (200, 500)
        ]
        assert await report(api, *both) == ["succeeded", "stale"]
        for delivery in (first, second):
            found = await api.get(
                "/api/v1/attempts", params={"delivery_id": delivery["delivery_id"]}
            )
            assert found.status_code == 200, found.text
            assert len(found.json()["data"]) == 1
        listed = (await api.get("/api/v1/deliveries")).json()["data"]
        assert {d["status"] for d in listed} == {"succeeded"}


async def test_the_stream_pushes_deliveries_within_its_bound_and_beats(
    hookyard_factory: Any,
) -> None:
    async with hookyard_factory(relay_config()) as running, running.api() as api:
        made = await api.post("/api/v1/tokens", json={"name": "l", "scope": "relay:laptop"})
        headers = {"authorization": f"Bearer {made.json()['token']}"}
        params = {"max": 2, "lease": 30, "heartbeat": 0.3}
        for n in range(3):
            await running.client.post("/in/open", content=b'{"n": %d}' % n)
        seen: list[str] = []
        async with (
            httpx.AsyncClient(
                base_url=running.url, headers=headers, timeout=CLIENT_TIMEOUT
            ) as client,
            client.stream("GET", "/api/v1/destinations/laptop/stream", params=params) as stream,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = events_of(stream)
            for kind, data in [await anext(events), await anext(events)]:
                assert kind == "delivery"
                seen.append(data["delivery_id"])
                first = data
            # Two unreported: no third until one is reported, only heartbeats.
            assert await anext(events) == ("heartbeat", {})
            assert running.service.state.presence.connected("laptop") == 1  # the console's count
            assert await report(
                api,
                {"delivery_id": first["delivery_id"], "lease": first["lease"], "status_code": 200},
            ) == ["succeeded"]
            kind, data = await anext(events)
            while kind == "heartbeat":
                kind, data = await anext(events)
            assert kind == "delivery" and data["delivery_id"] not in seen
            assert base64.b64decode(data["body"]) == b'{"n": 2}'
            await api.delete(f"/api/v1/tokens/{made.json()['id']}")
            kinds = [kind async for kind, _ in events]  # the stream ends after "revoked"
            assert kinds[-1] == "revoked"
        refused = await api.get("/api/v1/destinations/direct/stream")
        assert refused.status_code == 409


async def test_one_token_holds_a_bounded_number_of_streams_and_lease_waits(
    hookyard_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hookyard.api.relay.MAX_OPEN_PER_TOKEN", 2)
    stream_path = "/api/v1/destinations/laptop/stream"
    lease_path = "/api/v1/destinations/laptop/lease"
    params = {"max": 1, "lease": 30, "heartbeat": 0.3}
    async with hookyard_factory(relay_config()) as running, running.api() as api:
        presence = running.service.state.presence
        async with api.stream("GET", stream_path, params=params) as first:
            beats = events_of(first)  # held: a dropped generator would close the stream
            assert (await anext(beats))[0] == "heartbeat"  # it runs: one place
            other = {"user-agent": "another client"}  # presence counts clients, not calls
            waiting = asyncio.create_task(
                api.post(lease_path, json={"max": 1, "wait": 2}, headers=other)
            )
            for _ in until_deadline():
                if presence.connected("laptop") == 2:
                    break
                await asyncio.sleep(0.02)
            third = await api.get(stream_path, params=params)
            assert third.status_code == 429, third.text
            assert third.json()["error"] == "too_many_streams"
            assert (await api.post(lease_path, json={"max": 1, "wait": 0})).status_code == 429
            assert (await waiting).status_code == 200  # its wait ended: the place is free
            assert (await api.post(lease_path, json={"max": 1, "wait": 0})).status_code == 200
        async with api.stream("GET", stream_path, params=params) as again:
            beats = events_of(again)
            assert (await anext(beats))[0] == "heartbeat"
            statuses = []
            for _ in until_deadline():  # once the server sees the first stream gone, it is free
                statuses.append((await api.post(lease_path, json={"max": 1})).status_code)
                if statuses[-1] != 429:
                    break
                await asyncio.sleep(0.05)
            assert statuses[-1] == 200


async def test_streams_opened_together_never_exceed_the_bound(
    hookyard_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opened at once, several may pass the check made before their responses start: the late
    ones then end with a `refused` event, so however they interleave, one runs."""
    monkeypatch.setattr("hookyard.api.relay.MAX_OPEN_PER_TOKEN", 1)
    params = {"max": 1, "lease": 30, "heartbeat": 0.3}
    outcomes: list[str] = []
    judged = asyncio.Event()
    async with hookyard_factory(relay_config()) as running, running.api() as api:

        async def open_one() -> None:
            async with api.stream(
                "GET", "/api/v1/destinations/laptop/stream", params=params
            ) as stream:
                if stream.status_code == 429:
                    outcomes.append("429")
                else:
                    events = events_of(stream)
                    kind, data = await anext(events)
                    outcomes.append(kind)
                    if kind == "refused":
                        assert data["error"] == "too_many_streams"
                if len(outcomes) == 5:
                    judged.set()
                await judged.wait()  # the running one stays open until all are judged

        await asyncio.wait_for(asyncio.gather(*(open_one() for _ in range(5))), DEADLINE)
    assert outcomes.count("heartbeat") == 1, outcomes
    assert set(outcomes) - {"heartbeat"} <= {"429", "refused"}, outcomes


# -- hookyard listen ------------------------------------------------------------------------


def listen(
    server: ServeProcess, token: str, receiver_url: str, *args: str
) -> subprocess.Popen[bytes]:
    """`hookyard listen` writing to files beside the server's log (a pipe nobody reads would
    fill and stall it)."""
    folder = server.log_path.parent
    stamp = time.monotonic_ns()
    with (
        (folder / f"listen-{stamp}.out").open("wb") as out,
        (folder / f"listen-{stamp}.err").open("wb") as err,
    ):
        return subprocess.Popen(
            [
                sys.executable, "-m", "hookyard", "listen", "laptop", "--forward", receiver_url,
                "--url", server.url, "--token", token, *args,
            ],
            stdout=out,
            stderr=err,
            env={k: v for k, v in os.environ.items() if not k.startswith("HOOKYARD_")},
        )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    process.wait(timeout=30)


def output_of(path: Path) -> int:
    """Deliveries a `--json` client printed."""
    return sum('"status_code"' in line for line in path.read_text().splitlines())


def output(folder: Path, kind: str) -> str:
    return "".join(path.read_text() for path in sorted(folder.glob(f"listen-*.{kind}")))


async def post_events(url: str, start: int, count: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for n in range(start, start + count):
            answer = await client.post("/in/open", content=f'{{"n": {n}}}'.encode())
            assert answer.status_code == 200, answer.text


class Proxy:
    """A TCP proxy between `hookyard listen` and the server, to cut connections abruptly
    (RST, no FIN) or freeze them (half-open: nothing forwarded, nothing closed)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = False
        self.links: list[asyncio.StreamWriter] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.links += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await source.read(65536):
                    while self.frozen:
                        await asyncio.sleep(0.05)
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        for writer in self.links:
            writer.transport.abort()
        self.links = []

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


@pytest.mark.slow
async def test_nothing_is_lost_through_kills_restarts_and_cut_connections(
    tmp_path: Path, serve_processes: list[ServeProcess], receiver: Receiver
) -> None:
    port = free_port()
    config = write_config(
        tmp_path, relay_config().replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"')
    )
    server = start_serve(config)
    serve_processes.append(server)
    token = (tmp_path / "hookyard.token").read_text().strip()
    proxy = Proxy(port)
    await proxy.start()
    relayed = ServeProcess(server.proc, f"http://127.0.0.1:{proxy.port}", server.log_path)
    args = ("--json", "--heartbeat", "3", "--lease", "5", "--timeout", "2")
    client = listen(relayed, token, receiver.url, *args)
    total = 0
    try:
        for step in ("kill client", "cut", "kill server", "cut", "freeze", "cut"):
            await post_events(server.url, total, 1700)  # 10,200 in all
            total += 1700
            await asyncio.sleep(0.3)
            if step == "kill client":  # its leases come back after 5 s
                client.send_signal(signal.SIGKILL)
                client.wait()
                client = listen(relayed, token, receiver.url, *args)
            elif step == "cut":
                proxy.cut()
            elif step == "kill server":  # the client reconnects once it is back
                server.kill()
                await asyncio.sleep(1)
                server = start_serve(config)
                serve_processes.append(server)
            else:  # half-open: the client must notice within its heartbeat (3 s)
                proxy.frozen = True
                await asyncio.sleep(4.5)
                proxy.frozen = False
                proxy.cut()
        deadline = time.monotonic() + 120
        while len(set(receiver.ids())) < total and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        ids = receiver.ids()
        arrived = len(set(ids))
    finally:
        stop(client)
        await proxy.stop()
    out, err = output(tmp_path, "out"), output(tmp_path, "err")
    assert arrived == total, f"{arrived} of {total} arrived; the client said:\n{err[-3000:]}"
    assert len(ids) >= total  # at least once; dedup on webhook-id sees each once
    assert '"status_code": 204' in out
    assert "connection lost" in err  # said so on screen, and came back


async def test_a_signed_provider_request_arrives_verifiable_through_the_pull_api(
    hookyard_factory: Any,
) -> None:
    """The provider's own signature still verifies over the relayed bytes, and so does ours."""
    async with hookyard_factory(relay_config()) as running, running.api() as api:
        body = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'
        mac = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
        sent = await running.client.post(
            "/in/github",
            content=body,
            headers={
                "x-hub-signature-256": f"sha256={mac}",
                "x-github-event": "ping",
                "x-github-delivery": "d-1",
                "content-type": "application/json",
            },
        )
        assert sent.status_code == 200, sent.text
        [delivery] = await lease(api, wait=5)
        relayed = base64.b64decode(delivery["body"])
        headers = delivery["headers"]
        provider = hmac.new(GITHUB_SECRET.encode(), relayed, hashlib.sha256).hexdigest()
        assert headers["x-hub-signature-256"] == f"sha256={provider}"
        Webhook(DEST_SECRET).verify(relayed, headers)


@pytest.mark.slow
async def test_listen_stops_when_its_token_is_revoked_or_wrong(
    tmp_path: Path, hookyard_factory: Any, receiver: Receiver
) -> None:
    async with hookyard_factory(relay_config()) as running, running.api() as api:
        made = await api.post("/api/v1/tokens", json={"name": "lap", "scope": "relay:laptop"})
        token = made.json()["token"]
        here = ServeProcess(None, running.url, tmp_path / "serve.log")  # type: ignore[arg-type]
        client = listen(here, token, receiver.url)  # its calls wait up to 10 s for work
        await running.client.post("/in/open", content=b'{"n": 1}')
        await receiver.wait_for(1)
        await asyncio.sleep(0.5)  # back to waiting for work
        await api.delete(f"/api/v1/tokens/{made.json()['id']}")
        code = await asyncio.to_thread(client.wait, 3)  # at once, not at the wait's end
        assert code == 1
        assert "401" in output(tmp_path, "err")
        wrong = listen(here, "hky_wrong", receiver.url)
        assert await asyncio.to_thread(wrong.wait, 10) == 1


async def run_clients(
    tmp_path: Path, running: Any, receiver: Receiver, bodies: list[bytes], transport: str = "sse"
) -> list[int]:
    """Two `--json` clients relay `bodies`; returns how many each delivered."""
    here = ServeProcess(None, running.url, tmp_path / "serve.log")  # type: ignore[arg-type]
    args = ("--json", "--max", "5", "--streams", "1", "--transport", transport)
    clients = [listen(here, running.token, receiver.url, *args) for _ in range(2)]
    try:
        async with httpx.AsyncClient(base_url=running.url, timeout=CLIENT_TIMEOUT) as client:
            for body in bodies:
                assert (await client.post("/in/open", content=body)).status_code == 200
        await receiver.wait_for(len(bodies))
    finally:
        for process in clients:
            stop(process)
    assert len(set(receiver.ids())) == len(bodies)
    return [output_of(path) for path in sorted(tmp_path.glob("listen-*.out"))]


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["sse", "poll"])
async def test_clients_share_a_destination(
    tmp_path: Path, hookyard_factory: Any, receiver: Receiver, transport: str
) -> None:
    async def slow(_: object) -> int:
        await asyncio.sleep(0.02)
        return 204

    receiver.behaviour = slow
    async with hookyard_factory(relay_config()) as running:
        bodies = [f'{{"n": {n}}}'.encode() for n in range(200)]
        shares = await run_clients(tmp_path, running, receiver, bodies, transport)
    assert len(shares) == 2 and all(share > 0 for share in shares), shares


@pytest.mark.slow
async def test_ordering_holds_through_the_relay(
    tmp_path: Path, hookyard_factory: Any, receiver: Receiver
) -> None:
    async with hookyard_factory(relay_config('ordering = "field:customer"')) as running:
        bodies = [f'{{"customer": "c{n % 3}", "n": {n}}}'.encode() for n in range(120)]
        await run_clients(tmp_path, running, receiver, bodies)
    per_customer: dict[str, list[int]] = {}
    for received in receiver.received:
        document = json.loads(received.body)
        per_customer.setdefault(document["customer"], []).append(document["n"])
    for numbers in per_customer.values():
        assert numbers == sorted(numbers)  # one in flight per customer, in order


@pytest.mark.postgres_only
async def test_results_reported_to_another_process_keep_the_stream_open(
    tmp_path: Path, serve_processes: list[ServeProcess]
) -> None:
    """Two processes share the database; the stream is on one, its results go to the other,
    each event failing twice before it succeeds. The stream took those deliveries for leases
    run out (or, retried, for leases taken back) and ended "unanswered"."""
    config = write_config(tmp_path, relay_config())
    nodes = [start_serve(config), start_serve(config)]
    serve_processes.extend(nodes)
    token = (tmp_path / "hookyard.token").read_text().strip()
    headers = {"authorization": f"Bearer {token}"}
    kinds: list[str] = []
    succeeded: list[str] = []
    async with (
        httpx.AsyncClient(base_url=nodes[0].url, headers=headers, timeout=CLIENT_TIMEOUT) as one,
        httpx.AsyncClient(base_url=nodes[1].url, headers=headers, timeout=CLIENT_TIMEOUT) as two,
    ):

        async def follow() -> None:
            params = {"max": 4, "lease": 1, "heartbeat": 0.5}
            url = "/api/v1/destinations/laptop/stream"
            async with one.stream("GET", url, params=params) as stream:
                async for kind, data in events_of(stream):
                    kinds.append(kind)
                    if kind != "delivery":
                        continue
                    code = 200 if data["attempt"] == 3 else 500
                    result = {"delivery_id": data["delivery_id"], "lease": data["lease"]}
                    [status] = await report(two, {**result, "status_code": code})
                    assert status == ("succeeded" if code == 200 else "retrying"), status
                    if code == 200:
                        succeeded.append(data["event_id"])

        following = asyncio.create_task(follow())
        try:
            for n in range(3):  # one at a time, each outliving its lease after its result
                await one.post("/in/open", content=b'{"n": %d}' % n)
                for _ in until_deadline():
                    if len(succeeded) > n or following.done():
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.5)
            assert not following.done(), kinds  # still open: no "unanswered", no error
            assert kinds.count("delivery") == 9 and len(set(succeeded)) == 3
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following


async def test_a_lease_call_whose_client_left_claims_nothing(hookyard_factory: Any) -> None:
    """A long poll whose client went away (Ctrl-C, a restart, a client timeout) kept waiting
    and leased the next event to nobody: it waited for its lease to run out, an attempt
    spent, while the client's next call found nothing."""
    async with hookyard_factory(relay_config()) as running, running.api() as api:
        host, port = running.url.removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        body = json.dumps({"max": 1, "wait": 10, "lease": 30}).encode()
        writer.write(
            b"POST /api/v1/destinations/laptop/lease HTTP/1.1\r\nhost: x\r\n"
            b"authorization: Bearer " + running.token.encode() + b"\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body
        )
        await writer.drain()
        await asyncio.sleep(0.5)  # the call waits for work, and its client goes away
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.5)
        await running.client.post("/in/open", content=b'{"n": 1}')
        await asyncio.sleep(1.0)  # the abandoned call wakes up first
        assert len(await lease(api, max=1, wait=5)) == 1


async def test_a_poll_listener_with_a_heartbeat_beyond_the_servers_wait_relays(
    hookyard_factory: Any, receiver: Receiver
) -> None:
    """--heartbeat 60 asked for lease waits of 40 s, the server refused them (422, past its
    30 s), and the listener stopped for good."""
    async with hookyard_factory(relay_config()) as running:
        await running.client.post("/in/open", content=b'{"n": 1}')
        listener = Listener(
            running.url, running.token, "laptop", receiver.url, streams=1, heartbeat=60.0,
            lease=30.0, transport="poll",
        )  # fmt: skip
        task = asyncio.create_task(listener.run())
        try:
            arrived = asyncio.create_task(receiver.wait_for(1))
            await asyncio.wait([task, arrived], return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # the listener's Fatal, if that is why it ended
            assert len(receiver.received) == 1
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_listen_keeps_the_url_path_and_reports_a_foreign_error_page() -> None:
    """Behind a proxy under a path prefix, and with an HTML error page from a proxy or a wrong
    URL: an `error: ...` line, not a traceback."""

    async def proxy_page(_: web.Request) -> web.Response:
        return web.Response(status=404, text="<html><h1>Not Found</h1></html>")

    async def hookyard_under_prefix(_: web.Request) -> web.Response:
        return web.json_response({"message": "seen under the prefix"}, status=401)

    async with local_api(
        ("/api/v1/destinations/laptop/stream", proxy_page),
        ("/prefix/api/v1/destinations/laptop/stream", hookyard_under_prefix),
    ) as url:
        for server, expected in [
            (url, "404: <html><h1>Not Found</h1></html>"),
            (f"{url}/prefix", "401: seen under the prefix"),
            (f"{url}/prefix/", "401: seen under the prefix"),
        ]:
            listener = Listener(server, "hky_x", "laptop", "http://127.0.0.1:9/", streams=1)
            with pytest.raises(Fatal) as failed:
                await asyncio.wait_for(listener.run(), DEADLINE)
            assert str(failed.value) == expected


def test_listen_refuses_a_forward_url_it_could_not_send_to(tmp_path: Path) -> None:
    """A --forward without a scheme failed every delivery locally, and each failure spent an
    attempt of the destination's schedule until the events were dead."""
    done = subprocess.run(
        [
            sys.executable, "-m", "hookyard", "listen", "laptop", "--forward",
            "localhost:3000/hooks", "--url", "http://127.0.0.1:9", "--token", "hky_x",
        ],
        capture_output=True, text=True, timeout=CLIENT_TIMEOUT, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--forward" in done.stderr and "expected an http(s) URL" in done.stderr


async def test_calls_waiting_on_a_relay_destination_reloaded_away_end(
    tmp_path: Path, hookyard_factory: Any
) -> None:
    """A reload that takes the relay away: a waiting lease call answers as a new call would
    (409 here), a stream ends; both failed on a KeyError."""
    async with hookyard_factory(relay_config()) as running, running.api() as api:
        waiting = asyncio.create_task(
            api.post("/api/v1/destinations/laptop/lease", json={"wait": 10})
        )
        params = {"lease": 30, "heartbeat": 0.3}
        async with api.stream("GET", "/api/v1/destinations/laptop/stream", params=params) as stream:
            events = events_of(stream)
            assert await anext(events) == ("heartbeat", {})
            direct = relay_config().replace("relay = true", 'url = "http://127.0.0.1:9/"')
            write_config(tmp_path, direct)
            assert running.service.reload()
            left = [event async for event in events]  # the stream ends
            assert all(kind == "heartbeat" for kind, _ in left)
        answer = await asyncio.wait_for(waiting, DEADLINE)
        assert answer.status_code == 409, answer.text
