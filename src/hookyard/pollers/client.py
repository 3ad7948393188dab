"""Calls to one source's REST API, as a polite client: authenticated (OAuth 2 tokens fetched and
refreshed), within the source's budget of calls per minute, waiting out 429/503 Retry-After and
an exhausted X-RateLimit window, retrying brief failures, and counting every call.

Outbound requests obey the egress policy (the session's resolver checks every address).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from hookyard.deliver.egress import EgressPolicy
from hookyard.deliver.http import parse_retry_after
from hookyard.pollers.api import Credentials, RestApi
from hookyard.text import as_text

log = logging.getLogger("hookyard.pollers")

RETRIES = (0.5, 2.0)  # waits before retrying a failed call within a run
MAX_WAIT = 900.0  # a longer Retry-After or rate-limit reset ends the run instead
MAX_RESET_WAIT = 86400.0  # the longest rate-limit reset believed
MAX_RESPONSE = 64 * 2**20  # bytes of one page or object read at most
MAX_WAITS = 20  # 429s answered for one call before the run gives up
TOKEN_MARGIN = 30.0  # refresh an OAuth 2 token this long before it expires


class RestError(Exception):
    """A call that did not succeed: the run ends and is tried again later (backing off)."""


class Refused(RestError):
    """The API refused the request itself (a 4xx other than 408 and 429); `status` says how."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status

    @property
    def stale_page(self) -> bool:
        """What an API answers for a page cursor that expired, rather than for credentials
        or a redirect (the API moved)."""
        return self.status not in (401, 403) and not 300 <= self.status < 400


class RateLimited(RestError):
    """The API asked for a pause longer than a run waits (MAX_WAIT): no call goes before
    `resume_at` (unix seconds), and the source's next run starts then."""

    def __init__(self, message: str, resume_at: float) -> None:
        super().__init__(message)
        self.resume_at = resume_at


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    links: dict[str, str]  # Link header: relation -> URL


@dataclass(slots=True)
class Calls:
    """Calls made since the last commit, to be recorded with it."""

    calls: int = 0
    not_modified: int = 0

    def take(self) -> tuple[int, int]:
        taken = (self.calls, self.not_modified)
        self.calls = self.not_modified = 0
        return taken


