"""Records that cross the seams between ingest, the store and the worker."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Literal

Origin = Literal["webhook", "poll", "reconcile", "backfill", "fetch-back", "publish"]
DeliveryStatus = Literal["pending", "in_flight", "retrying", "held", "succeeded", "dead"]


@dataclass(slots=True)
class NewEvent:
    id: str
    source: str
    origin: Origin
    received_at: float
    provider_event_id: str | None
    event_type: str | None
    dedup_keys: tuple[str, ...]  # all must be new for the event to be new
    content_type: str | None
    payload: bytes
    destinations: tuple[tuple[str, str | None], ...]  # (name, ordering key)
    trace_context: str | None = None  # W3C traceparent of the ingest span
    # Object versions across paths (webhook vs REST): a key here that another path stored
    # makes the event a duplicate, without being stored itself; a mark is stored for the
    # other paths to find, and never makes the event a duplicate. So two webhooks carrying
    # one version are both events, but a reconciled version and its late webhook are one.
    cross_keys: tuple[str, ...] = ()
    marks: tuple[str, ...] = ()


@dataclass(slots=True)
class NewRequest:
    """One HTTP request and the events it carries (several for a batch)."""

    id: str
    source: str
    received_at: float
    method: str
    path: str
    query: str
    headers: bytes  # JSON [[name, value], ...], credentials redacted
    peer: str | None
    body: bytes | None  # None when it equals the single event's payload
    events: list[NewEvent] = field(default_factory=list)
    pending: bool = False  # a hint: its event comes from fetching what it names (fetchback.py)
    # The provider's expected answer once stored (status, content type, body), if not ours.
    reply: tuple[int, str, bytes] | None = None


@dataclass(frozen=True, slots=True)
class Hint:
    """A pending request leased to this worker for fetching."""

    request_id: str
    source: str
    received_at: float
    body: bytes
    attempt: int  # the number of this fetch, from 1
    headers: dict[str, str] = field(default_factory=dict)  # as stored (credentials redacted)


@dataclass(frozen=True, slots=True)
class Accepted:
    event_id: str
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Rejected:
    id: str
    source: str
    received_at: float
    status: int
    code: str
    reason: str
    method: str
    path: str
    query: str
    headers: bytes
    peer: str | None
    body: bytes
    body_size: int


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery leased to this worker until `lease_until` (which doubles as the lease token)."""

    delivery_id: str
    event_id: str
    destination: str
    attempt: int  # the number of this attempt, from 1
    replay: bool
    lease_until: float


@dataclass(frozen=True, slots=True)
class Pace:
    """What a worker may claim of one destination: `free` at most; the store caps it by what
    every process together may have (concurrency, rate)."""

    free: int
    concurrency: int
    rate: float | None  # attempts per second, across all processes
    # This worker's own view, read when the claim runs rather than when it was queued: how
    # many of its requests to the destination are open, and the (delivery id, lease) of those
    # whose answer is in but whose record is not committed yet (leased, no longer open).
    sending: Callable[[], int] | None = None
    answered: Callable[[], Collection[tuple[str, float]]] | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    claims: list[Claim]
    # Seconds until a blocked destination may yield more: its next rate-limit token, or the
    # end of another process's claim.
    retry_in: float | None
    # Destinations that may take nothing now (not active, or at their limits across the
    # cluster): a due backlog of theirs is no reason to wake up early.
    blocked: frozenset[str] = frozenset()
    # What to send, by event id, read in the claim's transaction; an event missing here has
    # lost its payload to retention.
    events: dict[str, EventData] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventData:
    """What the worker needs to send an event."""

    id: str
    source: str
    provider_event_id: str | None
    event_type: str | None
    content_type: str | None
    payload: bytes
    headers: list[tuple[str, str]]
    trace_context: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt and the decision it led to."""

    claim: Claim
    started_at: float
    duration_ms: float
    status_code: int | None
    response_excerpt: str | None
    error: str | None
    status: DeliveryStatus  # succeeded, retrying or dead
    next_attempt_at: float


@dataclass(frozen=True, slots=True)
class EventFilter:
    """The event list's filters, shared by listing, bulk replay and export."""

    source: str | None = None
    type: str | None = None  # a glob: "invoice.*"
    origin: str | None = None
    status: str | None = None  # events with a delivery in this status
    destination: str | None = None  # events with a delivery to this destination
    since: float | None = None
    until: float | None = None
    provider_event_id: str | None = None
    fields: tuple[tuple[str, str], ...] = ()  # (dotted path, value) equalities on JSON payloads
