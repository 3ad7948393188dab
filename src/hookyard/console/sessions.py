"""Console sessions, kept in this process's memory.

Why server-side rather than a signed cookie: logging out really ends a session (a signed
cookie stays valid until it expires, whoever holds a copy), the CSRF token and the flash
message live next to the session without a second cookie, and the cookie holds nothing but a
random id. A session never outlives its admin token: each request looks the token up again
(see auth.py), so revoking the token ends every session opened with it. Sessions do not
survive a restart and are not shared between processes; logging in again is the remedy.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

LIFETIME = 8 * 3600.0  # seconds; then the operator logs in again
MAX_SESSIONS = 10_000  # a bound on memory whatever logs in


@dataclass
class Session:
    token_hash: str  # the admin token's hash (as the store keeps it), never the token
    csrf: str
    expires_at: float
    flash: str | None = None


def _key(session_id: str) -> str:
    # Keyed by a hash, so that the table never holds a usable cookie value.
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    def __init__(self) -> None:
        self._by_key: dict[str, Session] = {}

    def create(self, token_hash: str) -> tuple[str, Session]:
        """A new session for this token; returns the cookie value with it."""
        now = time.time()
        self._forget_expired(now)
        while len(self._by_key) >= MAX_SESSIONS:  # the oldest first (dicts keep order)
            del self._by_key[next(iter(self._by_key))]
        session_id = secrets.token_urlsafe(32)
        session = Session(token_hash, secrets.token_urlsafe(32), now + LIFETIME)
        self._by_key[_key(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        key = _key(session_id)
        session = self._by_key.get(key)
        if session is not None and session.expires_at <= time.time():
            del self._by_key[key]
            return None
        return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._by_key.pop(_key(session_id), None)

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, s in self._by_key.items() if s.expires_at <= now]:
            del self._by_key[key]