class RestClient:
    def __init__(
        self,
        api: RestApi,
        session: Callable[[], tuple[aiohttp.ClientSession, EgressPolicy]],
        counts: Counter[tuple[str, str]],
    ) -> None:
        self.api = api
        self._session = session
        self._counts = counts  # (source, result) for /metrics
        self._token: tuple[str, float] | None = None  # OAuth 2 access token, expiry
        self._not_before = 0.0  # no call before this time (rate limit reset, Retry-After)
        self._resume_at = 0.0  # unix seconds: a pause too long to wait out in a run
        self._paused_why = ""
        # The budget as a steady rate with a burst of one second's worth (at least one call):
        # a minute's budget spent in one burst could trip the provider's own limits.
        budget = api.config.calls_per_minute
        self._per_second = None if budget is None else budget / 60
        self._burst = 1.0 if budget is None else max(1.0, budget / 60)
        self._allowance = self._burst
        self._refilled = time.monotonic()
        self._pace = asyncio.Lock()

    async def get(
        self,
        url: str,
        calls: Calls,
        validators: tuple[str | None, str | None] | None = None,
        *,
        gone_ok: bool = False,
    ) -> Response:
        """GET a page or object: 200, 204 (no content: an empty page), or 304 (when
        validators are given), 404 and 410 too with `gone_ok`, else RestError."""
        headers = dict(self.api.headers)
        if validators is not None:
            etag, last_modified = validators
            if etag:
                headers["If-None-Match"] = etag
            elif last_modified:
                headers["If-Modified-Since"] = last_modified
        failures = waits = 0
        refreshed = False
        while True:
            if time.time() < self._resume_at:
                raise RateLimited(
                    f"{self._paused_why}: no call until "
                    + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._resume_at)),
                    self._resume_at,
                )
            await self._wait_turn()
            try:
                response = await self._call(url, headers, calls)
            except (aiohttp.ClientError, TimeoutError) as exc:
                # aiohttp's messages can hold the URL, query-string key included.
                problem = self.redact(f"{type(exc).__name__}: {exc}".rstrip(": "))
                self._counts[self.api.source, "error"] += 1
            else:
                status = response.status
                if (
                    status in (200, 204)
                    or (status == 304 and validators is not None)
                    or (gone_ok and status in (404, 410))
                ):
                    self._counts[self.api.source, "not_modified" if status == 304 else "ok"] += 1
                    if status == 304:
                        calls.not_modified += 1
                    return response
                credentials = self.api.credentials
                if status == 401 and credentials and credentials.kind == "oauth2" and not refreshed:
                    self._token, refreshed = None, True  # expired or revoked: fetch a new one
                    continue
                wait = parse_retry_after(response.headers.get("Retry-After"), time.time())
                if status == 429 or (status == 503 and wait is not None):
                    # Not a failure: the API asked us to wait (once per second by default).
                    self._counts[self.api.source, "rate_limited"] += 1
                    waits += 1
                    if waits > MAX_WAITS:
                        raise RestError(
                            f"GET {self.shown(url)}: still HTTP {status} after {waits} waits"
                        )
                    self._hold(wait or 1.0, f"HTTP {status}, Retry-After {wait or 1.0:g}s")
                    continue
                self._counts[self.api.source, "error"] += 1
                problem = f"HTTP {status}: {self.redact(excerpt(response.body))}"
                if 300 <= status < 400:
                    location = response.headers.get("Location")
                    moved = self.shown(str(URL(url).join(URL(location)))) if location else None
                    problem = (
                        f"HTTP {status}: redirected to {moved or '(no Location)'}; redirects are"
                        " not followed (the credentials go with every call): set the API's url"
                        " to where it moved"
                    )
                if status < 500 and status != 408:
                    raise Refused(f"GET {self.shown(url)}: {problem}", status)
            if failures == len(RETRIES):
                raise RestError(f"GET {self.shown(url)}: {problem}")
            await asyncio.sleep(RETRIES[failures])
            failures += 1

    async def _call(self, url: str, headers: dict[str, str], calls: Calls) -> Response:
        session, policy = self._session()
        target = URL(url)
        policy.check_literal(target.host or "")  # an IP literal never reaches the resolver
        credentials = self.api.credentials
        if credentials is not None:
            target = await self._authenticate(credentials, target, headers)
        timeout = aiohttp.ClientTimeout(total=self.api.config.timeout)
        calls.calls += 1
        async with session.get(
            target, headers=headers, allow_redirects=False, timeout=timeout
        ) as response:
            body = await _read_bounded(response)
            self._note_rate_limit(response.headers)
            links = {
                str(key): str(link.get("url"))
                for key, link in response.links.items()
                if link.get("url") is not None
            }
            return Response(response.status, response.headers, body, links)

    async def _authenticate(
        self, credentials: Credentials, url: URL, headers: dict[str, str]
    ) -> URL:
        kind = credentials.kind
        if kind == "bearer":
            headers["Authorization"] = f"Bearer {credentials.value}"
        elif kind == "basic":
            headers["Authorization"] = (
                "Basic " + base64.b64encode(credentials.value.encode()).decode()
            )
        elif kind == "header":
            headers[credentials.name] = credentials.value
        elif kind == "query":
            return url.update_query({credentials.name: credentials.value})
        else:
            headers["Authorization"] = f"Bearer {await self._access_token(credentials)}"
        return url

    async def _access_token(self, credentials: Credentials) -> str:
        """An OAuth 2 client-credentials token, fetched again shortly before it expires."""
        if self._token is not None and time.time() < self._token[1] - TOKEN_MARGIN:
            return self._token[0]
        session, policy = self._session()
        policy.check_literal(URL(credentials.token_url).host or "")
        form = {"grant_type": "client_credentials"}
        if credentials.scope:
            form["scope"] = credentials.scope
        # client_secret_basic, the method every server must support (RFC 6749, 2.3.1)
        auth = {"Authorization": _basic(f"{credentials.client_id}:{credentials.client_secret}")}
        timeout = aiohttp.ClientTimeout(total=self.api.config.timeout)
        async with session.post(
            credentials.token_url, data=form, headers=auth, allow_redirects=False, timeout=timeout
        ) as response:
            body = await response.read()
            if response.status != 200:
                shown = self.redact(excerpt(body))
                raise RestError(f"OAuth 2 token request: HTTP {response.status}: {shown}")
            try:
                document = await response.json(content_type=None)
                token = str(document["access_token"])
                lifetime = float(document.get("expires_in") or 3600)
            except (ValueError, KeyError, TypeError):
                raise RestError("OAuth 2 token response has no access_token") from None
        self._token = (token, time.time() + lifetime)
        return token

    def _note_rate_limit(self, headers: CIMultiDictProxy[str]) -> None:
        """An exhausted window (X-RateLimit-Remaining: 0) holds calls until it resets."""
        remaining = headers.get("X-RateLimit-Remaining") or headers.get("RateLimit-Remaining")
        if remaining is None or remaining.strip() not in ("0", "0.0"):
            return
        reset = headers.get("X-RateLimit-Reset") or headers.get("RateLimit-Reset")
        self._hold(reset_wait(reset, time.time()), "rate limit window exhausted")

    def _hold(self, wait: float, why: str) -> None:
        """No call for `wait` seconds: waited out within the run, or, if longer than a run
        waits, the run ends (RateLimited at the next call) and the next run starts then."""
        log.info("%s: %s, next call in %.1fs", self.api.source, why, wait)
        if wait > MAX_WAIT:
            self._resume_at, self._paused_why = time.time() + wait, why
        else:
            self._not_before = max(self._not_before, time.monotonic() + wait)

    async def _wait_turn(self) -> None:
        """Wait for the rate-limit hold and the source's budget of calls per minute."""
        async with self._pace:  # calls of one source's jobs take turns
            delay = self._not_before - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            per_second = self._per_second
            if per_second is None:
                return
            now = time.monotonic()
            self._allowance = min(
                self._burst, self._allowance + (now - self._refilled) * per_second
            )
            self._refilled = now
            if self._allowance < 1:
                await asyncio.sleep((1 - self._allowance) / per_second)
                self._allowance, self._refilled = 1.0, time.monotonic()
            self._allowance -= 1

    def shown(self, url: str) -> str:
        """The URL fit for logs and errors: no query-string credentials."""
        return strip_credentials(url, self.api.credentials)

    def redact(self, text: str) -> str:
        """Text fit to log and store (errors, response excerpts): every secret this client
        sends is masked, should a message or an API's error body repeat it."""
        secrets = [value for _, value in self.api.headers]
        credentials = self.api.credentials
        if credentials is not None:
            secrets += [credentials.value, credentials.client_secret]
            secrets += credentials.value.split(":", 1)[1:]  # basic auth's password alone
        if self._token is not None:
            secrets.append(self._token[0])
        # As sent, too: percent-encoded in a query string, base64 in a Basic header.
        secrets += [form for secret in secrets if secret for form in _encodings(secret)]
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            if len(secret) >= 4:  # a tiny value would mask ordinary words
                text = text.replace(secret, "***")
        if credentials is not None and credentials.kind == "query":
            # The parameter's value in any URL the text repeats, however it was escaped.
            parameter = re.escape(quote(credentials.name, safe=""))
            text = re.sub(rf"([?&]{parameter}=)[^&#\s'\"<>]+", r"\1***", text)
        return re.sub(r"(://[^/@\s:]*):[^@/\s]*@", r"\1:***@", text)


