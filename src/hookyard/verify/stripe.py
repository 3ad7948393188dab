"""Stripe: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`` over ``{t}.{body}``.

The ``whsec_…`` secret is used as its UTF-8 bytes, not base64-decoded (unlike Standard
Webhooks). Unlike Stripe's SDK, which only rejects old timestamps, the window here is
symmetric: a timestamp far in the future means a broken clock or a forged header.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import ClassVar

from hookyard.errors import VerificationError
from hookyard.verify._common import (
    Fields,
    Frozen,
    check_timestamp,
    header_bytes,
    init,
    json_object,
    json_path,
    mac,
    tolerance_from,
    tried,
    unhex,
    utf8_keys,
)
from hookyard.verify.base import TIMED_OPTIONS, Inbound, SchemeDoc, Verified, VerifyOptions

_HEADER = "stripe-signature"
_ID = ("id",)
_TYPE = ("type",)


class StripeVerifier(Frozen):
    """Event id and type come from the body's top-level ``id`` and ``type``."""

    __slots__ = ("_fields", "_keys", "_tolerance")

    scheme: str = "stripe"
    credential_headers: frozenset[str] = frozenset()
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Stripe",
        summary="Stripe-Signature t=…,v1=…: HMAC-SHA256 of t.body, ±5 min",
        checks=(
            "`Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`: HMAC-SHA256 over `{t}.{body}`, any "
            "`v1` may match; `t` within ±5 minutes, in the past or the future."
        ),
        secrets="The endpoint's signing secret (`whsec_…`), used as text (not base64-decoded).",
        dedup="JSON `id` (`evt_…`)",
        event_type="JSON `type`",
        body_dedup="no",
        options=TIMED_OPTIONS,
        secret_example="env:STRIPE_WEBHOOK_SECRET",
    )

    _keys: tuple[hmac.HMAC, ...]
    _tolerance: int
    _fields: Fields

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        init(
            self,
            _keys=utf8_keys(self.scheme, secrets),
            _tolerance=tolerance_from(options),
            _fields=Fields.from_options(options),
        )

    def verify(self, request: Inbound) -> Verified:
        header = request.headers.get(_HEADER)
        if not header:
            raise VerificationError("missing header Stripe-Signature", code="missing_signature")

        timestamp: str | None = None
        signatures = []
        for item in header.split(","):
            key, _, value = item.partition("=")
            if key == "v1":
                raw = unhex(value, 32)
                if raw is not None:
                    signatures.append(raw)
            elif key == "t" and timestamp is None:
                timestamp = value
        if timestamp is None:
            raise VerificationError(
                "header Stripe-Signature has no t=<unix timestamp>", code="bad_signature"
            )

        if not self._matches(signatures, timestamp, request.body):
            raise VerificationError(
                "signature did not match; expected header Stripe-Signature "
                "'t=<unix>,v1=<hex HMAC-SHA256 of \"{t}.{body}\">', key = the whsec_ secret "
                f"as text; {tried(len(self._keys))}",
                code="bad_signature",
            )
        check_timestamp(timestamp, request.received_at, self._tolerance, "Stripe-Signature t=")

        fields = self._fields
        headers = request.headers
        body = request.body
        doc = None if fields.id_header and fields.overrides_type else json_object(body)
        return Verified(
            event_id=fields.event_id(headers) if fields.id_header else json_path(doc, _ID),
            event_type=(
                fields.event_type(headers, body) if fields.overrides_type else json_path(doc, _TYPE)
            ),
        )

    def _matches(self, signatures: list[bytes], timestamp: str, body: bytes) -> bool:
        if not signatures:
            return False
        head = header_bytes(timestamp) + b"."
        for base in self._keys:
            expected = mac(base, head, body)
            for signature in signatures:
                if hmac.compare_digest(expected, signature):
                    return True
        return False

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Only ``Stripe-Signature``: Stripe sends no id header (the id is in the body)."""
        ts = str(timestamp)
        signature = mac(self._keys[0], ts.encode() + b".", body).hex()
        return {"Stripe-Signature": f"t={ts},v1={signature}"}
