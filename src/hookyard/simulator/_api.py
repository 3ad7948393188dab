"""The simulated REST API: five pagination styles over one ordered collection, and single objects.

Every call passes the same gate, in this order: counted, rate limited, authenticated, failed on
demand (fail_next), then served, with conditional requests (ETag / Last-Modified) answered last.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from yarl import URL

from hookyard.simulator._auth import Authenticator
from hookyard.simulator._limits import Failures, RateLimiter
from hookyard.simulator._store import Key, Store
from hookyard.simulator._time import http_date, parse_http_date, parse_when
from hookyard.simulator._types import SimulatorOptions, Stats


class BadRequest(Exception):
    """A query parameter the API cannot use: answered 400."""


@dataclass(slots=True)
class Payload:
    """A 200 answer before conditional-request handling."""

    content: bytes
    last_modified: int  # the newest updated_at in it
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[web.Request], "Payload | web.Response"]


def json_response(body: Any, status: int, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


class Api:
    def __init__(
        self,
        store: Store,
        options: SimulatorOptions,
        stats: Stats,
        auth: Authenticator | None,
        failures: Failures,
    ) -> None:
        self.store = store
        self.options = options
        self.stats = stats
        self.auth = auth
        self.failures = failures
        self.limiter = (
            None
            if options.rate_limit is None
            else RateLimiter(options.rate_limit, options.rate_window)
        )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/cursor/objects", self._gate(self._cursor)),
            web.get("/page/objects", self._gate(self._page)),
            web.get("/offset/objects", self._gate(self._offset)),
            web.get("/link/objects", self._gate(self._link)),
            web.get("/next/objects", self._gate(self._next)),
            web.get("/objects/{id}", self._gate(self._object)),
        ]

    # -- the gate --------------------------------------------------------------------------------

    def _gate(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            self.stats.calls += 1
            limits: dict[str, str] = {}
            if self.limiter is not None:
                allowed, limits = self.limiter.take()
                if not allowed:
                    self.stats.rate_limited += 1
                    return json_response({"error": "rate_limited"}, 429, limits)
            response = self._answer(request, handler)
            response.headers.update(limits)  # every answer tells the client where it stands
            return response

        return serve

    def _answer(self, request: web.Request, handler: Handler) -> web.Response:
        if self.auth is not None and (denied := self.auth.check(request)) is not None:
            return denied
        failure = self.failures.take()
        if failure is not None:
            self.stats.failed += 1
            status, headers, body = failure
            return json_response(body, status, headers)
        try:
            result = handler(request)
        except BadRequest as exc:
            return json_response({"error": "bad_request", "message": str(exc)}, 400)
        return result if isinstance(result, web.Response) else self._conditional(request, result)

    def _conditional(self, request: web.Request, payload: Payload) -> web.Response:
        headers = dict(payload.headers)
        if self.options.etag:
            digest = hashlib.sha256(payload.content)
            for name, value in sorted(payload.headers.items()):  # a Link change is a change
                digest.update(f"\n{name}: {value}".encode())
            etag = f'"{digest.hexdigest()[:32]}"'
            headers["ETag"] = etag
            headers["Last-Modified"] = http_date(payload.last_modified)
            if _not_modified(request, etag, payload.last_modified):
                self.stats.not_modified += 1
                return web.Response(status=304, headers=headers)
        return web.Response(body=payload.content, content_type="application/json", headers=headers)

    # -- the styles ------------------------------------------------------------------------------

    def _cursor(self, request: web.Request) -> Payload:
        """Keyset: the cursor is the last (updated_at, id) returned, so nothing is skipped."""
        query = request.query
        limit = self._size(query, "limit")
        cursor = query.get("cursor")
        if cursor:
            after, since, until = _decode_cursor(cursor)
            start = max(self.store.lower(since), self.store.after(after))
        else:
            since, until = _filters(query)
            start = self.store.lower(since)
        end = self.store.upper(until)
        keys = self.store.keys(start, min(start + limit, end))
        has_more = start + limit < end
        body = {
            "data": self.store.page(keys),
            "next_cursor": _encode_cursor(keys[-1], since, until) if has_more else None,
            "has_more": has_more,
        }
        return self._payload(body, keys)

    def _page(self, request: web.Request) -> Payload:
        page, per_page = self._numbered(request.query)
        keys, total = self._window(request.query, (page - 1) * per_page, per_page)
        body = {
            "data": self.store.page(keys),
            "page": page,
            "per_page": per_page,
            "total_pages": -(-total // per_page),
            "total": total,
        }
        return self._payload(body, keys)

    def _offset(self, request: web.Request) -> Payload:
        offset = _int(request.query, "offset", 0, minimum=0)
        limit = self._size(request.query, "limit")
        keys, total = self._window(request.query, offset, limit)
        body = {"data": self.store.page(keys), "offset": offset, "limit": limit, "total": total}
        return self._payload(body, keys)

    def _link(self, request: web.Request) -> Payload:
        """A bare array; the way on is an RFC 8288 Link header, as GitHub does it."""
        page, per_page = self._numbered(request.query)
        keys, total = self._window(request.query, (page - 1) * per_page, per_page)
        last = max(1, -(-total // per_page))
        links = {"first": 1, "last": last}
        if page * per_page < total:
            links["next"] = page + 1
        if page > 1:
            links["prev"] = min(page - 1, last)
        header = ", ".join(
            f'<{_at(request.url, number, per_page)}>; rel="{rel}"' for rel, number in links.items()
        )
        return self._payload(self.store.page(keys), keys, {"Link": header})

    def _next(self, request: web.Request) -> Payload:
        """The next page's absolute URL in the body, null on the last page."""
        page, per_page = self._numbered(request.query)
        keys, total = self._window(request.query, (page - 1) * per_page, per_page)
        more = page * per_page < total
        body = {
            "results": self.store.page(keys),
            "next": _at(request.url, page + 1, per_page) if more else None,
        }
        return self._payload(body, keys)

    def _object(self, request: web.Request) -> Payload | web.Response:
        id = request.match_info["id"]
        obj = self.store.objects.get(id)
        if obj is None:
            return json_response({"error": "not_found"}, 404)
        return Payload(orjson.dumps(obj), self.store.updated_ts(id))

    # -- helpers ---------------------------------------------------------------------------------

    def _size(self, query: Mapping[str, str], name: str) -> int:
        return _int(query, name, self.options.page_size, 1, self.options.max_page_size)

    def _numbered(self, query: Mapping[str, str]) -> tuple[int, int]:
        return _int(query, "page", 1, minimum=1), self._size(query, "per_page")

    def _window(self, query: Mapping[str, str], offset: int, limit: int) -> tuple[list[Key], int]:
        """The keys at offset..offset+limit of the filtered collection, and its size."""
        since, until = _filters(query)
        low, high = self.store.lower(since), self.store.upper(until)
        start = low + offset
        return self.store.keys(start, min(start + limit, high)), max(0, high - low)

    def _payload(
        self, body: Any, keys: list[Key], headers: dict[str, str] | None = None
    ) -> Payload:
        # Sorted by updated_at, so the last key is the newest; an empty page: the newest change.
        newest = keys[-1][0] if keys else self.store.newest
        return Payload(orjson.dumps(body), newest, headers or {})


