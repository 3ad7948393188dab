"""Polling: what changed in a REST API since the last run, as created/updated/deleted events.

Each item is remembered by a fingerprint (its version or update time, and a hash of its
content), so an item is emitted once per change however often it is listed: an item listed
again by the lookback window, an item updated twice in the same second, and a page repeated
after a crash all compare equal to what was stored.

- cursor: asks for items updated since the newest update time seen (never later than our
  clock at the start of the pass, plus AHEAD), minus `lookback` (late writes and clock skew on
  the API's side). Every item seen stays remembered (one row of rest_items: id, fingerprint,
  change count), since its change count is part of its events' dedup keys and tells a later
  update from a creation. A pass is resumed after a crash from the page it stopped at.
- etag / hash: lists everything and compares contents; an item no longer listed is deleted.
  etag sends each page's ETag/Last-Modified stored by the last whole pass, and a 304 page
  costs no work. A crashed pass starts over (its committed pages compare equal), and so does
  a pass whose stored next page (followed from a 304) the API now refuses.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
from croniter import croniter

from hookyard.config import PollConfig
from hookyard.models import NewEvent, Origin
from hookyard.pollers.api import Item, Page, PassGuard
from hookyard.pollers.client import RestError
from hookyard.pollers.jobs import Job
from hookyard.store.rest import Remembered

DEFAULT_INTERVAL = 60.0
DELETED = "deleted"  # the fingerprint of an item no longer listed
QUIET_PAGES = 50  # unchanged pages in a row before a commit all the same (calls, lease)
AHEAD = 60.0  # how far past our clock at the start of a pass its cursor may go (clock skew)


class PollJob(Job):
    origin: Origin = "poll"

    @property
    def config(self) -> PollConfig:
        assert self.source.poll is not None
        return self.source.poll

    def next_run(self) -> float:
        now = time.time()
        if self.config.cron:
            return float(croniter(self.config.cron, now).get_next(float))
        return now + (self.config.interval or DEFAULT_INTERVAL)

    def retry_base(self) -> float:
        return self.config.interval or DEFAULT_INTERVAL

    @property
    def baseline(self) -> bool:
        """The first pass of `initial = "skip"`: remember what exists, emit nothing."""
        return not self.checkpoint.get("ready") and self.config.initial == "skip"

    async def execute(self) -> None:
        if self.config.detect == "cursor":
            await self._cursor_pass()
        else:
            await self._full_pass(conditional=self.config.detect == "etag")

    # -- cursor mode ---------------------------------------------------------------------------

    async def _cursor_pass(self) -> None:
        checkpoint = self.checkpoint
        # The cursor never passes the time of asking: an item stamped ahead (up to a day is
        # accepted) would else hide every change stamped before it. Capped on reading too,
        # for a cursor stored ahead by an earlier version.
        ceiling = time.time() + AHEAD
        since: float | None = checkpoint.get("since")
        since = None if since is None else min(since, ceiling)
        resume = checkpoint.get("resume")
        if resume and not self.resumable(resume["next"]):
            resume = None
        if resume:
            url = resume["next"]
            newest = None if resume["newest"] is None else min(resume["newest"], ceiling)
        else:
            url = self.api.first_url(None if since is None else since - self.config.lookback)
            newest = since
        # A pass of a single page may be asked conditionally: unchanged, nothing changed.
        validators = checkpoint.get("validators")
        conditional = validators if not resume and validators and validators[0] == url else None
        first = url
        guard = PassGuard()
        while True:
            guard.fetching(url, self.client.shown(url))
            try:
                response = await self.client.get(
                    url, self.calls, (conditional[1], conditional[2]) if conditional else None
                )
            except RestError as exc:
                if not self.starts_over(exc, url, resume["next"] if resume else None):
                    raise
                checkpoint = {key: value for key, value in checkpoint.items() if key != "resume"}
                resume, newest = None, since
                url = first = self.api.first_url(
                    None if since is None else since - self.config.lookback
                )
                guard = PassGuard()
                continue
            conditional = None
            if response.status == 304:
                await self.commit([], finished=True, next_run_at=self.next_run())
                return
            page = self.parse(url, response)
            guard.listed(page, self.client.shown(url))
            for item in page.items:
                if item.updated is not None and (newest is None or item.updated > newest):
                    newest = min(item.updated, ceiling)
            if page.next_url is not None:
                next_checkpoint = {
                    **checkpoint,
                    "resume": {"next": self.stored_url(page.next_url), "newest": newest},
                }
            else:
                etag, modified = validators_of(response.headers)
                single = url == first and not resume and (etag or modified)
                next_checkpoint = {
                    "since": newest,
                    "ready": True,
                    "validators": [url, etag, modified] if single else None,
                }
            await self._commit_page(page, None, next_checkpoint)
            if page.next_url is None:
                return
            url = page.next_url

    # -- etag and hash modes -------------------------------------------------------------------

    async def _full_pass(self, *, conditional: bool) -> None:
        store = self.state.store
        stored_pages = await store.rest_pages(self.source.name) if conditional else {}
        seen: set[str] = set()
        blind = False  # an item without an id was skipped: what is missing may be that item
        unchanged_pages: set[str] = set()
        listed: list[str] = []
        # Pages' new validators are stored with the end of the pass only: stored by a pass cut
        # short, a 304 next time would vouch for a page whose missing items were never
        # counted as deleted.
        validated: list[tuple[str, str | None, str | None, str | None]] = []
        url: str | None = self.api.first_url()
        followed: str | None = None  # a stored next page, reached through a 304
        guard = PassGuard()
        while url is not None:
            key = self.stored_url(url)
            assert key is not None
            guard.fetching(key, self.client.shown(url))
            listed.append(key)
            stored = stored_pages.get(key)
            try:
                response = await self.client.get(url, self.calls, stored[:2] if stored else None)
            except RestError as exc:
                if not (stored_pages and self.starts_over(exc, url, followed)):
                    raise
                # Once, without validators: a 304 would lead to the same stale page again.
                stored_pages, url, followed, guard = {}, self.api.first_url(), None, PassGuard()
                seen, blind, unchanged_pages, listed, validated = set(), False, set(), [], []
                continue
            if response.status == 304 and stored is not None:
                unchanged_pages.add(key)
                url = followed = stored[2]
                continue
            followed = None
            page = self.parse(url, response)
            guard.listed(page, self.client.shown(url))
            seen.update(item.id for item in page.items)
            seen.update(skip.item_id for skip in page.skipped if skip.item_id is not None)
            blind = blind or any(skip.item_id is None for skip in page.skipped)
            remembered = (*validators_of(response.headers), self.stored_url(page.next_url))
            if conditional and remembered != stored:
                validated.append((key, *remembered))
            await self._commit_page(page, key, None)
            url = page.next_url
        # The end of a full pass: what is no longer listed was deleted.
        gone: list[tuple[str, int]] = []
        after = ""
        while not blind and (chunk := await store.rest_item_pages(self.source.name, after)):
            gone += [
                (item_id, changes)
                for item_id, page_url, changes in chunk
                if item_id not in seen and page_url not in unchanged_pages
            ]
            after = chunk[-1][0]
        gone = [(item_id, n) for item_id, n in gone if await self._really_gone(item_id)]
        events = [] if self.baseline else [self._deleted(item_id, n) for item_id, n in gone]
        await self.commit(
            events,
            # Remembered as deleted, not forgotten: its changes go on counting if it returns.
            items=[(item_id, DELETED, n + 1, None) for item_id, n in gone],
            pages=validated,
            keep_pages=listed if conditional else None,
            checkpoint={"ready": True},
            finished=True,
            next_run_at=self.next_run(),
        )

    async def _really_gone(self, item_id: str) -> bool:
        """Whether an item missing from the listing is deleted. A list that shifts while it is
        paged through (an item updated to the top of a list sorted by update time, one
        deleted from an earlier page) hides items that still exist: with `object_url` set, the
        object's own 404 or 410 confirms it; without, missing is taken as deleted."""
        if self.api.config.object_url is None:
            return True
        response = await self.client.get(self.api.object_url(item_id), self.calls, gone_ok=True)
        return response.status in (404, 410)

    def _deleted(self, item_id: str, changes: int) -> NewEvent:
        payload = orjson.dumps({"id": item_id, "deleted": True})
        return self.event(item_id, "deleted", payload, (f"poll:{item_id}#{changes + 1}",))

    # -- both ----------------------------------------------------------------------------------

    async def _commit_page(
        self,
        page: Page,
        page_key: str | None,
        checkpoint: dict[str, Any] | None,
        **change: Any,
    ) -> None:
        """Compare a page's items with what is remembered; commit the changes as events."""
        known = await self.state.store.rest_fingerprints(
            self.source.name, [item.id for item in page.items]
        )
        events: list[NewEvent] = []
        items: list[tuple[str, str, int, str | None]] = []
        for item in page.items:
            fingerprint = f"{item.version}|{self.api.content_hash(item)}"
            before = known.get(item.id)
            if before is not None and before.fingerprint == fingerprint:
                if before.page != page_key:  # listed elsewhere now (matters for 304 pages)
                    items.append((item.id, fingerprint, before.changes, page_key))
                continue
            changes = (before.changes if before else 0) + 1
            items.append((item.id, fingerprint, changes, page_key))
            if not self.baseline:
                events.append(self._changed(item, before, changes))
        finished = checkpoint is not None and "resume" not in checkpoint
        self.unsaved_checked += len(page.items)
        if not (events or items or finished or self.unsaved_skipped or any(change.values())):
            # Nothing changed: no commit (an fsync) for this page, unless it is long since the
            # last one. A crash meanwhile only repeats pages that changed nothing.
            self.quiet_pages += 1
            if self.quiet_pages < QUIET_PAGES:
                return
        await self.commit(
            events,
            items=items,
            checkpoint=checkpoint,
            finished=finished,
            next_run_at=self.next_run() if finished else None,
            **change,
        )

    def _changed(self, item: Item, before: Remembered | None, changes: int) -> NewEvent:
        keys = (f"poll:{item.id}#{changes}",)
        if before is not None and before.fingerprint == DELETED:
            # Back after a deletion: created again, and its versions may start over.
            return self.event(item.id, "created", item.payload, keys)
        # The same object version by another path (a webhook, a backfill) is this change,
        # unless only the content changed under an unchanged version (same-second updates).
        # A content hash is no version: content may change back.
        versioned = self.api.config.version_field or self.api.config.updated_field
        new_version = before is None or before.fingerprint.split("|", 1)[0] != item.version
        change = "updated" if before is not None else "created"
        version = item.version if versioned and new_version else None
        return self.event(item.id, change, item.payload, keys, version)


def validators_of(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """ETag and Last-Modified to send back next time. A Last-Modified in the second the page
    was served is not kept: another change in that second would get a 304."""
    modified = headers.get("Last-Modified")
    served = headers.get("Date")
    if modified and served:
        try:
            fresh = parsedate_to_datetime(served) <= parsedate_to_datetime(modified)
        except (TypeError, ValueError):
            fresh = True
        if fresh:
            modified = None
    elif modified:
        modified = None  # no Date to tell how fresh it is
    return headers.get("ETag"), modified
