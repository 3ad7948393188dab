"""What a job run shares (the source, its API client, the lease, event building), and the two
jobs that read a time window of the API: reconciliation and backfill. Polling is in poll.py.

Every page is committed with the events it produced and the run's checkpoint (where a resumed
run goes on), so a crash at any point neither skips nor repeats a change: a repeat is caught by
the item memory (poll) or by the object's dedup key (`obj:ID@VERSION`, shared with webhooks).
"""

from __future__ import annotations

import abc
import logging
import math
import time
from typing import Any

import orjson
from yarl import URL

from hookyard.gateway import Source
from hookyard.ids import new_id
from hookyard.ingest import lazy_json
from hookyard.models import Accepted, NewEvent, Origin
from hookyard.pollers.api import (
    Item,
    Page,
    PassGuard,
    RestApi,
    object_key,
    webhook_object_key,
)
from hookyard.pollers.client import (
    Calls,
    Refused,
    Response,
    RestClient,
    RestError,
    strip_credentials,
)
from hookyard.state import AppState
from hookyard.store import queries
from hookyard.store.rest import JobRun, RestCommit

log = logging.getLogger("hookyard.pollers")

LEASE = 60.0  # renewed by every commit and by the runner's heartbeat
CATCH_UP = 7 * 86400.0  # reconciliation looks back this far at most after a long stop


class Job(abc.ABC):
    origin: Origin

    def __init__(self, state: AppState, source: Source, client: RestClient, run: JobRun) -> None:
        assert source.api is not None
        self.state = state
        self.source = source
        self.api: RestApi = source.api
        self.client = client
        self.run = run
        self.calls = Calls()
        self.unsaved_checked = 0  # items examined since the last commit
        self.unsaved_skipped = 0  # malformed items skipped since the last commit
        self.quiet_pages = 0  # pages since the last commit (poll.py skips empty commits)
        self.usable_seen = False  # a page of this run had a well-formed item
        self.checkpoint: dict[str, Any] = orjson.loads(run.checkpoint) if run.checkpoint else {}

    @abc.abstractmethod
    async def execute(self) -> None:
        """Run to the end, committing as it goes; the last commit schedules the next run."""

    def retry_base(self) -> float:
        """The first wait after a failed run; it doubles with each further failure."""
        return 60.0

    async def get_page(self, url: str) -> Page:
        response = await self.client.get(url, self.calls)
        return self.parse(url, response)

    def parse(self, url: str, response: Response) -> Page:
        """The page's items. Malformed items are skipped, logged and counted, so a bad record
        does not stop the source; until the job has once run to the end or this run has seen
        a usable item, a page with no usable item fails the run instead (the settings are then
        the likelier fault)."""
        if response.status == 204:  # "No Content": nothing listed, and no next page
            return Page([], None)
        strict = not (self.run.succeeded or self.usable_seen)
        page = self.api.parse(url, response.body, response.links, strict=strict)
        self.usable_seen = self.usable_seen or bool(page.items)
        if page.skipped:
            self.state.rest_skipped[self.source.name] += len(page.skipped)
            self.unsaved_skipped += len(page.skipped)
            log.warning(
                "%s %s: skipped %d malformed item(s) on %s: %s",
                self.source.name,
                self.run.job,
                len(page.skipped),
                self.client.shown(url),
                self.client.redact(str(page.skipped[0])),
            )
        return page

    def event(
        self,
        item_id: str,
        change: str,
        payload: bytes,
        keys: tuple[str, ...],
        version: str | None = None,
    ) -> NewEvent:
        """An event of an item. With its version, the same version stored by another path (a
        webhook's mark, or this side's object key) makes it a duplicate."""
        event_type = f"{self.api.resource}.{change}"
        if version is not None:
            keys += (object_key(item_id, version),)
        return NewEvent(
            id=new_id("evt"),
            source=self.source.name,
            origin=self.origin,
            received_at=time.time(),
            provider_event_id=None,
            event_type=event_type,
            dedup_keys=keys,
            content_type="application/json",
            payload=payload,
            destinations=self.state.gateway.targets(
                self.source.name, event_type, lazy_json(payload)
            ),
            cross_keys=(webhook_object_key(item_id, version),) if version is not None else (),
        )

    async def commit(self, events: list[NewEvent], **change: Any) -> list[Accepted]:
        """Commit a page: its events, the job's state and the calls it took."""
        checkpoint = change.pop("checkpoint", None)
        accepted = await self.state.store.commit_rest(
            RestCommit(
                source=self.source.name,
                job=self.run.job,
                run_id=self.run.run_id,
                lease_until=time.time() + LEASE,
                checkpoint=None if checkpoint is None else orjson.dumps(checkpoint).decode(),
                events=queries.event_rows(None, events) if events else None,
                calls=self.calls.take(),
                checked=change.pop("checked", 0) + self.unsaved_checked,
                skipped=self.unsaved_skipped,
                **change,
            )
        )
        self.unsaved_checked = self.unsaved_skipped = self.quiet_pages = 0
        fresh = [event for event, a in zip(events, accepted, strict=True) if not a.duplicate]
        self.state.rest_events[self.source.name, self.origin] += len(fresh)
        if any(event.destinations for event in fresh):
            self.state.work_ready.set()
        return accepted

    def stored_url(self, url: str | None) -> str | None:
        """A URL fit to store: an API key in its query string is not kept."""
        return None if url is None else strip_credentials(url, self.api.credentials)

    def starts_over(self, exc: Exception, url: str, resumed: str | None) -> bool:
        """Whether a pass resumed at a stored page that the API now refuses (its cursor
        expired, most likely) starts over: else every later run would fail on that page for
        good. Item memory and object keys keep what was emitted from being emitted again."""
        if not (isinstance(exc, Refused) and exc.stale_page and url == resumed):
            return False
        log.warning(
            "%s %s: the stored page was refused (%s); starting the pass over",
            self.source.name,
            self.run.job,
            exc,
        )
        return True

    def resumable(self, url: str | None) -> str | None:
        """A stored page to resume from, unless a reload moved the source's API to another
        origin since (the credentials go with every call: never to the old host); then the
        pass starts over."""
        if url is None or URL(url).origin() == URL(self.api.config.url).origin():
            return url
        log.warning(
            "%s %s: the stored page is not on the configured API's host any more; starting over",
            self.source.name,
            self.run.job,
        )
        return None


