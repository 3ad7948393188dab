"""PayPal: each transmission is signed with RSA (SHA256withRSA) over
`transmission_id|transmission_time|webhook_id|crc32(body)` (crc32 as an unsigned decimal), with
a key whose certificate PayPal publishes at `PAYPAL-CERT-URL` (research notes: checked against
a real sandbox delivery; PayPal's SDKs verify offline the same way).

As with SNS, fetching the certificate is the worker's job: ingest checks the headers, the
certificate URL (HTTPS on PayPal's API hosts) and the JSON body, and keeps a pending hint; the
worker fetches the certificate (cached), checks that it is PayPal's message-verification
certificate and that the signature matches one of the source's `secrets` (its webhook ids, as
PayPal's dashboard shows them), and only then stores the event (hookyard/fetchback.py).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import ClassVar

from yarl import URL

from hookyard.errors import VerificationError
from hookyard.verify._common import (
    Frozen,
    check_timestamp,
    init,
    iso_seconds,
    json_object,
    require_secrets,
)
from hookyard.verify.base import Inbound, SchemeDoc, Verified, VerifyOptions

PAYPAL_HOST = re.compile(r"^api(-m)?\.(sandbox\.)?paypal\.com$")
CERT_NAMES = ("messageverificationcerts.paypal.com", "messageverificationcerts.sandbox.paypal.com")
HEADERS = ("paypal-transmission-id", "paypal-transmission-time", "paypal-transmission-sig")


def signed_string(headers: dict[str, str], webhook_id: str, body: bytes) -> bytes:
    crc = zlib.crc32(body) & 0xFFFFFFFF
    return (
        f"{headers['paypal-transmission-id']}|{headers['paypal-transmission-time']}|"
        f"{webhook_id}|{crc}"
    ).encode()


def paypal_url(value: str | None) -> bool:
    try:
        url = URL(value or "")
    except ValueError:
        return False
    return url.scheme == "https" and PAYPAL_HOST.match(url.host or "") is not None


DEFAULT_TOLERANCE = 3 * 86400  # seconds


class PayPalVerifier(Frozen):
    __slots__ = ("_tolerance",)

    scheme: str = "paypal"
    credential_headers: frozenset[str] = frozenset()
    # Only a CRC32 of the body is signed: the transmission's dedup key is the replay defence,
    # so the config refuses a tolerance longer than [server] dedup_window (gateway.py).
    replay_by_dedup: ClassVar[bool] = True
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="PayPal",
        summary="PAYPAL-TRANSMISSION-SIG: RSA SHA256, checked by the worker (fetched cert)",
        checks=(
            "`PAYPAL-TRANSMISSION-SIG`: RSA SHA256 over `transmission id|time|webhook id|"
            "crc32(body)`, certificate at `PAYPAL-CERT-URL` (HTTPS on "
            "`api(-m).(sandbox.)paypal.com` only). Ingest checks the headers and keeps a "
            "pending hint; the worker fetches the certificate (cached), checks that it is "
            "PayPal's message-verification certificate and the signature, then stores the "
            "event. The transmission time must be within 3 days (PayPal retries for about 3)."
        ),
        secrets="The webhook ids, as PayPal's dashboard shows them.",
        dedup="body `id` (`WH-…`), and `PAYPAL-TRANSMISSION-ID`",
        event_type="JSON `event_type`",
        body_dedup="no",
        options=("tolerance", "fetch_url", "fetch_rate"),
        notes=(
            "Only a CRC32 of the body is signed, which can be forged to fit: so each "
            "transmission id is accepted once, whatever body comes with it."
        ),
        secret_example="env:PAYPAL_WEBHOOK_ID",
    )
    _tolerance: int

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        require_secrets(self.scheme, secrets)  # the webhook ids (checked by the worker)
        # PayPal retries for about 3 days. A window is needed: after [server] dedup_window a
        # captured transmission would pass again with any body of the same CRC32.
        tolerance = DEFAULT_TOLERANCE if options.tolerance is None else options.tolerance
        init(self, _tolerance=tolerance)

    def verify(self, request: Inbound) -> Verified:
        headers = request.headers
        missing = [name for name in HEADERS if not headers.get(name)]
        if missing or not paypal_url(headers.get("paypal-cert-url")):
            raise VerificationError(
                "expected PayPal's PAYPAL-TRANSMISSION-ID, -TIME, -SIG and a PAYPAL-CERT-URL on "
                "https://api(-m).(sandbox.)paypal.com",
                code="missing_signature",
            )
        if headers.get("paypal-auth-algo", "SHA256withRSA") != "SHA256withRSA":
            raise VerificationError("PAYPAL-AUTH-ALGO must be SHA256withRSA", code="bad_signature")
        if self._tolerance:
            check_timestamp(
                iso_seconds(headers["paypal-transmission-time"]),
                request.received_at,
                self._tolerance,
                "PAYPAL-TRANSMISSION-TIME",
            )
        event = json_object(request.body)
        event_id = event.get("id") if event else None
        if not isinstance(event_id, str) or not event_id:
            raise VerificationError("expected a JSON event with an id", code="bad_signature")
        return Verified(hint=event_id)  # the worker checks the signature

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Nothing: only PayPal holds the signing key."""
        return {}
