"""A provider's REST list API as configured ([sources.NAME.api]): the first page's URL, the
pages after it, and the items a page carries, each with its id and version.

Pure: no I/O. The client (client.py) makes the calls; the jobs decide what the items mean.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
from yarl import URL

from hookyard.config import ApiConfig, resolve_secret
from hookyard.errors import ConfigError

DEFAULT_NEXT = {"next_url": "next", "cursor": "next_cursor"}
MAX_AHEAD = 86400.0  # how far ahead of this clock an item's update time may be
EMPTY_PAGES = 100  # empty pages in a row, each naming a next page, before a pass gives up


class PageError(Exception):
    """A response that is not the page the configuration describes."""


class MalformedItem(PageError):
    """One item that is not as configured (no id, no update time): skipped, unless the page
    has no usable item and the parse is strict (see `RestApi.parse`)."""

    def __init__(self, reason: str, item_id: str | None = None) -> None:
        super().__init__(reason)
        self.item_id = item_id  # when the item has a usable id, and only its other fields fail


class PassGuard:
    """Ends a pass that would page forever: the API leads back to a page fetched already in
    this pass, a page lists exactly the items of the page before (an API that ignores the
    page parameter), or EMPTY_PAGES empty pages in a row each name a next one (an API that
    always links a next page, even past the end)."""

    def __init__(self) -> None:
        self._fetched: set[str] = set()
        self._previous: list[str] = []
        self._empty = 0  # empty pages in a row

    def fetching(self, url: str, shown: str) -> None:
        if url in self._fetched:
            raise _endless(f"the API led back to {shown}, fetched already in this pass")
        self._fetched.add(url)

    def listed(self, page: Page, shown: str) -> None:
        ids = [item.id for item in page.items]
        if ids and ids == self._previous and page.next_url is not None:
            raise _endless(f"{shown} lists the same items as the page before it")
        self._previous = ids
        self._empty = 0 if page.items or page.skipped else self._empty + 1
        if self._empty > EMPTY_PAGES and page.next_url is not None:
            raise _endless(f"{shown} is empty, as were the {EMPTY_PAGES} pages before it")


def _endless(what: str) -> PageError:
    return PageError(
        f"{what}; check the source's pagination settings (pagination, page_param,"
        " limit_param, page_size) against the API"
    )


@dataclass(frozen=True, slots=True)
class Credentials:
    """Resolved secrets of [api.auth]; never logged (repr hides them)."""

    kind: str  # bearer | basic | header | query | oauth2
    name: str = ""  # header or query parameter name
    value: str = field(default="", repr=False)  # token, "user:password" or key
    token_url: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    scope: str | None = None


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    version: str  # what tells this state of the item from others: version, update time or hash
    updated: float | None  # update time, unix seconds, when the item has one
    document: Any
    payload: bytes  # the item as JSON (re-encoded from the page: pages are not signed)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Item]
    next_url: str | None
    total: int | None = None  # how many items the listing holds, when the body says
    skipped: list[MalformedItem] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RestApi:
    source: str
    config: ApiConfig
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    credentials: Credentials | None
    resource: str  # event types are RESOURCE.created, .updated, .deleted

    @classmethod
    def build(cls, source: str, config: ApiConfig, base_dir: Any) -> RestApi:
        key = f"sources.{source}.api"

        def secret(name: str, value: str) -> str:
            return resolve_secret(value, key=f"{key}.{name}", base_dir=base_dir)

        headers = tuple((k, secret(f"headers.{k}", v)) for k, v in config.headers.items())
        auth = config.auth
        credentials = None
        if auth is not None:
            if auth.bearer:
                credentials = Credentials("bearer", value=secret("auth.bearer", auth.bearer))
            elif auth.basic:
                value = secret("auth.basic", auth.basic)
                if ":" not in value:
                    raise ConfigError(f"{key}.auth.basic", 'expected "user:password"')
                credentials = Credentials("basic", value=value)
            elif auth.header or auth.query:
                kind = "header" if auth.header else "query"
                assert auth.key is not None
                name = auth.header or auth.query or ""
                credentials = Credentials(kind, name=name, value=secret("auth.key", auth.key))
            else:
                assert auth.token_url and auth.client_id and auth.client_secret
                credentials = Credentials(
                    "oauth2",
                    token_url=auth.token_url,
                    client_id=auth.client_id,
                    client_secret=secret("auth.client_secret", auth.client_secret),
                    scope=auth.scope,
                )
        return cls(source, config, headers, credentials, config.resource or source)

    # -- URLs ----------------------------------------------------------------------------------

    def first_url(self, since: float | None = None, until: float | None = None) -> str:
        """The first page, filtered by update time where the API allows."""
        config = self.config
        params = dict(config.params)
        if since is not None and config.since_param:
            params[config.since_param] = self.format_time(since)
        if until is not None and config.until_param:
            params[config.until_param] = self.format_time(until)
        if config.limit_param and config.pagination != "none":
            params.setdefault(config.limit_param, str(config.page_size))
        if config.pagination == "page":
            params.setdefault(config.page_param, str(config.first_page))
        elif config.pagination == "offset":
            params.setdefault(config.offset_param, "0")
        return str(URL(config.url).update_query(params))

    def object_url(self, item_id: str) -> str:
        if self.config.object_url is None:
            raise ConfigError(f"sources.{self.source}.api.object_url", "not set")
        # Escaped whole: an id from a payload cannot add path segments ("../admin").
        return self.config.object_url.replace("{id}", quote(item_id, safe=""))

    def format_time(self, when: float) -> str:
        fmt = self.config.time_format
        if fmt == "unix":
            return str(int(when))
        if fmt == "unix_ms":
            return str(int(when * 1000))
        return datetime.fromtimestamp(int(when), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    # -- pages ---------------------------------------------------------------------------------

    def parse(
        self, url: str, body: bytes, links: Mapping[str, str], *, strict: bool = True
    ) -> Page:
        """The items of a page and the next page's URL (None on the last page). `links` maps
        Link header relations to URLs. Malformed items are skipped (`Page.skipped`); when no
        item of a page is usable, `strict` makes that an error: before a job has ever run to
        the end, the configuration is the likelier fault than the API's data."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise PageError(f"the page is not JSON: {exc}") from None
        raw = dig(document, self.config.items, _MISSING) if self.config.items else document
        if raw is _MISSING and strict and isinstance(document, dict):
            # Before a job's first whole run, an `items` path that misses the list the body
            # holds is a likelier story than an empty listing.
            elsewhere = [repr(k) for k, v in document.items() if isinstance(v, list) and v]
            if elsewhere:
                raise PageError(
                    f"expected a list of items at {self.config.items!r}, found none;"
                    f" the body has lists at {', '.join(elsewhere)}"
                )
        if raw is None or raw is _MISSING:
            raw = []  # no items: the array left out (proto3 JSON) or null (a nil slice)
        if not isinstance(raw, list):
            where = f"at {self.config.items!r}" if self.config.items else "as the body"
            raise PageError(f"expected a list of items {where}, found {type(raw).__name__}")
        items: list[Item] = []
        skipped: list[MalformedItem] = []
        for entry in raw:
            try:
                items.append(self._item(entry))
            except MalformedItem as exc:
                skipped.append(exc)
        if skipped and not items and strict:
            raise skipped[0]
        total = document.get("total") if isinstance(document, dict) else None
        return Page(
            items,
            self._next(url, document, links, len(raw)),
            total if isinstance(total, int) and not isinstance(total, bool) else None,
            skipped,
        )

    def _item(self, document: Any) -> Item:
        config = self.config
        if not isinstance(document, dict):
            raise MalformedItem(f"an item is a {type(document).__name__}, not an object")
        item_id = dig(document, config.id_field)
        if item_id is None or isinstance(item_id, dict | list):
            raise MalformedItem(f"an item has no usable {config.id_field!r}")
        if "\x00" in str(item_id):  # PostgreSQL text cannot hold it: the id would not round-trip
            raise MalformedItem(f"item {str(item_id)!r} has a NUL in its id", str(item_id))
        payload = orjson.dumps(document)
        updated = None
        if config.updated_field:
            value = dig(document, config.updated_field)
            if value is None:
                raise MalformedItem(f"item {item_id} has no {config.updated_field!r}", str(item_id))
            try:
                updated = parse_time(value)
            except PageError as exc:
                raise MalformedItem(f"item {item_id}: {exc}", str(item_id)) from None
        if config.version_field:
            version = dig(document, config.version_field)
            if version is None:
                raise MalformedItem(f"item {item_id} has no {config.version_field!r}", str(item_id))
            version_text = str(version)
        elif config.updated_field:
            version_text = str(dig(document, config.updated_field))
        else:
            version_text = "sha256:" + hashlib.sha256(payload).hexdigest()[:32]
        return Item(str(item_id), version_text, updated, document, payload)

    def content_hash(self, item: Item) -> str:
        return hashlib.sha256(item.payload).hexdigest()[:32]

    def change_of(self, item: Item) -> str:
        """created or updated, as far as one item tells (no memory of earlier polls)."""
        config = self.config
        if config.created_field and config.updated_field:
            created = dig(item.document, config.created_field)
            if created is not None and created == dig(item.document, config.updated_field):
                return "created"
        elif config.version_field and str(dig(item.document, config.version_field)) == "1":
            return "created"
        return "updated"

    def _next(self, url: str, document: Any, links: Mapping[str, str], count: int) -> str | None:
        following = self._following(url, document, links, count)
        if count == 0 and following is not None and URL(following) == URL(url):
            return None  # an empty page naming itself as the next: the end, as many APIs say it
        if following is not None and URL(following).origin() != URL(self.config.url).origin():
            # The credentials go with every call: never to a host the response names.
            raise PageError(f"the next page is on another origin: {URL(following).origin()}")
        return following

    def _following(
        self, url: str, document: Any, links: Mapping[str, str], count: int
    ) -> str | None:
        config = self.config
        style = config.pagination
        if style == "none":
            return None
        current = URL(url)
        if style == "link":
            target = links.get("next")
            return str(current.join(URL(target))) if target else None
        if style in ("next_url", "cursor"):
            value = dig(document, config.next or DEFAULT_NEXT[style])
            if value in (None, "", False):
                return None
            if style == "next_url":
                return str(current.join(URL(str(value))))
            return str(current.update_query({config.cursor_param: str(value)}))
        # Page and offset styles have no explicit next: a short (or empty) page is the last.
        # The styles above follow an explicit next even from an empty page (APIs that filter
        # after paging send those); PassGuard ends a pass that would page forever.
        if count < config.page_size:
            return None
        if style == "page":
            page = int(current.query.get(config.page_param, config.first_page))
            return str(current.update_query({config.page_param: str(page + 1)}))
        offset = int(current.query.get(config.offset_param, 0))
        return str(current.update_query({config.offset_param: str(offset + count)}))


