"""Standard Webhooks (standardwebhooks.com), and Svix, which is the same scheme under svix-* names.

Signed content is ``{id}.{timestamp}.{body}``; the signature header is a space-separated list
of ``v1,<base64 HMAC-SHA256>`` entries, any one of which may match (the sender's own rotation).
Entries of other versions (``v1a`` is Ed25519) or malformed entries simply do not match.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar

from hookyard.errors import ConfigError, VerificationError
from hookyard.verify._common import (
    Fields,
    Frozen,
    check_timestamp,
    header_bytes,
    init,
    json_object,
    json_path,
    keyed,
    mac,
    require_secrets,
    to_bytes,
    tolerance_from,
    tried,
    unbase64,
)
from hookyard.verify.base import TIMED_OPTIONS, Inbound, SchemeDoc, Verified, VerifyOptions

SECRET_PREFIX = "whsec_"
_TYPE = ("type",)


def decode_secret(secret: str, n: int) -> bytes:
    """``whsec_<base64>`` (or bare base64), padding optional, as the official libraries accept."""
    text = secret.strip()
    text = text.removeprefix(SECRET_PREFIX)
    text += "=" * (-len(text) % 4)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            "secrets",
            f"secret #{n} is not 'whsec_' followed by base64 (as Standard Webhooks issues)",
        ) from None
    if not key:
        raise ConfigError("secrets", f"secret #{n} decodes to an empty key")
    return key


class StandardWebhooksVerifier(Frozen):
    """Accepts both ``webhook-*`` and ``svix-*`` headers, so one source serves either sender."""

    __slots__ = ("_fields", "_keys", "_tolerance")

    scheme: str = "standard"
    credential_headers: frozenset[str] = frozenset()
    _family = "webhook-"  # header names `sign` emits
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Standard Webhooks",
        summary="webhook-signature: HMAC-SHA256 of id.timestamp.body, ±5 min",
        checks=(
            "`webhook-signature` (or `svix-signature`): space-separated "
            "`v1,<base64 HMAC-SHA256>` entries, any one of which may match, over "
            "`{webhook-id}.{webhook-timestamp}.{body}`; `webhook-timestamp` within ±5 minutes."
        ),
        secrets="The `whsec_…` signing secret (base64 after the prefix; bare base64 works too).",
        dedup="`webhook-id` (`svix-id`)",
        event_type="JSON `type`",
        body_dedup="no",
        options=TIMED_OPTIONS,
        notes="Both header families (`webhook-*` and `svix-*`) are accepted by one source.",
        secret_example="env:WEBHOOK_SECRET",
    )

    _keys: tuple[hmac.HMAC, ...]
    _tolerance: int
    _fields: Fields

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        items = require_secrets(self.scheme, secrets)
        init(
            self,
            _keys=keyed([decode_secret(s, n) for n, s in enumerate(items, 1)]),
            _tolerance=tolerance_from(options),
            _fields=Fields.from_options(options),
        )

    def verify(self, request: Inbound) -> Verified:
        headers = request.headers
        family = "webhook-"
        header = headers.get("webhook-signature")
        if header is None:
            family = "svix-"
            header = headers.get("svix-signature")
        msg_id = headers.get(family + "id")
        timestamp = headers.get(family + "timestamp")
        if not header or not msg_id or not timestamp:
            raise VerificationError(
                "missing header: expected webhook-id, webhook-timestamp and webhook-signature "
                "(or svix-id, svix-timestamp and svix-signature)",
                code="missing_signature",
            )

        signatures = []
        for entry in header.split():
            version, _, value = entry.partition(",")
            if version == "v1":
                # rstrip: a repeated header arrives joined with ", ", leaving a trailing comma
                raw = unbase64(value.rstrip(","), 32)
                if raw is not None:
                    signatures.append(raw)
        if not self._matches(signatures, msg_id, timestamp, request.body):
            raise VerificationError(
                f"signature did not match; expected header {family}signature with entries "
                f"'v1,<base64 HMAC-SHA256 of \"{{{family}id}}.{{{family}timestamp}}.{{body}}\">' "
                f"(space-separated), key = base64-decoded whsec_ secret; "
                f"{tried(len(self._keys))}",
                code="bad_signature",
            )
        check_timestamp(timestamp, request.received_at, self._tolerance, family + "timestamp")

        fields = self._fields
        body = request.body
        return Verified(
            event_id=fields.event_id(headers) if fields.id_header else msg_id,
            event_type=(
                fields.event_type(headers, body)
                if fields.overrides_type
                else json_path(json_object(body), _TYPE)
            ),
        )

    def _matches(self, signatures: list[bytes], msg_id: str, timestamp: str, body: bytes) -> bool:
        if not signatures:
            return False
        head = b"".join((header_bytes(msg_id), b".", header_bytes(timestamp), b"."))
        for base in self._keys:
            expected = mac(base, head, body)
            for signature in signatures:
                if hmac.compare_digest(expected, signature):
                    return True
        return False

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """The id, timestamp and one ``v1`` signature with the first secret (`url` is unused)."""
        ts = str(timestamp)
        head = b"".join((to_bytes(message_id), b".", ts.encode(), b"."))
        signature = mac(self._keys[0], head, body)
        family = self._family
        return {
            family + "id": message_id,
            family + "timestamp": ts,
            family + "signature": "v1," + base64.b64encode(signature).decode("ascii"),
        }


class SvixVerifier(StandardWebhooksVerifier):
    """The same scheme; only `sign` differs, emitting Svix's ``svix-*`` header names."""

    __slots__ = ()

    scheme: str = "svix"
    _family = "svix-"
    doc: ClassVar[SchemeDoc] = replace(
        StandardWebhooksVerifier.doc,
        provider="Svix",
        notes=(
            "The same scheme as `standard`, which accepts `svix-*` headers too; only "
            "`hookyard send` differs, signing with the `svix-*` header names."
        ),
        secret_example="env:SVIX_SECRET",
    )
