"""Leases and results of relay destinations, shared by the pull API and `hookyard listen`.

A lease is the same lease the worker takes: a client that disappears (crash, sleep, a cut
connection) holds its deliveries only until the lease ends, then they are due again for any
client. Deliveries leased together respect the destination's concurrency, rate limit, state
and ordering across every client and process. A result whose lease ran out meanwhile is
refused as stale (another client may have the delivery now); so is a second result.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from hookyard.deliver.http import Response, outbound_headers
from hookyard.deliver.outcome import Aftermath, attempt_class, decide
from hookyard.models import Claim, Claimed, Outcome, Pace
from hookyard.state import AppState
from hookyard.store import relay as relay_sql

MAX_LEASE = 100  # deliveries per lease call
MAX_WAIT = 30.0  # seconds a lease call may wait for work
# A stream counts a lease as run out this long before its end: a claim made at the very end
# would take the delivery back for the same client, an attempt more, unseen.
LAPSE_MARGIN = 0.1
EXCERPT = 1024


@dataclass(frozen=True, slots=True)
class Result:
    """A client's report of one delivery to its receiver."""

    delivery_id: str
    lease: str
    status_code: int | None = None  # the receiver's answer; None: it gave none
    error: str | None = None  # why there was no answer (connection refused, timeout)
    duration_ms: float = 0.0
    response_excerpt: str | None = None
    retry_after: float | None = None  # the receiver's Retry-After, seconds (429, 503)


class Handed(NamedTuple):
    """A delivery a stream handed out and has not heard back about."""

    token: str  # its lease, as the client holds it
    until: float  # the lease's end
    attempt: int  # the attempt this lease is


def lease_token(claim: Claim) -> str:
    """The lease as the client holds it (the lease's end doubles as its token, exactly)."""
    return repr(claim.lease_until)


class DestinationGone(Exception):
    """A reload took the relay destination away while a call waited for its deliveries."""


