"""One exception tree for Hookyard.

HookyardError
├── ConfigError            invalid configuration; names the key and why (CLI exit 2)
├── IngestError            a request that ingest refuses; carries the HTTP status and a code
│   ├── VerificationError  401: missing or bad signature, stale timestamp, bad credentials
│   └── Unavailable        503: overloaded, or the database cannot commit (with Retry-After)
├── StoreError             the database failed or is owned by another process
└── WriteRefused           a write that decided not to happen (rolled back), e.g. a lost lease
"""

from __future__ import annotations


class HookyardError(Exception):
    """Base of every error Hookyard raises on purpose."""


class ConfigError(HookyardError):
    """Configuration that cannot be used. `key` is the dotted path of the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.reason = message


class IngestError(HookyardError):
    """A request ingest refuses, with the status and error code it answers."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class VerificationError(IngestError):
    """The request is not authentic. Codes: missing_signature, bad_signature,
    stale_timestamp, bad_credentials."""

    status = 401
    code = "bad_signature"


class Unavailable(IngestError):
    """Ingest cannot commit right now; the provider should retry after `retry_after` seconds."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreError(HookyardError):
    """The database failed, or is owned by another process."""


class WriteRefused(HookyardError):
    """A write handler refused its operation (the transaction is rolled back): raised inside
    the writer, it reaches the caller as it is, not as a database failure."""
