"""API authentication, one of five kinds, and the OAuth2 client-credentials token endpoint."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from typing import Any

from aiohttp import web

from hookyard.simulator._time import Clock
from hookyard.simulator._types import Auth, Stats

REALM = 'realm="hookyard-simulator"'


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _basic(header: str) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic` header, None if it is not one."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


class Authenticator:
    def __init__(self, auth: Auth, clock: Clock, stats: Stats) -> None:
        self.auth = auth
        self._clock = clock  # token expiry follows set_time, so tests need not wait for it
        self._stats = stats
        self._tokens: dict[str, float] = {}  # oauth2 access token -> when it expires

    def check(self, request: web.Request) -> web.Response | None:
        """None when the request may go on, else the 401 to answer."""
        auth = self.auth
        header = request.headers.get("Authorization", "")
        if auth.kind == "bearer":
            token = _bearer(header)
            ok = token is not None and _same(token, auth.token)
            challenge = f"Bearer {REALM}"
        elif auth.kind == "basic":
            pair = _basic(header)
            ok = pair is not None and _same(pair[0], auth.username) & _same(pair[1], auth.password)
            challenge = f"Basic {REALM}"
        elif auth.kind == "header":
            ok = _same(request.headers.get(auth.name, ""), auth.token)
            challenge = f'ApiKey {REALM}, header="{auth.name}"'
        elif auth.kind == "query":
            ok = _same(request.query.get(auth.name, ""), auth.token)
            challenge = f'ApiKey {REALM}, query="{auth.name}"'
        else:
            token = _bearer(header)
            expires = self._tokens.get(token or "")
            if expires is not None and self._clock.now() >= expires:
                return self._deny(
                    {"error": "invalid_token"},
                    f'Bearer {REALM}, error="invalid_token", error_description="token expired"',
                )
            ok = expires is not None
            challenge = f"Bearer {REALM}"
        return None if ok else self._deny({"error": "unauthorized"}, challenge)

    async def token(self, request: web.Request) -> web.Response:
        """POST /oauth/token: client_credentials, the client in Basic auth or in the form."""
        if self.auth.kind != "oauth2":
            return web.json_response({"error": "not_found"}, status=404)
        self._stats.token_requests += 1
        form = await request.post()
        grant = form.get("grant_type")
        if grant is None:
            return _oauth_error("invalid_request", "grant_type is required")
        if grant != "client_credentials":
            return _oauth_error("unsupported_grant_type", "only client_credentials is supported")
        pair = _basic(request.headers.get("Authorization", ""))
        if pair is None:
            pair = (str(form.get("client_id", "")), str(form.get("client_secret", "")))
        if not (_same(pair[0], self.auth.username) & _same(pair[1], self.auth.password)):
            return self._deny({"error": "invalid_client"}, f"Basic {REALM}")
        token = "at_" + secrets.token_urlsafe(24)
        ttl = self.auth.token_ttl
        self._tokens[token] = self._clock.now() + ttl
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(ttl) if ttl == int(ttl) else ttl,
        }
        if "scope" in form:
            body["scope"] = str(form["scope"])
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    def _deny(self, body: dict[str, str], challenge: str) -> web.Response:
        self._stats.unauthorized += 1
        return web.json_response(body, status=401, headers={"WWW-Authenticate": challenge})


def _oauth_error(error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=400)