class RelayHub:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self.aftermath = Aftermath(state)
        # Set (and replaced) whenever results are recorded here: a stream waiting for room
        # looks again at once; other processes' results are found by polling.
        self._settled = asyncio.Event()
        self._streams: list[dict[str, Handed]] = []  # each stream's outstanding

    async def lease(
        self,
        name: str,
        limit: int,
        wait: float,
        lease: float,
        allowed: Callable[[], Awaitable[bool]] | None = None,
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> list[dict[str, Any]] | None:
        """Up to `limit` due deliveries of the destination, waiting up to `wait` seconds for
        one to become due; each with the headers and exact body a direct delivery carries.
        None when `allowed` says no more while waiting (its token was revoked); nothing once
        `gone` says the caller left (what it leased would wait for its lease to run out)."""
        store = self.state.store
        deadline = time.monotonic() + min(wait, MAX_WAIT)
        work = self.state.work_ready.latch()
        while True:
            destination = self.state.gateway.destinations.get(name)
            if destination is None or not destination.relay:  # reloaded away meanwhile
                raise DestinationGone(name)
            pace = Pace(limit, destination.concurrency, destination.rate_limit)
            work.clear()  # before the claim: work committed during it wakes the wait below
            claimed = await store.claim({name: pace}, limit, lease)
            if claimed.claims:
                return await self._messages(claimed)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            # A commit that creates work wakes every waiter (other processes' through the
            # store's notifications); polling covers the rest: a retry falling due, a lease
            # running out.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(work.wait(), min(remaining, 0.5))
            if allowed is not None and not await allowed():
                return None
            if gone is not None and await gone():
                return []

    async def stream(
        self,
        name: str,
        limit: int,
        lease: float,
        heartbeat: float,
        allowed: Callable[[], Awaitable[bool]] | None = None,
    ) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
        """The destination's deliveries as they fall due, never more than `limit` of this
        stream's unreported at once (a result, or a lease running out, frees its place):
        ("deliveries", messages leased together), ("heartbeat", []) after `heartbeat`
        seconds without any, and ("revoked", []) to end when `allowed` says no more. A stream
        whose leases ran out twice with no result in between ends with ("unanswered", []): its
        client is gone or stuck (a sleeping laptop's half-open connection), and each lease it
        takes would only cost the deliveries an attempt."""
        # Handed out here and not yet reported, by delivery id.
        # Results recorded by this process take their entries out at once (settle); those
        # reported to another process are looked up when a lease seems to have run out, and
        # every second while the stream waits for room.
        outstanding: dict[str, Handed] = {}
        self._streams.append(outstanding)
        expected = 0  # entries after the last change this loop made: fewer means results came
        answered = True  # a result came since leases last ran out

        def stuck(expired: int) -> bool:
            """Count leases run out: a second time with no result in between, the client is
            gone or stuck."""
            nonlocal answered
            if not expired:
                return False
            if not answered:
                return True
            answered = False
            return False

        try:
            quiet_since = checked_at = time.monotonic()
            while True:
                answered = answered or len(outstanding) < expected
                now = time.time() + LAPSE_MARGIN
                if any(handed.until <= now for handed in outstanding.values()):
                    reported, taken = await self._look_up(name, outstanding)
                    checked_at = time.monotonic()
                    answered = answered or reported > 0
                    lapsed = [d for d, handed in outstanding.items() if handed.until <= now]
                    for delivery_id in lapsed:  # its lease ran out: due again, for anyone
                        del outstanding[delivery_id]
                    expected = len(outstanding)
                    if stuck(len(lapsed) + taken):
                        yield "unanswered", []
                        return
                until_beat = heartbeat - (time.monotonic() - quiet_since)
                if until_beat <= 0:
                    yield "heartbeat", []
                    quiet_since = time.monotonic()
                    continue
                room = limit - len(outstanding)
                # Refill by halves: one claim of many rather than a claim per result.
                if room >= max(1, limit // 2) or not outstanding:
                    # Back before the first lease runs out: this claim would take it again.
                    first_end = min((h.until for h in outstanding.values()), default=None)
                    wait = until_beat
                    if first_end is not None:
                        wait = first_end - LAPSE_MARGIN - time.time()
                    try:
                        messages = await self.lease(
                            name, room, max(0.0, min(until_beat, wait)), lease, allowed
                        )
                    except DestinationGone:  # the stream ends; reconnecting says why (404)
                        return
                    if messages is None:
                        yield "revoked", []
                        return
                    answered = answered or len(outstanding) < expected  # settled meanwhile
                    # Ours again: its lease ran out between the check above and the claim, or,
                    # while it had not, its result was reported to another process (it is a
                    # retry now).
                    again = 0
                    for message in messages:
                        before = outstanding.get(message["delivery_id"])
                        if before is not None and before.until <= time.time():
                            again += 1
                        elif before is not None:
                            answered = True
                        outstanding[message["delivery_id"]] = Handed(
                            message["lease"], message["lease_until"], message["attempt"]
                        )
                    expected = len(outstanding)
                    if messages:
                        yield "deliveries", messages
                        quiet_since = time.monotonic()
                    if stuck(again):
                        yield "unanswered", []
                        return
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._settled.wait(), min(until_beat, 1.0))
                if time.monotonic() - checked_at >= 1.0:  # results reported to other processes
                    answered = answered or len(outstanding) < expected
                    reported, taken = await self._look_up(name, outstanding)
                    checked_at = time.monotonic()
                    answered = answered or reported > 0
                    expected = len(outstanding)
                    if stuck(taken):
                        yield "unanswered", []
                        return
                if allowed is not None and not await allowed():
                    yield "revoked", []
                    return
        finally:  # by identity: another stream's dict may be equal to this one
            self._streams = [other for other in self._streams if other is not outstanding]

    async def _look_up(self, name: str, outstanding: dict[str, Handed]) -> tuple[int, int]:
        """Take out the entries whose lease this stream no longer holds: (how many were
        reported, their attempt recorded; how many ran out and passed to another client)."""
        asked = [*outstanding]
        held = await self.state.store.read(
            functools.partial(relay_sql.leased, destination=name, delivery_ids=asked)
        )
        settled_here = sum(1 for d in asked if d not in outstanding)  # meanwhile
        gone = {
            delivery_id: handed
            for delivery_id, handed in outstanding.items()
            if (claim := held.get(delivery_id)) is None or lease_token(claim) != handed.token
        }
        if not gone:
            return settled_here, 0
        # Moved on: reported (to another process), or run out and taken by another client
        # (by that client's clock, which may run ahead of ours). The attempt's record tells.
        recorded = await self.state.store.read(
            functools.partial(
                relay_sql.recorded, attempts=[(d, h.attempt) for d, h in gone.items()]
            )
        )
        reported = 0
        for delivery_id, handed in gone.items():
            outstanding.pop(delivery_id, None)
            reported += (delivery_id, handed.attempt) in recorded
        return settled_here + reported, len(gone) - reported

    async def _messages(self, claimed: Claimed) -> list[dict[str, Any]]:
        claims, events = claimed.claims, claimed.events
        gateway = self.state.gateway
        messages = []
        now = int(time.time())
        for claim in claims:
            event = events.get(claim.event_id)
            destination = gateway.destinations[claim.destination]
            if event is None:  # retention removed it: nothing to hand out, the delivery is dead
                gone = Response(None, None, "the event or its payload is no longer stored", 0.0)
                await self._finish([decide(claim, destination, gone, now, event_known=False)])
                continue
            headers = outbound_headers(event, destination, gateway.sources.get(event.source), now)
            messages.append(
                {
                    "delivery_id": claim.delivery_id,
                    "event_id": event.id,
                    "lease": lease_token(claim),
                    "lease_until": claim.lease_until,
                    "attempt": claim.attempt,
                    "replay": claim.replay,
                    "source": event.source,
                    "event_type": event.event_type,
                    "headers": headers,
                    "body": base64.b64encode(event.payload).decode(),
                }
            )
        return messages

    async def settle(self, name: str, results: list[Result]) -> list[str]:
        """Record each result as the attempt and move its delivery on (succeeded, retrying,
        dead); "stale" for a result whose lease is no longer held."""
        store = self.state.store
        destination = self.state.gateway.destinations[name]
        claims = await store.read(
            lambda conn: relay_sql.leased(conn, name, [r.delivery_id for r in results])
        )
        outcomes: dict[int, Outcome] = {}  # by the result's index
        now = time.time()
        for index, result in enumerate(results):
            claim = claims.get(result.delivery_id)
            # A lease that ran out still counts while nobody else took the delivery.
            if claim is None or lease_token(claim) != result.lease:
                continue
            response = Response(
                result.status_code,
                None if result.response_excerpt is None else result.response_excerpt[:EXCERPT],
                result.error,
                result.duration_ms,
                result.retry_after,
            )
            outcomes[index] = decide(claim, destination, response, now - result.duration_ms / 1000)
        # The lease is checked again as the outcome is written: of a result reported twice
        # (at once, or to two processes), one is recorded and the other is stale.
        recorded = await self._finish(list(outcomes.values()), held=True)
        answers = ["stale"] * len(results)
        for index, outcome in zip(outcomes, recorded, strict=True):
            if outcome is not None:
                answers[index] = outcome.status
        for result in results:  # reported, stale or not: no longer a stream's to wait for
            for outstanding in self._streams:
                held = outstanding.get(result.delivery_id)
                if held is not None and held.token == result.lease:
                    del outstanding[result.delivery_id]
        self._settled.set()  # wake the streams waiting for room...
        self._settled = asyncio.Event()  # ...and let the next results wake them again
        return answers

    async def _finish(self, outcomes: list[Outcome], held: bool = False) -> list[Outcome | None]:
        """Record the outcomes (with `held`, those whose lease is still held: None for the
        others) and follow them up: metrics, alerts, a gone receiver's destination."""
        if not outcomes:
            return []
        store = self.state.store
        if held:
            written = await store.finish_held(outcomes)
        else:
            written = [(True, since) for since in await store.finish(outcomes)]
        recorded: list[Outcome | None] = []
        for outcome, (kept, since) in zip(outcomes, written, strict=True):
            recorded.append(outcome if kept else None)
            if not kept:
                continue
            name = outcome.claim.destination
            self.state.attempts[(name, attempt_class(outcome.status_code))] += 1
            destination = self.state.gateway.destinations.get(name)
            if destination is not None:
                await self.aftermath.follow(outcome, destination, since, None)
        return recorded