class WindowJob(Job):
    """Lists the objects updated in a time window, page by page, and emits the versions the
    source has not seen, each keyed by its object version."""

    @abc.abstractmethod
    def window(self) -> tuple[float, float | None]:
        """(since, until) of this run; until None: up to now."""

    async def execute(self) -> None:
        checkpoint = self.checkpoint
        since, until = self.window()
        resumed = self.resumable(checkpoint.get("next"))
        url: str | None = resumed or self.api.first_url(since, until)
        guard = PassGuard()
        while url is not None:
            guard.fetching(url, self.client.shown(url))
            try:
                page = await self.get_page(url)
            except RestError as exc:
                if not self.starts_over(exc, url, resumed):
                    raise
                checkpoint, resumed = self.restarted(checkpoint), None
                url, guard = self.api.first_url(since, until), PassGuard()
                continue
            guard.listed(page, self.client.shown(url))
            wanted = [item for item in page.items if _within(item, since, until)]
            # Seen: emitted by this side before, or carried by a webhook.
            keys = {
                item.id: (
                    object_key(item.id, item.version),
                    webhook_object_key(item.id, item.version),
                )
                for item in wanted
            }
            seen = await self.state.store.known_keys(
                self.source.name, [key for pair in keys.values() for key in pair]
            )
            events = [
                self.event(item.id, self.api.change_of(item), item.payload, (), item.version)
                for item in wanted
                if seen.isdisjoint(keys[item.id])
            ]
            checkpoint = self.progress(checkpoint, page, len(wanted))
            checkpoint["next"] = self.stored_url(page.next_url)
            finished = page.next_url is None
            await self.commit(
                events,
                checkpoint=checkpoint,
                checked=len(wanted),
                finished=finished,
                next_run_at=self.next_run() if finished else None,
            )
            url = page.next_url

    def progress(self, checkpoint: dict[str, Any], page: Page, checked: int) -> dict[str, Any]:
        return dict(checkpoint)

    def restarted(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint of the same window's pass started over."""
        return {key: value for key, value in checkpoint.items() if key != "next"}

    @abc.abstractmethod
    def next_run(self) -> float | None:
        """When the job runs again once this run is done (None: never)."""


def _within(item: Item, since: float, until: float | None) -> bool:
    """APIs that ignore the window's parameters return more: keep what is in it."""
    if item.updated is None:
        return True
    return item.updated >= since and (until is None or item.updated < until)


class ReconcileJob(WindowJob):
    """Every interval: what changed in the window, checked against what the webhooks carried.
    Webhooks still in flight get `grace` seconds before their objects count as missed."""

    origin: Origin = "reconcile"
    GRACE = 60.0

    def window(self) -> tuple[float, float | None]:
        stored = self.checkpoint.get("window")
        if self.checkpoint.get("next") and stored:  # a crashed run resumes its own window
            return stored[0], stored[1]
        config = self.source.reconcile
        assert config is not None
        now = time.time()
        # Whole seconds: APIs take times to the second, so a window ending mid-second would
        # leave the rest of that second to neither this window nor the next.
        until = float(math.floor(now - min(self.GRACE, config.interval)))
        since = until - config.window
        checked_until = self.checkpoint.get("until")
        if checked_until is not None:  # join the last window: downtime leaves no gap
            since = max(min(since, checked_until), now - CATCH_UP)
        self.checkpoint["window"] = [since, until]
        return since, until

    def progress(self, checkpoint: dict[str, Any], page: Page, checked: int) -> dict[str, Any]:
        if page.next_url is None:  # the window is done: the next one starts here at the latest
            return {**checkpoint, "until": checkpoint["window"][1]}
        return dict(checkpoint)

    def next_run(self) -> float:
        assert self.source.reconcile is not None
        return time.time() + self.source.reconcile.interval

    def retry_base(self) -> float:
        assert self.source.reconcile is not None
        return min(self.source.reconcile.interval, 60.0)


class BackfillJob(WindowJob):
    """`hookyard backfill`: the history between two times, once; progress is in the
    checkpoint so that an interrupted backfill resumes where it stopped."""

    origin: Origin = "backfill"

    def window(self) -> tuple[float, float | None]:
        return float(self.checkpoint["since"]), self.checkpoint.get("until")

    def progress(self, checkpoint: dict[str, Any], page: Page, checked: int) -> dict[str, Any]:
        return {
            **checkpoint,
            "pages": checkpoint.get("pages", 0) + 1,
            "items": checkpoint.get("items", 0) + checked,
            "total": page.total if page.total is not None else checkpoint.get("total"),
            "done": page.next_url is None,
        }

    def restarted(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in checkpoint.items() if k not in ("next", "pages", "items")}

    def next_run(self) -> None:
        return None  # done: not scheduled again

    def retry_base(self) -> float:
        return 10.0


def new_backfill(since: float, until: float | None) -> str:
    return orjson.dumps({"since": since, "until": until, "pages": 0, "items": 0}).decode()


JOBS: dict[str, type[Job]] = {"reconcile": ReconcileJob, "backfill": BackfillJob}
