"""Schemes without a body signature: HTTP basic auth, a static token, and none.

They authenticate the sender, not the body, and sign no timestamp. Body dedup stays off:
such senders (health pings, fetch-back hints like Mollie's ``id=tr_…``) legitimately repeat
identical bodies. Credentials are compared as SHA-256 digests, so the comparison is constant
time whatever their length.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence
from typing import ClassVar

from hookyard.errors import ConfigError, VerificationError
from hookyard.verify._common import (
    Fields,
    Frozen,
    header_name,
    init,
    require_secrets,
    sha256,
    tried,
)
from hookyard.verify.base import ID_TYPE_OPTIONS, Inbound, SchemeDoc, Verified, VerifyOptions


def _any_digest(digests: tuple[bytes, ...], value: bytes) -> bool:
    digest = sha256(value)
    return any(hmac.compare_digest(digest, expected) for expected in digests)


# These schemes learn nothing from the provider: only what the source configures.
_SET_ID = "`id_header`, if set"
_SET_TYPE = "`type_header` or `type_field`, if set"


def _facts(fields: Fields, request: Inbound) -> Verified:
    return Verified(
        event_id=fields.event_id(request.headers),
        event_type=fields.event_type(request.headers, request.body),
    )


class BasicAuthVerifier(Frozen):
    """``Authorization: Basic base64(user:password)``; each secret is ``user:password``."""

    __slots__ = ("_digests", "_fields", "_first")

    scheme: str = "basic"
    credential_headers: frozenset[str] = frozenset({"authorization"})
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="HTTP basic auth",
        summary="Authorization: Basic user:password",
        checks=(
            "`Authorization: Basic …` equal to one of the secrets (the header is redacted and "
            "never forwarded). The body is not signed."
        ),
        secrets="`user:password` pairs.",
        dedup=_SET_ID,
        event_type=_SET_TYPE,
        body_dedup="no (`dedup_body = true` turns it on)",
        options=ID_TYPE_OPTIONS,
        secret_example="env:PARTNER_BASIC_AUTH",
    )

    _digests: tuple[bytes, ...]
    _first: bytes
    _fields: Fields

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        items = require_secrets(self.scheme, secrets)
        for n, secret in enumerate(items, 1):
            user, colon, _ = secret.partition(":")
            if not colon or not user:
                raise ConfigError("secrets", f"secret #{n}: expected 'user:password'")
        creds = tuple(s.encode("utf-8") for s in items)
        init(
            self,
            _digests=tuple(sha256(c) for c in creds),
            _first=creds[0],
            _fields=Fields.from_options(options),
        )

    def verify(self, request: Inbound) -> Verified:
        value = request.headers.get("authorization")
        if not value:
            raise VerificationError(
                "missing header Authorization (Basic credentials)", code="missing_signature"
            )
        kind, _, encoded = value.partition(" ")
        try:
            given = binascii.a2b_base64(encoded.strip(), strict_mode=True)
        except (binascii.Error, ValueError):
            given = b""
        if kind.lower() != "basic" or not given or not _any_digest(self._digests, given):
            raise VerificationError(
                "credentials did not match; expected header Authorization "
                f"(Basic <base64 of user:password>); {tried(len(self._digests))}",
                code="bad_credentials",
            )
        return _facts(self._fields, request)

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """The Authorization header for the first credentials; nothing else is signed."""
        return {"Authorization": "Basic " + base64.b64encode(self._first).decode("ascii")}


class TokenVerifier(Frozen):
    """A static token: ``Authorization: Bearer <token>`` by default, or the raw value of
    ``token_header`` (``X-Gitlab-Token``, …)."""

    __slots__ = (
        "_bearer",
        "_digests",
        "_display",
        "_fields",
        "_first",
        "_header",
        "credential_headers",
    )

    scheme: str = "token"
    credential_headers: frozenset[str]
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="static token",
        summary="a token in Authorization: Bearer … or in token_header",
        checks=(
            "`Authorization: Bearer <token>`, or the raw value of `token_header` "
            "(`X-Gitlab-Token`, …), equal to one of the secrets (the header is redacted and "
            "never forwarded). The body is not signed."
        ),
        secrets="The tokens.",
        dedup=_SET_ID,
        event_type=_SET_TYPE,
        body_dedup="no (`dedup_body = true` turns it on)",
        options=("token_header", *ID_TYPE_OPTIONS),
        secret_example="env:PARTNER_TOKEN",
    )

    _digests: tuple[bytes, ...]
    _first: str
    _header: str
    _display: str
    _bearer: bool
    _fields: Fields

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        items = require_secrets(self.scheme, secrets)
        header = header_name(options.token_header, "token_header") or "authorization"
        init(
            self,
            credential_headers=frozenset({header}),
            _digests=tuple(sha256(s.encode("utf-8")) for s in items),
            _first=items[0],
            _header=header,
            _display=(options.token_header or "Authorization").strip(),
            _bearer=header == "authorization",
            _fields=Fields.from_options(options),
        )

    def verify(self, request: Inbound) -> Verified:
        value = request.headers.get(self._header)
        if not value:
            raise VerificationError(f"missing header {self._display}", code="missing_signature")
        if self._bearer:
            kind, _, value = value.partition(" ")
            if kind.lower() != "bearer":
                value = ""
        if not value or not _any_digest(self._digests, value.encode("utf-8", "surrogatepass")):
            expected = "Bearer <token>" if self._bearer else "<token>"
            raise VerificationError(
                f"credentials did not match; expected header {self._display} ({expected}); "
                f"{tried(len(self._digests))}",
                code="bad_credentials",
            )
        return _facts(self._fields, request)

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """The token header for the first token; nothing else is signed."""
        value = "Bearer " + self._first if self._bearer else self._first
        return {self._display: value}


class NoneVerifier(Frozen):
    """Accepts everything: for senders that cannot authenticate (verify by fetching back)."""

    __slots__ = ("_fields",)

    scheme: str = "none"
    credential_headers: frozenset[str] = frozenset()
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="no authentication",
        summary="nothing",
        checks=(
            "Nothing: for senders that cannot authenticate (their events are worth only what "
            "you verify later, e.g. by fetching back)."
        ),
        secrets="None: `secrets` must be empty.",
        dedup=_SET_ID,
        event_type=_SET_TYPE,
        body_dedup="no (`dedup_body = true` turns it on)",
        options=ID_TYPE_OPTIONS,
    )

    _fields: Fields

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        if isinstance(secrets, str | bytes) or list(secrets):
            raise ConfigError(
                "secrets",
                "scheme 'none' checks nothing, so secrets would be ignored; remove them "
                "or choose a scheme that uses them",
            )
        init(self, _fields=Fields.from_options(options))

    def verify(self, request: Inbound) -> Verified:
        return _facts(self._fields, request)

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Nothing to send."""
        return {}
