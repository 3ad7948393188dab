"""The verifier seam: raw request in, verified facts (or a VerificationError) out.

Verifiers work on the exact raw body bytes, never on parsed or re-serialised data, and
compare signatures in constant time on decoded bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Inbound:
    """What arrived, as verification sees it."""

    method: str
    url: str  # the public URL the provider called (some schemes sign it)
    headers: Mapping[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes
    received_at: float  # unix seconds, the clock for timestamp tolerance


@dataclass(frozen=True, slots=True)
class Handshake:
    """An answer given inline instead of storing an event (e.g. Slack's url_verification)."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Item:
    """One event of a request that carries several (SendGrid's and HubSpot's batches)."""

    payload: bytes  # the element, as compact JSON (the request's raw body is kept whole)
    event_id: str | None = None
    event_type: str | None = None
    # The dedup key where the event id alone is not unique (HubSpot's eventId: with the
    # subscription and object ids); None: the event id.
    dedup_id: str | None = None


@dataclass(frozen=True, slots=True)
class Verified:
    """Facts established by a verifier about an authentic request."""

    event_id: str | None = None  # the provider's event id: first dedup key
    event_type: str | None = None  # used by route type globs
    delivery_id: str | None = None  # the provider's delivery/message id: dedup fallback
    body_dedup: bool = False  # the scheme signs no timestamp: the body hash is a dedup key too
    # A one-time value of the signature (Mailgun's token): a request reusing it is a replay,
    # acknowledged as a duplicate, whatever its body.
    replay_key: str | None = None
    # What was signed, where that is not the body's bytes (Twilio's URL and sorted form
    # fields): a dedup key in place of the body's hash, wherever that is one (body_dedup, or
    # the source's dedup_body). In place of, not beside: the same body sent to another signed
    # URL is another request.
    content_key: str | None = None
    items: tuple[Item, ...] = ()  # a batch: one event each; empty: the body is one event
    # A thin hint (Mollie's `id=tr_...`): nothing in it is trusted; the worker fetches the
    # resource it names from the provider's API, and that becomes the event (fetchback.py).
    hint: str | None = None
    # What the provider must be answered once the event is stored, instead of Hookyard's own
    # {"id": ...} (Discord: a deferred interaction response).
    reply: Handshake | None = None
    handshake: Handshake | None = None


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    """Scheme settings from a source's config (all optional; each scheme reads what it needs)."""

    tolerance: int | None = None  # seconds; None = the provider's documented default; 0 = off
    signature_header: str | None = None
    algorithm: str = "sha256"  # sha1 | sha256 | sha512
    encoding: str = "hex"  # hex | base64
    signature_prefix: str = ""
    signed_content: str = "{body}"  # template: {body}, {timestamp}, {id}
    timestamp_header: str | None = None
    id_header: str | None = None
    type_header: str | None = None
    type_field: str | None = None  # dotted path into a JSON body
    token_header: str | None = None


# The [sources.NAME] keys that only some schemes read (VerifyOptions, and the fetch-back
# settings). A built-in scheme lists those it reads in its SchemeDoc; a source that sets any
# other is refused, so a key that would silently do nothing is caught by `hookyard check`.
SCHEME_OPTIONS: tuple[str, ...] = (
    "tolerance",
    "signature_header",
    "algorithm",
    "encoding",
    "signature_prefix",
    "signed_content",
    "timestamp_header",
    "id_header",
    "type_header",
    "type_field",
    "token_header",
    "fetch_url",
    "fetch_rate",
    "confirm_subscriptions",
)
# Where most schemes let the source override the provider's event id and type.
ID_TYPE_OPTIONS = ("id_header", "type_header", "type_field")
# ... and for schemes that sign a timestamp, the window too.
TIMED_OPTIONS = ("tolerance", *ID_TYPE_OPTIONS)


@dataclass(frozen=True, slots=True)
class SchemeDoc:
    """A built-in scheme described for people (docs/providers.md, `hookyard schemes`) and the
    options it reads, which building a source enforces. Each verifier class carries one as
    `doc`: the code and its reference live side by side, and a test keeps the page in step."""

    provider: str  # display name
    summary: str  # one line: what is checked
    checks: str  # header, algorithm, signed content, replay window
    secrets: str  # what each `secrets` entry is
    dedup: str  # the event id, and any other dedup key
    event_type: str  # where the event type comes from
    body_dedup: str  # whether the body's hash is a dedup key too
    options: tuple[str, ...] = ()  # SCHEME_OPTIONS keys it reads
    handshake: str | None = None  # what is answered inline, without storing an event
    public_url: bool = False  # signs the URL the provider called: needs [server] public_url
    notes: str = ""
    secret_example: str | None = None  # the config snippet's `secrets` entry; None: no secrets
    required: tuple[tuple[str, str], ...] = ()  # options the snippet must set: (key, TOML value)


class Verifier(Protocol):
    scheme: str
    # Headers that carry credentials: redacted when shown, never forwarded.
    credential_headers: frozenset[str]

    def verify(self, request: Inbound) -> Verified: ...

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Headers the provider would send with `body` (for `hookyard send` and tests)."""
        ...
