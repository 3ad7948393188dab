"""The simulator's public dataclasses: how it behaves (options, auth), what it counted (stats)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# The Standard Webhooks test-vector secret: fine for a simulator, and receivers' examples use it.
DEFAULT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

AuthKind = Literal["bearer", "basic", "header", "query", "oauth2"]


@dataclass
class Auth:
    """How API calls must authenticate (the control endpoints never need to)."""

    kind: AuthKind
    token: str = ""  # bearer: the token; header/query: the key value
    name: str = ""  # header: header name (e.g. "X-Api-Key"); query: parameter name (e.g. "api_key")
    username: str = ""  # basic: the user; oauth2: client_id
    password: str = ""  # basic: the password; oauth2: client_secret
    token_ttl: float = 3600  # oauth2: access tokens expire after this many seconds

    def check(self) -> None:
        """Raise ValueError for a combination that no client could satisfy."""
        needs: dict[str, tuple[str, ...]] = {
            "bearer": ("token",),
            "basic": ("username",),
            "header": ("name", "token"),
            "query": ("name", "token"),
            "oauth2": ("username", "password"),
        }
        if self.kind not in needs:
            raise ValueError(f"unknown auth kind {self.kind!r}")
        missing = [name for name in needs[self.kind] if not getattr(self, name)]
        if missing:
            raise ValueError(f"{self.kind} auth needs {', '.join(missing)}")
        if self.token_ttl <= 0:
            raise ValueError("token_ttl must be positive")


@dataclass
class SimulatorOptions:
    """Everything about the simulated provider; the defaults are a well-behaved API."""

    page_size: int = 100  # default page size; clients may ask up to max_page_size
    max_page_size: int = 1000
    auth: Auth | None = None
    rate_limit: int | None = None  # API calls allowed per window (None: unlimited)
    rate_window: float = 60.0  # seconds
    etag: bool = True  # ETag + Last-Modified on 200s; If-None-Match / If-Modified-Since -> 304
    clock_skew: float = 0.0  # seconds added to the clock for created_at/updated_at
    webhook_url: str | None = None  # where change webhooks go (None: none sent)
    webhook_secret: str = DEFAULT_SECRET
    drop: float = 0.0  # fraction of webhooks never sent
    duplicate: float = 0.0  # fraction sent twice (same webhook-id)
    reorder: float = 0.0  # fraction held back and sent after the next one
    delay: float = 0.0  # each webhook is delayed by a uniform random 0..delay seconds
    webhook_retries: int = 0  # on non-2xx/connection error, retries 1 s apart; 0: fire and forget
    seed: int | None = None  # seeds every random choice, for reproducible tests
    object_type: str = "order"

    def check(self) -> None:
        """Raise ValueError early rather than serve a provider that misbehaves by accident."""
        if not 1 <= self.page_size <= self.max_page_size:
            raise ValueError("need 1 <= page_size <= max_page_size")
        if self.rate_limit is not None and self.rate_limit < 1:
            raise ValueError("rate_limit must be at least 1 (None: unlimited)")
        if self.rate_window <= 0:
            raise ValueError("rate_window must be positive")
        for name in ("drop", "duplicate", "reorder"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a fraction between 0 and 1")
        if self.delay < 0 or self.webhook_retries < 0:
            raise ValueError("delay and webhook_retries cannot be negative")
        if not self.object_type:
            raise ValueError("object_type cannot be empty")
        if self.auth is not None:
            self.auth.check()


@dataclass
class Stats:
    """What the simulator saw and did, for tests to assert on.

    A webhook is in `webhooks_sent` once the receiver answered a POST of it (any status, retries
    included); one that never got an answer (connection errors) is in neither sent nor dropped.
    """

    calls: int = 0  # API list/object calls, whatever they were answered
    not_modified: int = 0  # 304s
    rate_limited: int = 0  # 429s from the rate limit
    failed: int = 0  # answers forced by fail_next
    unauthorized: int = 0  # 401s, API calls and token requests alike
    token_requests: int = 0  # POST /oauth/token, whatever the outcome
    webhooks_sent: list[dict[str, Any]] = field(default_factory=list)
    webhooks_dropped: list[dict[str, Any]] = field(default_factory=list)
    duplicates_sent: list[str] = field(default_factory=list)  # webhook ids sent a second time