def reset_wait(reset: str | None, now: float) -> float:
    """Seconds until a rate-limit window resets, from its Reset header: seconds from now, or a
    unix time in seconds or in milliseconds (APIs send each). A day at most: a window further
    off is a misreading more likely than a real one, and would stop the source for good."""
    try:
        value = float(reset) if reset else 1.0
    except ValueError:
        value = 1.0
    if not math.isfinite(value):
        value = 1.0
    if value > 100_000_000_000:  # milliseconds since the epoch
        value /= 1000
    wait = value - now if value > 1_000_000_000 else value
    return min(max(wait, 0.0), MAX_RESET_WAIT)


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    """The whole body, unless it grows past MAX_RESPONSE (a misbehaving API, a wrong URL)."""
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE:
            raise RestError(f"a response exceeded {MAX_RESPONSE:,} bytes; is the URL right?")
        chunks.append(chunk)
    return b"".join(chunks)


def _encodings(secret: str) -> set[str]:
    as_query = URL("/").with_query({"k": secret}).raw_query_string[2:]  # yarl keeps "/" as is
    return {
        quote(secret, safe=""),
        quote_plus(secret),
        as_query,
        base64.b64encode(secret.encode()).decode(),
    }


def strip_credentials(url: str, credentials: Credentials | None) -> str:
    if credentials is None or credentials.kind != "query":
        return url
    parsed = URL(url)
    if credentials.name not in parsed.query:
        return url
    return str(parsed.without_query_params(credentials.name))


def _basic(user_and_password: str) -> str:
    return "Basic " + base64.b64encode(user_and_password.encode()).decode()


def excerpt(body: bytes, limit: int = 200) -> str:
    text = as_text(body[:limit]).strip()
    return text + ("..." if len(body) > limit else "")
