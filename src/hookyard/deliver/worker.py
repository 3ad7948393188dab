"""The delivery worker: claim due deliveries under a lease, send them, record the outcome.

It wakes as soon as a commit creates work (no polling delay on the hot path; other processes'
commits arrive through the store's notifications), and otherwise sleeps until the next delivery
or lease falls due, or `poll_interval` at most. A claim is sent at once, so no lease runs out
while waiting. The store caps each destination's claims by what all processes sharing the
database may have together (concurrency, rate limit, state), counting as open at the receiver
every lease but those whose answers this worker holds and has yet to record, so the next
claims need not wait for those records to commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter

from hookyard.deliver.http import Response
from hookyard.deliver.outcome import Aftermath, attempt_class, decide
from hookyard.deliver.senders import Senders
from hookyard.models import Claim, EventData, Outcome, Pace
from hookyard.state import AppState

log = logging.getLogger("hookyard.worker")
CLAIM_BATCH = 500


class Worker:
    def __init__(self, state: AppState, sender: Senders | None = None) -> None:
        self.state = state
        self.sender = sender or Senders()
        self._tasks: dict[asyncio.Task[None], Claim] = {}
        self._slot_released = asyncio.Event()
        self._stopping = False
        # Leases (delivery id, lease) holding a destination slot: from the claim until the
        # destination's answer is in; and how many each destination has (Pace.sending).
        self._sending: set[tuple[str, float]] = set()
        self._open: Counter[str] = Counter()
        # Per destination, the leases whose answer is in and whose attempt is not recorded
        # yet: still leased, but no longer open at the receiver (Pace.answered).
        self._answered: dict[str, set[tuple[str, float]]] = {}
        self._round = 0  # rotates which destination claims first
        self.aftermath = Aftermath(state)
        self._finishing: list[tuple[Outcome, asyncio.Future[float | None]]] = []
        self._writes: set[asyncio.Task[None]] = set()
        self._retry_in: float | None = None  # see Claimed.retry_in
        self._main: asyncio.Task[None] | None = None
        self._work = state.work_ready.latch()

    def start(self) -> None:
        self._main = asyncio.create_task(self._run(), name="hookyard-worker")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, let attempts under way finish for `grace` seconds, give back the rest."""
        self._stopping = True
        self._work.set()
        if self._main is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        # Given back: the attempts still waiting for their destination's answer. Those whose
        # answer is in wait only for their record, written below: given back first, a
        # delivered event went back into the queue and was sent again after a restart.
        leftover = [
            claim
            for task, claim in self._tasks.items()
            if not task.done() and _lease(claim) in self._sending
        ]
        for task in list(self._tasks):
            task.cancel()
        if leftover:
            await self.state.store.release(leftover)
        if self._finishing:  # collected in this turn of the loop: write them now
            self._write_finishes()
        if self._writes:  # outcomes already collected still reach the database
            await asyncio.wait(list(self._writes), timeout=grace)
        await self.sender.close()

    def _claim_paces(self) -> tuple[dict[str, Pace], int]:
        """What each destination may take (its concurrency, up to CLAIM_BATCH: the store
        subtracts what is open at the receiver when the claim runs, which may be well after it
        was asked for), and how many all together (max_in_flight). The order rotates so that,
        when the overall cap binds, no destination is always served last."""
        settings = self.state.gateway.settings.worker
        paces = {}
        names = list(self.state.gateway.destinations)
        self._round += 1
        shift = self._round % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            destination = self.state.gateway.destinations[name]
            if destination.relay:  # its clients lease its deliveries (relay/)
                continue
            if self._open[name] < destination.concurrency:
                paces[name] = Pace(
                    min(destination.concurrency, CLAIM_BATCH),
                    destination.concurrency,
                    destination.rate_limit,
                    sending=functools.partial(self._open.__getitem__, name),
                    answered=self._answered.setdefault(name, set()).copy,
                )
        return paces, settings.max_in_flight - len(self._sending)

    async def _run(self) -> None:
        while not self._stopping:
            self._work.clear()
            self._slot_released.clear()
            try:
                paces, total = self._claim_paces()
                claims = []
                self._retry_in = None
                if paces and total > 0:
                    claimed = await self.state.store.claim(paces, total, self.state.gateway.lease)
                    claims, self._retry_in = claimed.claims, claimed.retry_in
                    paces = {n: p for n, p in paces.items() if n not in claimed.blocked}
                if claims:
                    for claim in claims:
                        self._spawn(claim, claimed.events.get(claim.event_id))
                    continue
                if total <= 0:  # max_in_flight reached: a finishing attempt wakes the loop
                    timeout = self.state.gateway.settings.worker.poll_interval
                else:
                    timeout = await self._idle_timeout(paces)
            except Exception:
                log.exception("worker could not claim deliveries; retrying in 1s")
                timeout = 1.0
            waiters = [
                asyncio.ensure_future(self._work.wait()),
                asyncio.ensure_future(self._slot_released.wait()),
            ]
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def _idle_timeout(self, paces: dict[str, Pace]) -> float:
        """Sleep until the next delivery of a destination with free slots falls due; a full
        destination wakes the loop through `_slot_released` instead (else its backlog, already
        due, would make this loop spin)."""
        timeout = self.state.gateway.settings.worker.poll_interval
        if self._retry_in is not None:  # a rate-limited or contended destination frees then
            timeout = min(timeout, self._retry_in + 0.001)
        if not paces:
            return timeout
        due = await self.state.store.next_due(list(paces))
        if due is not None:
            timeout = min(timeout, max(0.0, due - time.time()) + 0.001)
        return timeout

    def _spawn(self, claim: Claim, event: EventData | None) -> None:
        self._sending.add(_lease(claim))
        self._open[claim.destination] += 1
        task = asyncio.create_task(self._attempt(claim, event))
        self._tasks[task] = claim
        task.add_done_callback(self._done)

    def _release_slot(self, claim: Claim, answered: bool = False) -> None:
        """The destination's slot is free once its answer is in: the attempt's record is
        committed afterwards without holding the slot (the lease still guards the row)."""
        if _lease(claim) in self._sending:
            self._sending.discard(_lease(claim))
            self._open[claim.destination] -= 1
            if answered:
                self._answered.setdefault(claim.destination, set()).add(_lease(claim))
            self._slot_released.set()

    def _forget_answer(self, claim: Claim) -> None:
        """Its record is committed (or has failed: the lease then counts until it runs out)."""
        self._answered.get(claim.destination, set()).discard(_lease(claim))

    def _done(self, task: asyncio.Task[None]) -> None:
        claim = self._tasks.pop(task)
        self._release_slot(claim)
        self._forget_answer(claim)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "delivery attempt of %s failed unexpectedly",
                claim.delivery_id,
                exc_info=task.exception(),
                extra={"delivery_id": claim.delivery_id, "event_id": claim.event_id},
            )

    async def _attempt(self, claim: Claim, event: EventData | None) -> None:
        gateway = self.state.gateway
        destination = gateway.destinations.get(claim.destination)
        started_at = time.time()
        if destination is None:
            # Removed from the config while claimed: give the delivery back untouched; it stays
            # pending, unclaimed, until a destination of that name is configured again.
            await self.state.store.release([claim])
            return
        if event is None:
            response = Response(None, None, "the event or its payload is no longer stored", 0.0)
        elif self.state.tracing.enabled:
            attributes = {
                "hookyard.event_id": event.id,
                "hookyard.destination": destination.name,
                "hookyard.attempt": claim.attempt,
            }
            with self.state.tracing.span(
                "hookyard.deliver", attributes, parent=event.trace_context
            ) as carrier:
                response = await self.sender.send(
                    claim, destination, event, gateway.sources.get(event.source), carrier
                )
        else:
            response = await self.sender.send(
                claim, destination, event, gateway.sources.get(event.source)
            )
        self._release_slot(claim, answered=True)
        label = attempt_class(response.status_code, response.confirmed)
        self.state.attempts[(destination.name, label)] += 1
        outcome = decide(claim, destination, response, started_at, event_known=event is not None)
        try:
            failing_since = await self._record(outcome)
        except Exception as exc:  # the lease will expire and the delivery be tried again
            self._forget_answer(claim)
            log.error(
                "could not record attempt of %s: %s",
                claim.delivery_id,
                exc,
                extra={"delivery_id": claim.delivery_id, "event_id": claim.event_id},
            )
            return
        self._forget_answer(claim)
        await self.aftermath.follow(
            outcome, destination, failing_since, event.source if event else None
        )

    async def _record(self, outcome: Outcome) -> float | None:
        """Queue the outcome for the next group write: the attempts finishing in one turn of
        the event loop share one operation (and one trip through the writer thread)."""
        future: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()
        self._finishing.append((outcome, future))
        if len(self._finishing) == 1:
            asyncio.get_running_loop().call_soon(self._write_finishes)
        return await future

    def _write_finishes(self) -> None:
        batch, self._finishing = self._finishing, []
        if not batch:  # written already (stop)
            return

        async def write() -> None:
            try:
                results = await self.state.store.finish([outcome for outcome, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():  # its attempt may have been cancelled at shutdown
                        future.set_exception(exc)
                return
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            # A delivery waiting behind one of these on its ordering key may go from now.
            self._slot_released.set()

        task = asyncio.create_task(write())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)


def _lease(claim: Claim) -> tuple[str, float]:
    """A claim's identity: its delivery and lease (the same delivery may be leased again)."""
    return (claim.delivery_id, claim.lease_until)