def object_key(item_id: str, version: str) -> str:
    """The dedup key of one version of an object as the REST side (reconciliation, a poll, a
    backfill) emitted it: a webhook carrying that version later is a duplicate."""
    return f"obj:{item_id}@{version}"


def webhook_object_key(item_id: str, version: str) -> str:
    """The mark of one version of an object that a webhook carried: the REST side finds it
    and emits nothing for that version."""
    return f"objw:{item_id}@{version}"


_MISSING: Any = object()


def dig(document: Any, path: str, missing: Any = None) -> Any:
    """The value at a dotted path (list indexes allowed), or `missing` when there is none."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return missing
    return node


def parse_time(value: Any) -> float:
    """Unix seconds from ISO 8601 text or a number (seconds, or milliseconds from 1e12). A time
    more than a day ahead (a sentinel such as 9999-12-31, infinity) is refused: as an update
    time it would move a cursor past every change to come."""
    seconds = _seconds(value)
    if not math.isfinite(seconds) or seconds > time.time() + MAX_AHEAD:
        raise PageError(f"{value!r} is not a time up to a day from now")
    return seconds


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise PageError(f"{value!r} is not a time")
    if isinstance(value, int | float):
        # Milliseconds from 1e12 (September 2001); below, seconds: a sentinel such as
        # 253402300799 (9999-12-31) stays far ahead and is refused, not read as 1978.
        return value / 1000 if value >= 1_000_000_000_000 else float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return _seconds(float(text))
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise PageError(f"{value!r} is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    raise PageError(f"{value!r} is not a time")
