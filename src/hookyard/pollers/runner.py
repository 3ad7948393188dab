"""The poller role: runs each source's due jobs (poll, reconcile, backfill) under a lease, so
that one process at a time runs a job however many share the database. A failed run is tried
again later, backing off; its error and next run are stored where the API shows them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from hookyard.deliver.egress import GuardedSession
from hookyard.gateway import Source
from hookyard.pollers.client import RateLimited, RestClient
from hookyard.pollers.jobs import JOBS, LEASE, Job
from hookyard.pollers.poll import PollJob
from hookyard.state import AppState
from hookyard.store.rest import JobRun, LeaseLost

log = logging.getLogger("hookyard.pollers")

MAX_RUNS = 16  # jobs running at once in one process
MAX_BACKOFF = 3600.0
CHECK_EVERY = 1.0  # seconds between looks for due jobs, unless woken earlier
GONE_RETRY = 60.0  # a job whose source lost it in a reload is looked at again after this


class Pollers:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self._http = GuardedSession(lambda: state.gateway.settings.egress.allow, 300.0)
        self._clients: dict[str, RestClient] = {}
        self._runs: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="hookyard-pollers")

    async def stop(self) -> None:
        """Runs under way stop where they are: their last page is committed, and the next
        process to take the job (after its lease) resumes from there."""
        tasks = [t for t in (self._task, *self._runs.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._http.close()

    def _wanted(self) -> list[tuple[str, str, float | None]]:
        """(source, job, when a job never run before is first due) of this configuration."""
        now = time.time()
        wanted: list[tuple[str, str, float | None]] = []
        for source in self.state.gateway.sources.values():
            if source.api is None:
                continue
            if source.poll is not None:
                wanted.append((source.name, "poll", now))
            if source.reconcile is not None:
                wanted.append((source.name, "reconcile", now + source.reconcile.interval))
            wanted.append((source.name, "backfill", None))  # only when one was asked for
        return [w for w in wanted if (w[0], w[1]) not in self._runs]

    async def _due(
        self, wanted: list[tuple[str, str, float | None]]
    ) -> list[tuple[str, str, float | None]]:
        """The wanted jobs worth a claim: new ones, and those due. A read, so that an idle
        second costs no write transaction."""
        if not wanted:
            return []
        now = time.time()
        rows = {(r["source"], r["job"]): r for r in await self.state.store.rest_jobs()}
        due: list[tuple[str, str, float | None]] = []
        for source, job, first_due in wanted:
            row = rows.get((source, job))
            if row is None:
                if first_due is not None:
                    due.append((source, job, first_due))
            elif row["next_run_at"] is not None and row["next_run_at"] <= now:
                due.append((source, job, first_due))
        return due

    async def _loop(self) -> None:
        ready = self.state.rest_ready
        while True:
            ready.clear()
            try:
                wanted = (await self._due(self._wanted()))[: MAX_RUNS - len(self._runs)]
                if wanted:
                    for run in await self.state.store.claim_rest_jobs(wanted, LEASE):
                        key = (run.source, run.job)
                        task = asyncio.create_task(self._execute(run))
                        self._runs[key] = task
                        task.add_done_callback(self._finished)
            except Exception:
                log.exception("could not claim REST jobs; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), CHECK_EVERY)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._runs = {key: t for key, t in self._runs.items() if t is not task}

    def _client(self, source: Source) -> RestClient:
        client = self._clients.get(source.name)
        assert source.api is not None
        if client is None or client.api is not source.api:  # new, or reloaded
            client = RestClient(source.api, self._http.get, self.state.rest_calls)
            self._clients[source.name] = client
        return client

    def _job(self, run: JobRun) -> Job | None:
        source = self.state.gateway.sources.get(run.source)
        if source is None or source.api is None:
            return None
        if run.job == "poll":
            return PollJob(self.state, source, self._client(source), run) if source.poll else None
        if run.job == "reconcile" and source.reconcile is None:
            return None
        return JOBS[run.job](self.state, source, self._client(source), run)

    async def _execute(self, run: JobRun) -> None:
        store = self.state.store
        job = self._job(run)
        if job is None:  # the source or its job is gone from the configuration (a reload)
            # A backfill is over; a poll or reconciliation runs again if it comes back.
            later = None if run.job == "backfill" else time.time() + GONE_RETRY
            with contextlib.suppress(Exception):
                await store.fail_rest_run(run, "no longer configured", later, (0, 0))
            return
        current = asyncio.current_task()
        assert current is not None
        heartbeat = asyncio.create_task(self._heartbeat(run, current))
        try:
            await job.execute()
        except LeaseLost as exc:
            log.warning("%s", exc)
        except Exception as exc:
            wait = min(job.retry_base() * 2 ** min(run.failures, 16), MAX_BACKOFF)
            if isinstance(exc, RateLimited):  # the provider said when: not a second earlier
                wait = max(wait, exc.resume_at - time.time())
            error = job.client.redact(str(exc) or type(exc).__name__)
            log.warning(
                "%s %s failed (%d in a row), next run in %.0fs: %s",
                run.source,
                run.job,
                run.failures + 1,
                wait,
                error,
            )
            with contextlib.suppress(Exception):  # else the lease runs out: a retry anyway
                await store.fail_rest_run(run, error, time.time() + wait, job.calls.take())
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, run: JobRun, task: asyncio.Task[None]) -> None:
        """Keep the lease while the run waits on a slow API; stop the run if it was lost."""
        while True:
            await asyncio.sleep(LEASE / 3)
            try:
                renewed = await self.state.store.renew_rest_lease(run, time.time() + LEASE)
            except Exception as exc:  # the database is away: the run's commits will tell
                log.warning("%s %s: could not renew the lease: %s", run.source, run.job, exc)
                continue
            if not renewed:
                log.warning("%s %s: lease lost to another process", run.source, run.job)
                task.cancel()
                return
