"""Slack: ``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{timestamp}:{body}">``.

Slack's Events API proves an endpoint with ``{"type": "url_verification", "challenge": …}``
and expects the challenge back synchronously; that answer is given only after the signature
checks out, so the endpoint cannot be used as an oracle or claimed by someone else.

Event type, kept simple:
* JSON ``event_callback`` → the inner ``event.type`` ("app_mention", "message", …);
* other JSON → the top-level ``type`` ("url_verification", "app_rate_limited", …);
* form bodies: slash commands (a ``command`` field) → ``"command"``; interactivity
  (a ``payload`` field holding JSON) → that payload's ``type`` ("block_actions", …).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import unquote_to_bytes

from hookyard.errors import VerificationError
from hookyard.verify._common import (
    Fields,
    Frozen,
    any_match,
    check_timestamp,
    header_bytes,
    init,
    json_object,
    mac,
    tolerance_from,
    tried,
    unhex,
    utf8_keys,
)
from hookyard.verify.base import (
    TIMED_OPTIONS,
    Handshake,
    Inbound,
    SchemeDoc,
    Verified,
    VerifyOptions,
)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _form_type(body: bytes) -> str | None:
    for part in body.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == b"command":
            return "command"
        if name == b"payload":
            doc = json_object(unquote_to_bytes(value.replace(b"+", b" ")))
            return _str(doc.get("type")) if doc is not None else None
    return None


class SlackVerifier(Frozen):
    """Event id is the body's ``event_id`` (Events API); commands and interactions have none."""

    __slots__ = ("_fields", "_keys", "_tolerance")

    scheme: str = "slack"
    credential_headers: frozenset[str] = frozenset()
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Slack",
        summary="X-Slack-Signature v0=: HMAC-SHA256 of v0:ts:body, ±5 min",
        checks=(
            "`X-Slack-Signature: v0=<hex HMAC-SHA256>` over "
            "`v0:{X-Slack-Request-Timestamp}:{body}`; the timestamp within ±5 minutes."
        ),
        secrets="The app's signing secret.",
        dedup=(
            "JSON `event_id` (Events API); slash commands and interactions, which have none: "
            "the body hash (it carries a `trigger_id`)"
        ),
        event_type=(
            "`event.type` of an `event_callback`, else `type`; forms: `command`, or the "
            "interaction's `type`"
        ),
        body_dedup="slash commands and interactions (form bodies)",
        options=TIMED_OPTIONS,
        handshake="`url_verification`: the `challenge` (`text/plain`)",
        notes=(
            "Form bodies: a slash command's type is `command`, an interaction's the `type` in "
            "its `payload` JSON (`block_actions`, …). The challenge is answered only after the "
            "signature verifies, so nobody else can claim the endpoint."
        ),
        secret_example="env:SLACK_SIGNING_SECRET",
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
        headers = request.headers
        body = request.body
        header = headers.get("x-slack-signature")
        timestamp = headers.get("x-slack-request-timestamp")
        if not header or not timestamp:
            raise VerificationError(
                "missing header: expected X-Slack-Signature and X-Slack-Request-Timestamp",
                code="missing_signature",
            )
        if not (header.startswith("v0=") and self._matches(header[3:], timestamp, body)):
            raise VerificationError(
                "signature did not match; expected header X-Slack-Signature "
                '(v0=<hex HMAC-SHA256 of "v0:{X-Slack-Request-Timestamp}:{body}">, '
                f"key = the app's signing secret); {tried(len(self._keys))}",
                code="bad_signature",
            )
        check_timestamp(
            timestamp, request.received_at, self._tolerance, "X-Slack-Request-Timestamp"
        )

        doc = json_object(body)
        handshake = None
        if doc is None:
            event_id = None
            event_type = _form_type(body)
        else:
            kind = _str(doc.get("type"))
            event_id = _str(doc.get("event_id"))
            event_type = kind
            if kind == "event_callback":
                event = doc.get("event")
                event_type = _str(event.get("type")) if isinstance(event, dict) else None
            elif kind == "url_verification":
                challenge = doc.get("challenge")
                if isinstance(challenge, str):
                    handshake = Handshake(200, "text/plain", challenge.encode("utf-8"))

        fields = self._fields
        if fields.id_header:
            event_id = fields.event_id(headers)
        if fields.overrides_type:
            event_type = fields.event_type(headers, body)
        # A form body (a slash command, an interaction) has no id: its hash tells a replay.
        return Verified(
            event_id=event_id,
            event_type=event_type,
            handshake=handshake,
            body_dedup=doc is None,
        )

    def _matches(self, value: str, timestamp: str, body: bytes) -> bool:
        signature = unhex(value, 32)
        if signature is None:
            return False
        return any_match(
            self._keys, b"".join((b"v0:", header_bytes(timestamp), b":")), body, signature
        )

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Timestamp and signature; Slack sends no id header (`url`, `message_id` unused)."""
        ts = str(timestamp)
        signature = mac(self._keys[0], b"".join((b"v0:", ts.encode(), b":")), body).hex()
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + signature}
