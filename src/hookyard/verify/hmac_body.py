"""Providers that sign only the body (GitHub, Shopify).

No timestamp is signed, so a captured request replays forever: these schemes set
``body_dedup`` and rely on the provider's delivery/event ids for deduplication.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Sequence
from typing import ClassVar

from hookyard.errors import VerificationError
from hookyard.verify._common import (
    Fields,
    Frozen,
    any_match,
    init,
    json_object,
    mac,
    tried,
    unbase64,
    unhex,
    utf8_keys,
)
from hookyard.verify.base import ID_TYPE_OPTIONS, Inbound, SchemeDoc, Verified, VerifyOptions


def _check(keys: tuple[hmac.HMAC, ...], value: str, size: int, body: bytes) -> bool:
    raw = unhex(value, size)
    return raw is not None and any_match(keys, b"", body, raw)


class GitHubVerifier(Frozen):
    """``X-Hub-Signature-256: sha256=<hex>``; legacy ``X-Hub-Signature: sha1=<hex>`` is used
    only when the SHA-256 header is absent (old GitHub Enterprise servers send only that).

    The event type is ``X-GitHub-Event``, plus ``.<action>`` when the JSON body has a string
    ``action`` ("pull_request.opened"; "push" stays "push"), so route globs can pick actions.
    """

    __slots__ = ("_fields", "_keys", "_sha1_keys")

    scheme: str = "github"
    credential_headers: frozenset[str] = frozenset()
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="GitHub",
        summary="X-Hub-Signature-256: HMAC-SHA256 of the body",
        checks=(
            "`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`; only when it is "
            "absent, the legacy `X-Hub-Signature: sha1=<hex HMAC-SHA1>` (old GitHub Enterprise "
            "servers). No timestamp is signed."
        ),
        secrets="The webhook's secret.",
        dedup="`X-GitHub-Delivery`, and the body hash",
        event_type="`X-GitHub-Event`, plus `.<action>` when the body has one",
        body_dedup="yes (no signed timestamp)",
        options=ID_TYPE_OPTIONS,
        notes="`push` stays `push`; `pull_request` with `action: opened` is `pull_request.opened`.",
        secret_example="env:GITHUB_SECRET",
    )

    _keys: tuple[hmac.HMAC, ...]
    _sha1_keys: tuple[hmac.HMAC, ...]
    _fields: Fields

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        init(
            self,
            _keys=utf8_keys(self.scheme, secrets),
            _sha1_keys=utf8_keys(self.scheme, secrets, "sha1"),
            _fields=Fields.from_options(options),
        )

    def verify(self, request: Inbound) -> Verified:
        headers = request.headers
        body = request.body
        header = headers.get("x-hub-signature-256")
        if header is not None:
            ok = header.startswith("sha256=") and _check(self._keys, header[7:], 32, body)
            expected = "X-Hub-Signature-256 (sha256=<hex HMAC-SHA256 of the body>)"
        else:
            header = headers.get("x-hub-signature")
            if not header:
                raise VerificationError(
                    "missing header X-Hub-Signature-256 (or legacy X-Hub-Signature)",
                    code="missing_signature",
                )
            ok = header.startswith("sha1=") and _check(self._sha1_keys, header[5:], 20, body)
            expected = "X-Hub-Signature (sha1=<hex HMAC-SHA1 of the body>)"
        if not ok:
            raise VerificationError(
                f"signature did not match; expected header {expected}; {tried(len(self._keys))}",
                code="bad_signature",
            )

        fields = self._fields
        if fields.overrides_type:
            event_type = fields.event_type(headers, body)
        else:
            event_type = headers.get("x-github-event") or None
            if event_type is not None:
                doc = json_object(body)
                action = doc.get("action") if doc is not None else None
                if isinstance(action, str) and action:
                    event_type = f"{event_type}.{action}"
        return Verified(
            event_id=fields.event_id(headers),
            event_type=event_type,
            delivery_id=headers.get("x-github-delivery") or None,
            body_dedup=True,
        )

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """The SHA-256 signature and ``X-GitHub-Delivery``; ``X-GitHub-Event`` is the caller's
        (it names the event, which only the caller knows). `url` and `timestamp` are unused."""
        signature = mac(self._keys[0], b"", body).hex()
        return {"X-Hub-Signature-256": "sha256=" + signature, "X-GitHub-Delivery": message_id}


class ShopifyVerifier(Frozen):
    """``X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>`` keyed by the app secret.

    Event id ``X-Shopify-Event-Id`` (shared by the copies sent to several subscriptions),
    delivery id ``X-Shopify-Webhook-Id``, type ``X-Shopify-Topic``.
    """

    __slots__ = ("_fields", "_keys")

    scheme: str = "shopify"
    credential_headers: frozenset[str] = frozenset()
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Shopify",
        summary="X-Shopify-Hmac-Sha256: base64 HMAC-SHA256 of the body",
        checks=("`X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the body. No timestamp is signed."),
        secrets="The app's client secret.",
        dedup="`X-Shopify-Event-Id`, else `X-Shopify-Webhook-Id`; and the body hash",
        event_type="`X-Shopify-Topic`",
        body_dedup="yes (no signed timestamp)",
        options=ID_TYPE_OPTIONS,
        notes=(
            "The copies of an event sent to several subscriptions share `X-Shopify-Event-Id`, "
            "so they are one event."
        ),
        secret_example="env:SHOPIFY_CLIENT_SECRET",
    )

    _keys: tuple[hmac.HMAC, ...]
    _fields: Fields

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        init(self, _keys=utf8_keys(self.scheme, secrets), _fields=Fields.from_options(options))

    def verify(self, request: Inbound) -> Verified:
        headers = request.headers
        body = request.body
        header = headers.get("x-shopify-hmac-sha256")
        if not header:
            raise VerificationError(
                "missing header X-Shopify-Hmac-Sha256", code="missing_signature"
            )
        raw = unbase64(header, 32)
        if raw is None or not any_match(self._keys, b"", body, raw):
            raise VerificationError(
                "signature did not match; expected header X-Shopify-Hmac-Sha256 "
                "(<base64 HMAC-SHA256 of the body>, key = the app's client secret); "
                f"{tried(len(self._keys))}",
                code="bad_signature",
            )
        fields = self._fields
        return Verified(
            event_id=(
                fields.event_id(headers)
                if fields.id_header
                else headers.get("x-shopify-event-id") or None
            ),
            event_type=(
                fields.event_type(headers, body)
                if fields.overrides_type
                else headers.get("x-shopify-topic") or None
            ),
            delivery_id=headers.get("x-shopify-webhook-id") or None,
            body_dedup=True,
        )

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """The signature and ``X-Shopify-Webhook-Id``; topic and event id are the caller's.
        `url` and `timestamp` are unused."""
        signature = mac(self._keys[0], b"", body)
        return {
            "X-Shopify-Hmac-Sha256": base64.b64encode(signature).decode("ascii"),
            "X-Shopify-Webhook-Id": message_id,
        }
