"""HubSpot request signature v3: ``X-HubSpot-Signature-v3`` = base64 HMAC-SHA256 (key: the app's
client secret) of ``method + URI + body + timestamp``, where the timestamp is the
``X-HubSpot-Request-Timestamp`` header, in **milliseconds**.

Facts from ``HubSpot/hubspot-api-python`` ``hubspot/utils/signature.py`` (``get_signature`` v3;
``MAX_ALLOWED_TIMESTAMP = 300`` seconds). The URI is the full URL HubSpot called:
``Inbound.url`` (``[server] public_url`` + path + query).

HubSpot's docs further say to decode a fixed list of percent-escaped characters in the URI
before signing; the SDK does not. The list used here (``%3A %2F %3F %40 %21 %24 %27 %28 %29
%2A %2C %3B``) is from memory of HubSpot's docs: UNVERIFIED. Both spellings are tried when
they differ, which costs nothing in security: both name the same URL, and the method, body and
timestamp are signed either way.

Only v3 is accepted: v1 and v2 (``X-HubSpot-Signature``) are plain SHA-256 hashes over the
secret and the request with no timestamp, so a captured request replays forever.

The SDK rejects only timestamps older than 5 minutes; here the window is ±5 minutes (a
``tolerance`` changes it, 0 turns it off). The body is a JSON array of events, one event each,
with no event id HubSpot promises unique (``eventId`` "is not guaranteed to be unique",
UNVERIFIED here): an element's ``eventId`` is shown as its provider event id, but it is known
(deduplicated) by ``subscriptionId``, ``eventId`` and ``objectId`` together, which a retry
repeats (its ``attemptNumber`` changes, so its bytes do not). The request's type is the
``subscriptionType`` every event in the batch shares; each element's is its own.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar

from hookyard.errors import VerificationError
from hookyard.verify._common import (
    Fields,
    Frozen,
    batch_items,
    header_bytes,
    init,
    json_any,
    shared_field,
    to_bytes,
    tried,
    unbase64,
    utf8_keys,
    whole,
)
from hookyard.verify.base import TIMED_OPTIONS, Inbound, SchemeDoc, Verified, VerifyOptions
from hookyard.verify.providers import _facts, _missing, _tolerance

_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# What an element is known by: eventId is not unique on its own.
_KEY_FIELDS = ("subscriptionId", "eventId", "objectId")


def hubspot_uri(url: str) -> str:
    """`url` with HubSpot's listed escapes decoded (others, e.g. ``%20``, kept)."""
    return _ESCAPE.sub(lambda m: _DECODED.get(m.group().upper(), m.group()), url)


class HubSpotVerifier(Frozen):
    __slots__ = ("_fields", "_keys", "_tolerance")

    scheme: str = "hubspot"
    credential_headers: frozenset[str] = frozenset()
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="HubSpot",
        summary="X-HubSpot-Signature-v3: HMAC-SHA256 of method + URL + body + timestamp, ±5 min",
        checks=(
            "`X-HubSpot-Signature-v3`: base64 HMAC-SHA256 of method + URL (`[server] "
            "public_url` + path + query) + body + `X-HubSpot-Request-Timestamp` "
            "(milliseconds); the timestamp within ±5 minutes. v1 and v2 signatures, which sign "
            "no timestamp, are refused."
        ),
        secrets="The app's client secret.",
        dedup=(
            "each element's `subscriptionId`, `eventId` and `objectId` together (HubSpot's "
            "`eventId` alone is not unique)"
        ),
        event_type="each element's `subscriptionType`",
        body_dedup="no",
        options=TIMED_OPTIONS,
        public_url=True,
        notes=(
            "A batch (JSON array) becomes one event per element; the raw request is kept "
            "whole. An element without an `eventId` is known by its content."
        ),
        secret_example="env:HUBSPOT_CLIENT_SECRET",
    )

    _keys: tuple[hmac.HMAC, ...]
    _tolerance: int
    _fields: Fields

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        init(
            self,
            _keys=utf8_keys(self.scheme, secrets),
            _tolerance=_tolerance(options, 300),
            _fields=Fields.from_options(options),
        )

    def verify(self, request: Inbound) -> Verified:
        headers = request.headers
        header = headers.get("x-hubspot-signature-v3")
        timestamp = headers.get("x-hubspot-request-timestamp")
        if not header or not timestamp:
            raise _missing("X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp")
        signature = unbase64(header, 32)
        if signature is None or not self._matches(request, timestamp, signature):
            raise VerificationError(
                "signature did not match; expected header X-HubSpot-Signature-v3 (<base64 "
                "HMAC-SHA256 of method + URL + body + X-HubSpot-Request-Timestamp>, key = the "
                "app's client secret; the URL must be exactly the one HubSpot calls: set "
                f"[server] public_url); {tried(len(self._keys))}",
                code="bad_signature",
            )
        self._check_timestamp(timestamp, request.received_at)
        doc = json_any(request.body)
        kind = shared_field(doc, "subscriptionType")
        return replace(
            _facts(self._fields, request, event_type=kind),
            # One event per element, known by more than its eventId (see the docstring).
            items=batch_items(request.body, "eventId", "subscriptionType", _KEY_FIELDS),
        )

    def _matches(self, request: Inbound, timestamp: str, signature: bytes) -> bool:
        tail = header_bytes(timestamp)
        uris = {request.url, hubspot_uri(request.url)}
        for uri in uris:
            head = to_bytes(request.method + uri)
            for base in self._keys:
                m = base.copy()
                m.update(head)
                m.update(request.body)
                m.update(tail)
                if hmac.compare_digest(m.digest(), signature):
                    return True
        return False

    def _check_timestamp(self, raw: str, now: float) -> None:
        if not self._tolerance:
            return
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 15:
            raise VerificationError(
                "header X-HubSpot-Request-Timestamp is not a unix time in milliseconds",
                code="bad_signature",
            )
        skew = now - int(raw) / 1000
        if abs(skew) > self._tolerance:
            when = "old" if skew > 0 else "in the future"
            raise VerificationError(
                f"X-HubSpot-Request-Timestamp is {whole(abs(skew))} s {when}; "
                f"allowed ±{self._tolerance} s",
                code="stale_timestamp",
            )

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Signature and timestamp (`timestamp` seconds, sent as milliseconds) for a POST to
        `url`; `message_id` unused."""
        ts = str(timestamp * 1000)
        m = self._keys[0].copy()
        m.update(to_bytes("POST" + url))
        m.update(body)
        m.update(ts.encode())
        return {
            "X-HubSpot-Signature-v3": base64.b64encode(m.digest()).decode("ascii"),
            "X-HubSpot-Request-Timestamp": ts,
        }
