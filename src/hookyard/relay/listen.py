"""`hookyard listen`: relay a destination's deliveries to a receiver on this machine.

The client connects outward only. With the default transport, `sse`, each of `--streams`
connections is a server-sent event stream that pushes deliveries as they fall due, at most
`--max` unreported per stream; the server sends a heartbeat after a third of `--heartbeat` of
silence, so hearing nothing for `--heartbeat` means a dead or half-open link: reconnect. Each
delivery goes to the local receiver with the exact body and the headers a direct delivery
carries, and its result is reported with a plain POST, which the server records as the
attempt (retrying on the destination's schedule). With `poll`, each stream is a loop of long
polls of the pull API instead (one call per batch), for proxies that buffer event streams.

Why server-sent events rather than a WebSocket: deliveries only flow one way; results are
ordinary requests, so a stream that breaks loses nothing and any proxy that passes HTTPS passes
both. Nothing is lost: a delivery is acknowledged only by its result, and one whose result does
not arrive (client killed, laptop asleep, network cut) is leased again when its lease ends.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import click

from hookyard.deliver.http import parse_retry_after
from hookyard.relay.hub import MAX_WAIT

HOP_BY_HOP = frozenset({"host", "content-length", "connection", "transfer-encoding"})
EXCERPT = 1024
# Results per report call: each is at most about 6.2 KB as JSON (an excerpt of 1,024 bytes
# that are not UTF-8 escapes to \ufffd, 6 bytes each), so a call stays under the server's
# 4 MiB body limit (a 413 would be retried for ever with the same batch).
REPORT_MAX = 500
MAX_RETRY_AFTER = 31_536_000.0  # seconds: a receiver's Retry-After is reported up to a year


class Fatal(Exception):
    """An answer that retrying cannot fix (bad token, no such relay destination)."""


@dataclass
class Listener:
    server: str  # Hookyard's base URL
    token: str
    destination: str
    forward: str  # the local receiver
    streams: int = 2
    max: int = 10
    lease: float = 15.0  # the server's side of the heartbeat: a silent client's work returns
    heartbeat: float = 15.0  # a call unanswered this long is a dead link: reconnect
    forward_timeout: float = 10.0  # within the lease, so a slow answer is still reported
    as_json: bool = False
    transport: str = "sse"  # or "poll": long polls of the lease call
    counts: Counter[str] = field(default_factory=Counter)
    _connected: bool | None = None

    @property
    def wait(self) -> float:
        """How long the server may hold a lease call open: a third of the heartbeat is left
        for the answer to arrive, so an unanswered call means a dead link. The server holds
        one MAX_WAIT at most (it refuses a longer wait)."""
        return min(self.heartbeat * 2 / 3, MAX_WAIT)

    async def run(self) -> None:
        headers = {"authorization": f"Bearer {self.token}"}
        async with (
            aiohttp.ClientSession(headers=headers) as server,
            aiohttp.ClientSession() as local,
        ):
            self._status(
                f"relaying {self.destination} from {self.server} to {self.forward} "
                f"({self.streams} streams; Ctrl-C to stop)"
            )
            stream = self._events if self.transport == "sse" else self._poll
            await asyncio.gather(*(stream(server, local) for _ in range(self.streams)))

    async def _events(self, server: aiohttp.ClientSession, local: aiohttp.ClientSession) -> None:
        """One event stream, reconnected with backoff; results go out beside it, so a broken
        stream loses none of them."""
        results: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        forwarding: set[asyncio.Task[None]] = set()

        async def forward(delivery: dict[str, Any]) -> None:
            results.put_nowait(await self._send(local, delivery))

        async def receive() -> None:
            backoff = 1.0
            while True:
                opened = time.monotonic()
                try:
                    async for delivery in self._deliveries(server):
                        task = asyncio.create_task(forward(delivery))
                        forwarding.add(task)
                        task.add_done_callback(forwarding.discard)
                    raise aiohttp.ServerDisconnectedError("the server ended the stream")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    if time.monotonic() - opened > self.heartbeat:  # it had been up: a blip
                        backoff = 1.0
                    self._link(False, f"{type(exc).__name__}: {exc}".rstrip(": "), backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)

        await asyncio.gather(receive(), self._report_from(server, results))

    async def _deliveries(self, server: aiohttp.ClientSession) -> AsyncIterator[dict[str, Any]]:
        """The stream's deliveries; a silence of `heartbeat` seconds raises TimeoutError."""
        params = {"max": self.max, "lease": self.lease, "heartbeat": self.heartbeat / 3}
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.heartbeat, sock_read=self.heartbeat
        )
        async with server.get(
            self._url("stream"),
            params=params,
            timeout=timeout,
        ) as response:
            await _check(response)
            self._link(True)
            pending = bytearray()
            async for chunk in response.content.iter_any():
                searched = max(0, len(pending) - 1)  # a large event arrives in many chunks
                pending += chunk  # Hookyard ends lines with \n alone
                end = pending.rfind(b"\n\n", searched)  # a blank line ends an event
                if end < 0:
                    continue
                events = bytes(pending[:end]).split(b"\n\n")
                del pending[: end + 2]
                for event in events:
                    fields = dict(
                        line.split(b":", 1) for line in event.split(b"\n") if b":" in line[1:]
                    )
                    kind = fields.get(b"event", b"").strip()
                    if kind == b"delivery":
                        yield json.loads(fields[b"data"])
                    elif kind == b"revoked":
                        raise Fatal("401: the token was revoked")
                    elif kind == b"refused":  # too many streams: retried with backoff
                        refusal = json.loads(fields.get(b"data", b"{}"))
                        raise aiohttp.ClientError(f"refused: {refusal.get('message', '')}")

    async def _report_from(
        self, server: aiohttp.ClientSession, results: asyncio.Queue[dict[str, Any]]
    ) -> None:
        """Report results as they come, all those waiting in one call; a failed call is tried
        again with backoff (a lease that ran out meanwhile only makes its result stale)."""
        while True:
            batch = [await results.get()]
            # Results finishing in this turn of the loop share the call; waiting longer for
            # more was measured slower: a place frees only once its result is reported.
            await asyncio.sleep(0)
            while not results.empty() and len(batch) < REPORT_MAX:
                batch.append(results.get_nowait())
            backoff = 1.0
            while True:
                try:
                    await self._report(server, batch)
                    break
                except (aiohttp.ClientError, TimeoutError):
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)

    async def _poll(self, server: aiohttp.ClientSession, local: aiohttp.ClientSession) -> None:
        unreported: list[dict[str, Any]] = []  # results kept until the server has them
        backoff = 1.0
        while True:
            try:
                if unreported:
                    await self._report(server, unreported)
                    unreported = []
                leased = await self._call(
                    server, "lease", {"max": self.max, "wait": self.wait, "lease": self.lease}
                )
                self._link(True)
                backoff = 1.0
                unreported = list(
                    await asyncio.gather(*(self._send(local, d) for d in leased["deliveries"]))
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._link(False, f"{type(exc).__name__}: {exc}".rstrip(": "), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _call(self, server: aiohttp.ClientSession, what: str, body: Any) -> Any:
        timeout = aiohttp.ClientTimeout(total=self.heartbeat)
        async with server.post(
            self._url(what),
            json=body,
            timeout=timeout,
        ) as response:
            await _check(response)
            return await response.json()

    def _url(self, call: str) -> str:
        """The destination's relay call, under the server URL's own path (a server behind a
        proxy at https://host/hookyard keeps its prefix)."""
        destination = quote(self.destination, safe="")
        return f"{self.server.rstrip('/')}/api/v1/destinations/{destination}/{call}"

    async def _report(self, server: aiohttp.ClientSession, results: list[dict[str, Any]]) -> None:
        answered = await self._call(server, "results", {"results": results})
        for answer in answered["results"]:
            if answer["status"] == "stale":  # it will come again (at least once)
                self.counts["stale"] += 1

    async def _send(self, local: aiohttp.ClientSession, delivery: dict[str, Any]) -> dict[str, Any]:
        body = base64.b64decode(delivery["body"])
        headers = {k: v for k, v in delivery["headers"].items() if k.lower() not in HOP_BY_HOP}
        started = time.perf_counter()
        result: dict[str, Any] = {
            "delivery_id": delivery["delivery_id"],
            "lease": delivery["lease"],
        }
        try:
            async with local.post(
                self.forward,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.forward_timeout),
            ) as response:
                excerpt = (await response.content.read(EXCERPT)).decode("utf-8", "replace")
                if not 100 <= response.status <= 599:  # aiohttp reads any three digits
                    raise ValueError(f"the receiver answered with status {response.status}")
                result["status_code"] = response.status
                result["response_excerpt"] = excerpt
                if response.status in (429, 503):
                    wait = parse_retry_after(response.headers.get("retry-after"), time.time())
                    if wait is not None:  # the server takes a year at most, and no infinity
                        result["retry_after"] = min(wait, MAX_RETRY_AFTER)
        except Exception as exc:  # any failure is this attempt's result, reported like others
            result["error"] = f"{type(exc).__name__}: {exc}".rstrip(": ")[:1000]
        result["duration_ms"] = (time.perf_counter() - started) * 1000
        self._show(delivery, result)
        return result

    def _show(self, delivery: dict[str, Any], result: dict[str, Any]) -> None:
        code = result.get("status_code")
        ok = code is not None and 200 <= code < 300
        self.counts["ok" if ok else "failed"] += 1
        if self.as_json:
            line = {
                "event_id": delivery["event_id"],
                "source": delivery["source"],
                "event_type": delivery["event_type"],
                "attempt": delivery["attempt"],
                **{k: v for k, v in result.items() if k not in ("lease", "response_excerpt")},
            }
            click.echo(json.dumps(line))
            return
        outcome = str(code) if code is not None else result["error"]
        click.echo(
            f"{time.strftime('%H:%M:%S')}  {delivery['source']:<12} "
            f"{delivery['event_type'] or '-':<24} -> {outcome:<5} "
            f"{result['duration_ms']:7.1f} ms  {delivery['event_id']}"
            + (f"  (attempt {delivery['attempt']})" if delivery["attempt"] > 1 else "")
        )

    def _link(self, up: bool, problem: str = "", retry_in: float = 0.0) -> None:
        if up == self._connected:
            return
        self._connected = up
        if up:
            self._status("connected; waiting for events")
        else:
            self._status(f"connection lost ({problem}); reconnecting in {retry_in:g}s")

    def _status(self, text: str) -> None:
        if self.as_json:
            click.echo(json.dumps({"status": text}), err=True)
        else:
            click.echo(f"{time.strftime('%H:%M:%S')}  -- {text}", err=True)

    def summary(self) -> str:
        c = self.counts
        return f"relayed {c['ok']} ok, {c['failed']} failed, {c['stale']} reported too late"


async def _check(response: aiohttp.ClientResponse) -> None:
    """Fatal for answers that retrying cannot fix; an error to retry for any other non-200."""
    if response.status in (401, 403, 404, 409, 422):
        text = await response.text()
        try:  # Hookyard's own answer; else a proxy's page, or a wrong --url
            message = json.loads(text)["message"]
        except (ValueError, TypeError, KeyError):
            message = text.strip()[:200] or response.reason
        raise Fatal(f"{response.status}: {message}")
    if response.status != 200:
        raise aiohttp.ClientResponseError(
            response.request_info, (), status=response.status, message=response.reason or ""
        )


def run_listener(listener: Listener) -> int:
    try:
        asyncio.run(listener.run())
    except KeyboardInterrupt:
        click.echo(f"\n{listener.summary()}", err=True)
        return 0
    except Fatal as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    return 0
