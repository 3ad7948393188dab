"""Mailgun: a signature block ``{timestamp, token, signature}`` travels *in the body*, as the
JSON ``signature`` object (webhooks) or as ``timestamp``/``token``/``signature`` form fields
(legacy webhooks, routes' ``forward()``; url-encoded or multipart). ``signature`` = hex
HMAC-SHA256 (key: the "HTTP webhook signing key") of ``timestamp + token``, no separator
(documentation.mailgun.com, "Securing webhooks"). For subaccounts a ``parent-signature`` made
with the primary account's key may come too; either may match.

**The body is not signed.** Anyone who sees one request can re-send its signature block with a
body of their own. Mailgun's answer is to accept each token once: so here the token is the
request's replay key (``replay:<token>``, a dedup key). A replay, with the same body or
another, is then acknowledged as a duplicate and never stored or delivered again; the first
request with a given token wins, which TLS between Mailgun and Hookyard must guarantee is
Mailgun's. This holds while dedup keys are kept (``[server] dedup_window``, 7 days by default)
and the timestamp window is shorter than that. The event's ``event-data.id`` is its id (and
dedup key too, so a retry signed anew is a duplicate as well).

Window: Mailgun retries for about 8 hours (10 m, 10 m, 15 m, 30 m, 1 h, 2 h, 4 h) and its retries
may resend the original signature block (Hookdeck says so; Mailgun's docs do not: UNVERIFIED),
so the default is ±9 h, not the usual 5 minutes, which could refuse every retry after the first.
The token dedup covers replays inside the window. Type: ``event-data.event`` (form: ``event``).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any, ClassVar

from hookyard.errors import VerificationError
from hookyard.verify._common import (
    Fields,
    Frozen,
    check_timestamp,
    init,
    json_object,
    json_path,
    to_bytes,
    tried,
    unhex,
    utf8_keys,
)
from hookyard.verify._forms import boundary_of, multipart_fields, urlencoded
from hookyard.verify.base import TIMED_OPTIONS, Inbound, SchemeDoc, Verified, VerifyOptions
from hookyard.verify.providers import _facts, _tolerance

DEFAULT_TOLERANCE = 9 * 3600  # covers Mailgun's ~8 h retry schedule: see the module docstring
_FIELDS = frozenset({"timestamp", "token", "signature", "parent-signature", "event"})
_MAX_TOKEN = 200  # Mailgun's tokens are 50 characters


class _Block:
    __slots__ = ("event", "event_id", "signatures", "timestamp", "token")

    def __init__(
        self,
        timestamp: str,
        token: str,
        signatures: list[str],
        event: str | None,
        event_id: str | None = None,
    ):
        self.timestamp = timestamp
        self.token = token
        self.signatures = signatures
        self.event = event
        self.event_id = event_id


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # "timestamp": 1529006854 signs as its decimal text
    return None


def _from_json(doc: dict[str, Any]) -> _Block | None:
    block = doc.get("signature")
    if not isinstance(block, dict):
        return None
    timestamp, token = _text(block.get("timestamp")), block.get("token")
    if timestamp is None or not isinstance(token, str):
        return None
    signatures = [
        s for s in (block.get("signature"), block.get("parent-signature")) if isinstance(s, str)
    ]
    return _Block(
        timestamp,
        token,
        signatures,
        json_path(doc, ("event-data", "event")),
        _text(json_path(doc, ("event-data", "id"))),
    )


def _from_form(fields: dict[str, list[str]]) -> _Block | None:
    # a field given twice is ambiguous: refuse rather than pick one
    if any(len(values) != 1 for values in fields.values()):
        return None
    one = {name: values[0] for name, values in fields.items()}
    timestamp, token = one.get("timestamp"), one.get("token")
    if timestamp is None or token is None:
        return None
    signatures = [s for s in (one.get("signature"), one.get("parent-signature")) if s is not None]
    return _Block(timestamp, token, signatures, one.get("event") or None)


def _block(request: Inbound) -> _Block | None:
    doc = json_object(request.body)
    if doc is not None:
        return _from_json(doc)
    boundary = boundary_of(request.headers.get("content-type"))
    if boundary is not None:
        return _from_form(multipart_fields(request.body, boundary, _FIELDS))
    pairs = urlencoded(request.body)
    if pairs is None:
        return None
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        if name in _FIELDS:
            fields.setdefault(name, []).append(value)
    return _from_form(fields)


class MailgunVerifier(Frozen):
    __slots__ = ("_fields", "_keys", "_tolerance")

    scheme: str = "mailgun"
    credential_headers: frozenset[str] = frozenset()
    # The token's dedup key is the replay defence: the config refuses a tolerance longer than
    # [server] dedup_window (gateway.py).
    replay_by_dedup: ClassVar[bool] = True
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Mailgun",
        summary="signature block in the body: HMAC-SHA256 of timestamp + token, ±9 h",
        checks=(
            "The body's `signature` object (or `timestamp`/`token`/`signature` form fields, "
            "also multipart): hex HMAC-SHA256 of timestamp + token (`parent-signature`, for "
            "subaccounts, may match instead); the timestamp within ±9 hours (Mailgun retries "
            "for about 8). The body itself is not signed: each token is accepted once."
        ),
        secrets="The HTTP webhook signing key (not the API key).",
        dedup="`event-data.id` (JSON bodies), and the signature's `token`",
        event_type="`event-data.event` (form: `event`)",
        body_dedup="no",
        options=TIMED_OPTIONS,
        notes=(
            "A replay of a token, with any body, is acknowledged as a duplicate and never "
            "delivered. That holds while dedup keys are kept (`[server] dedup_window`), so a "
            "`tolerance` longer than that is refused."
        ),
        secret_example="env:MAILGUN_WEBHOOK_SIGNING_KEY",
    )

    _keys: tuple[hmac.HMAC, ...]
    _tolerance: int
    _fields: Fields

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        init(
            self,
            _keys=utf8_keys(self.scheme, secrets),
            _tolerance=_tolerance(options, DEFAULT_TOLERANCE),
            _fields=Fields.from_options(options),
        )

    def verify(self, request: Inbound) -> Verified:
        block = _block(request)
        if block is None or not block.signatures or not block.token or not block.timestamp:
            raise VerificationError(
                "missing signature: expected a JSON body with a 'signature' object "
                "{timestamp, token, signature}, or timestamp, token and signature form fields",
                code="missing_signature",
            )
        signed = to_bytes(block.timestamp) + to_bytes(block.token)
        given = [raw for raw in (unhex(s, 32) for s in block.signatures) if raw is not None]
        if len(block.token) > _MAX_TOKEN or not self._matches(signed, given):
            raise VerificationError(
                "signature did not match; expected signature = <hex HMAC-SHA256 of timestamp + "
                "token>, key = the HTTP webhook signing key (not the API key); "
                f"{tried(len(self._keys))}",
                code="bad_signature",
            )
        check_timestamp(
            block.timestamp, request.received_at, self._tolerance, "signature.timestamp"
        )
        return _facts(
            self._fields,
            request,
            event_id=block.event_id,
            event_type=block.event,
            replay_key=block.token,  # the replay defence: see the module docstring
        )

    def _matches(self, signed: bytes, given: list[bytes]) -> bool:
        for base in self._keys:
            m = base.copy()
            m.update(signed)
            expected = m.digest()
            for signature in given:
                if hmac.compare_digest(expected, signature):
                    return True
        return False

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Nothing: Mailgun's signature block is part of the body, which is the caller's."""
        return {}
