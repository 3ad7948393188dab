"""Schemes signed with the provider's private key: Discord interactions (Ed25519) and the
SendGrid Event Webhook (ECDSA P-256). The configured secrets are the provider's *public* keys;
several may be configured (rotation, or several applications posting to one source).

Verification uses the ``cryptography`` package (OpenSSL): it rejects malleated Ed25519
signatures (S not below the group order) and non-DER ECDSA encodings, so a changed byte of a
signature is a different, invalid signature. Neither scheme can `sign`: only the provider holds
the private key, so `hookyard send` cannot forge these requests (it sends them unsigned and
they are refused).
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar

import orjson
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from hookyard.errors import ConfigError, VerificationError
from hookyard.verify._common import (
    Fields,
    Frozen,
    batch_items,
    check_timestamp,
    header_bytes,
    init,
    json_any,
    json_object,
    require_secrets,
    shared_field,
    tried,
    unhex,
)
from hookyard.verify.base import (
    TIMED_OPTIONS,
    Handshake,
    Inbound,
    SchemeDoc,
    Verified,
    VerifyOptions,
)
from hookyard.verify.providers import _facts, _missing, _tolerance

# --- Discord -------------------------------------------------------------------------------

_INTERACTION_TYPES = {
    1: "ping",
    2: "application_command",
    3: "message_component",
    4: "application_command_autocomplete",
    5: "modal_submit",
}
_PONG = Handshake(200, "application/json", orjson.dumps({"type": 1}))
# Stored interactions are answered "deferred" (Discord wants an answer within 3 s; the
# destination then follows up through Discord's API with the interaction token): a command or
# a modal shows "thinking…" (type 5), a component keeps its message (type 6). Autocomplete
# cannot be deferred: it gets no suggestions (type 8).
_DEFERRED = {
    "application_command": 5,
    "modal_submit": 5,
    "message_component": 6,
}


def _deferred(event_type: str | None) -> Handshake:
    if event_type == "application_command_autocomplete":
        body = orjson.dumps({"type": 8, "data": {"choices": []}})
    else:
        body = orjson.dumps({"type": _DEFERRED.get(event_type or "", 5)})
    return Handshake(200, "application/json", body)


class DiscordVerifier(Frozen):
    """Discord interactions endpoint: ``X-Signature-Ed25519`` (hex, 64 bytes) over
    ``X-Signature-Timestamp`` + body; the secret is the application's public key (64 hex
    digits, from the developer portal).

    A PING (``{"type": 1}``) is answered inline with ``{"type": 1}`` (PONG) once the signature
    has verified; Discord also sends deliberately bad signatures to check that they are refused
    (401). Discord documents no timestamp window; it does not retry and wants an answer within
    3 s (the research notes mark both UNVERIFIED; they are Discord's well-known behaviour), so
    the default 5-minute window costs nothing (``tolerance`` changes it, 0 turns it off).
    Event id: the interaction ``id``; type: the interaction type's name
    (``application_command``, ``message_component``, …).

    Other interactions are stored, delivered, and answered with a deferred response (see
    ``_DEFERRED``); the destination follows up through Discord's API with the interaction
    token.
    """

    __slots__ = ("_fields", "_keys", "_tolerance")

    scheme: str = "discord"
    credential_headers: frozenset[str] = frozenset()
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Discord",
        summary="X-Signature-Ed25519 of timestamp + body (public key), ±5 min",
        checks=(
            "`X-Signature-Ed25519`: hex Ed25519 signature over `X-Signature-Timestamp` + body, "
            "checked with the application's public key; the timestamp within ±5 minutes."
        ),
        secrets="The application's public key (64 hex digits, from the developer portal).",
        dedup="JSON `id` (the interaction's)",
        event_type="the interaction type's name (`application_command`, `message_component`, …)",
        body_dedup="no",
        options=TIMED_OPTIONS,
        handshake='PING (`type` 1): `{"type":1}`',
        notes=(
            "Other interactions are stored, delivered and answered deferred: "
            '`{"type":5}` for commands and modals, `{"type":6}` for components, no '
            "suggestions for autocomplete; the destination follows up through Discord's API "
            "with the interaction token. `hookyard send` cannot sign: only Discord holds the "
            "private key."
        ),
        secret_example="env:DISCORD_PUBLIC_KEY",
    )

    _keys: tuple[Ed25519PublicKey, ...]
    _tolerance: int
    _fields: Fields

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        keys = []
        for n, secret in enumerate(require_secrets(self.scheme, secrets), 1):
            raw = unhex(secret.strip(), 32)
            if raw is None:
                raise ConfigError(
                    "secrets",
                    f"secret #{n} is not an application public key (64 hex digits, from the "
                    "Discord developer portal)",
                )
            try:
                keys.append(Ed25519PublicKey.from_public_bytes(raw))
            except (ValueError, UnsupportedAlgorithm):
                raise ConfigError("secrets", f"secret #{n} is not an Ed25519 public key") from None
        init(
            self,
            _keys=tuple(keys),
            _tolerance=_tolerance(options, 300),
            _fields=Fields.from_options(options),
        )

    def verify(self, request: Inbound) -> Verified:
        headers = request.headers
        header = headers.get("x-signature-ed25519")
        timestamp = headers.get("x-signature-timestamp")
        if not header or not timestamp:
            raise _missing("X-Signature-Ed25519 and X-Signature-Timestamp")
        signature = unhex(header, 64)
        message = header_bytes(timestamp) + request.body
        if signature is None or not any(_ed25519(k, signature, message) for k in self._keys):
            raise VerificationError(
                "signature did not match; expected header X-Signature-Ed25519 (<hex Ed25519 "
                "signature of X-Signature-Timestamp + body>, key = the application's public "
                f"key); {tried(len(self._keys))}",
                code="bad_signature",
            )
        check_timestamp(timestamp, request.received_at, self._tolerance, "X-Signature-Timestamp")
        doc = json_object(request.body)
        kind = doc.get("type") if doc is not None else None
        interaction = doc.get("id") if doc is not None else None
        event_type = None
        if isinstance(kind, int) and not isinstance(kind, bool):
            event_type = _INTERACTION_TYPES.get(kind, str(kind))
        facts = _facts(
            self._fields,
            request,
            event_id=interaction if isinstance(interaction, str) and interaction else None,
            event_type=event_type,
            handshake=_PONG if event_type == "ping" else None,
        )
        return replace(facts, reply=None if facts.handshake else _deferred(event_type))

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Nothing: only Discord holds the private key (the request goes unsigned)."""
        return {}


def _ed25519(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


# --- SendGrid ------------------------------------------------------------------------------

_ECDSA = ec.ECDSA(hashes.SHA256())
_TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
_MAX_SIGNATURE = 200  # characters: a P-256 DER signature is at most 72 bytes (96 in base64)


def _strict_base64(value: str) -> bytes | None:
    """Canonical padded base64 of any length (a DER signature's length varies), else None."""
    if not value or len(value) > _MAX_SIGNATURE or len(value) % 4:
        return None
    try:
        raw = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    if binascii.b2a_base64(raw, newline=False) != value.encode("ascii"):
        return None
    return raw


def _p256_key(secret: str, n: int) -> ec.EllipticCurvePublicKey:
    text = secret.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode("ascii"))
        else:
            der = binascii.a2b_base64(text, strict_mode=True)
            key = load_der_public_key(der)
    except (ValueError, binascii.Error, UnicodeEncodeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(
            "secrets",
            f"secret #{n} is not SendGrid's verification key (the base64 P-256 public key shown "
            "under Mail Settings > Event Webhook > Signature verification)",
        )
    return key


class SendGridVerifier(Frozen):
    """SendGrid Event Webhook with signature verification on:
    ``X-Twilio-Email-Event-Webhook-Signature`` (base64 DER ECDSA P-256/SHA-256) over
    ``X-Twilio-Email-Event-Webhook-Timestamp`` + body (facts: ``sendgrid/sendgrid-python``
    ``sendgrid/helpers/eventwebhook``). The secret is the verification key SendGrid shows: base64
    DER SubjectPublicKeyInfo (PEM accepted too).

    SendGrid documents no timestamp window and whether its retries (for up to 24 h) are signed
    afresh is UNVERIFIED, so no window applies unless ``tolerance`` is set. The body is a JSON
    array of events, each with its own ``sg_event_id``; one request has no single id, so the body
    hash is a dedup key (a retried batch is the same bytes). Type: the ``event`` every event in
    the batch shares.
    """

    __slots__ = ("_fields", "_keys", "_tolerance")

    scheme: str = "sendgrid"
    credential_headers: frozenset[str] = frozenset()
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="SendGrid",
        summary="X-Twilio-Email-Event-Webhook-Signature: ECDSA P-256 of timestamp + body",
        checks=(
            "`X-Twilio-Email-Event-Webhook-Signature`: base64 DER ECDSA P-256/SHA-256 "
            "signature over `X-Twilio-Email-Event-Webhook-Timestamp` + body, checked with "
            "SendGrid's public key; no timestamp window unless `tolerance` is set (SendGrid "
            "documents none)."
        ),
        secrets=("The verification key SendGrid shows (base64 P-256 public key; PEM works too)."),
        dedup="each element's `sg_event_id`",
        event_type="each element's `event`",
        body_dedup="yes (each element's bytes)",
        options=TIMED_OPTIONS,
        notes=(
            "A batch (JSON array) becomes one event per element; the raw request is kept "
            "whole. `hookyard send` cannot sign: only SendGrid holds the private key."
        ),
        secret_example="env:SENDGRID_VERIFICATION_KEY",
    )

    _keys: tuple[ec.EllipticCurvePublicKey, ...]
    _tolerance: int
    _fields: Fields

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        items = require_secrets(self.scheme, secrets)
        init(
            self,
            _keys=tuple(_p256_key(s, n) for n, s in enumerate(items, 1)),
            _tolerance=_tolerance(options, 0),
            _fields=Fields.from_options(options),
        )

    def verify(self, request: Inbound) -> Verified:
        headers = request.headers
        header = headers.get("x-twilio-email-event-webhook-signature")
        timestamp = headers.get("x-twilio-email-event-webhook-timestamp")
        if not header or not timestamp:
            raise _missing(
                "X-Twilio-Email-Event-Webhook-Signature and X-Twilio-Email-Event-Webhook-Timestamp"
            )
        signature = _strict_base64(header)
        message = header_bytes(timestamp) + request.body
        if signature is None or not any(_ecdsa(k, signature, message) for k in self._keys):
            raise VerificationError(
                "signature did not match; expected header X-Twilio-Email-Event-Webhook-Signature "
                "(<base64 DER ECDSA P-256/SHA-256 signature of "
                "X-Twilio-Email-Event-Webhook-Timestamp + body>, key = the verification key); "
                f"{tried(len(self._keys))}",
                code="bad_signature",
            )
        check_timestamp(timestamp, request.received_at, self._tolerance, _TIMESTAMP_HEADER)
        doc = json_any(request.body)
        return replace(
            _facts(self._fields, request, event_type=shared_field(doc, "event"), body_dedup=True),
            items=batch_items(request.body, "sg_event_id", "event"),  # one event per element
        )

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Nothing: only SendGrid holds the private key (the request goes unsigned)."""
        return {}


def _ecdsa(key: ec.EllipticCurvePublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message, _ECDSA)
    except (InvalidSignature, ValueError):
        return False
    return True