def _int(
    query: Mapping[str, str], name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    raw = query.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise BadRequest(f"{name} must be at least {minimum}{upper}, got {value}")
    return value


def _filters(query: Mapping[str, str]) -> tuple[float | None, float | None]:
    """updated_since (inclusive) and updated_until (exclusive), as unix seconds."""
    bounds: list[float | None] = []
    for name in ("updated_since", "updated_until"):
        raw = query.get(name, "")
        try:
            bounds.append(parse_when(raw) if raw else None)
        except ValueError as exc:
            raise BadRequest(f"{name}: {exc}") from None
    return bounds[0], bounds[1]


def _not_modified(request: web.Request, etag: str, last_modified: int) -> bool:
    """If-None-Match wins when present (weak comparison, as RFC 9110 asks for it)."""
    match = request.headers.get("If-None-Match")
    if match is not None:
        return any(tag.strip().removeprefix("W/") in (etag, "*") for tag in match.split(","))
    since = request.headers.get("If-Modified-Since")
    if since is None:
        return False
    when = parse_http_date(since)
    return when is not None and last_modified <= when


def _at(url: URL, page: int, per_page: int) -> str:
    """This URL for another page, every other parameter kept."""
    return str(url.update_query({"page": str(page), "per_page": str(per_page)}))


def _encode_cursor(key: Key, since: float | None, until: float | None) -> str:
    raw = orjson.dumps([key[0], key[1], since, until])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(value: str) -> tuple[Key, float | None, float | None]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        ts, id, since, until = orjson.loads(raw)
        valid = isinstance(ts, int) and isinstance(id, str)
        valid &= all(bound is None or isinstance(bound, int | float) for bound in (since, until))
    except (ValueError, TypeError, binascii.Error):
        valid = False
    if not valid:
        raise BadRequest("cursor is not one this API returned")
    return (ts, id), since, until
