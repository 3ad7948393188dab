"""Configurable HMAC (scheme "hmac") for providers without a dedicated verifier.

One signature in ``signature_header``, optionally prefixed (``sha256=``), hex or base64, over a
``signed_content`` template of ``{body}``, ``{timestamp}`` and ``{id}``. Signing a timestamp
turns on the replay window and off body dedup (the same body at another time is another
event), and makes the signed content's hash a dedup key: the same signed request again (a
resend, or a capture replayed within the window) is a duplicate even without an id_header.
Rotation is by configuring several secrets.
Timestamps must be unix seconds for the window check (tolerance 0 accepts any text).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
from collections.abc import Sequence
from typing import ClassVar

from hookyard.errors import ConfigError, VerificationError
from hookyard.verify._common import (
    DIGEST_SIZES,
    Fields,
    Frozen,
    any_match,
    check_timestamp,
    header_bytes,
    header_name,
    init,
    mac,
    tolerance_from,
    tried,
    unbase64,
    unhex,
    utf8_keys,
)
from hookyard.verify.base import TIMED_OPTIONS, Inbound, SchemeDoc, Verified, VerifyOptions

# Template parts: bytes are literals, these names are placeholders.
_BODY, _TIMESTAMP, _ID = "body", "timestamp", "id"
_ENCODINGS = ("hex", "base64")

Part = bytes | str


def compile_template(template: str) -> tuple[Part, ...]:
    """Split a ``signed_content`` template once, so requests only join bytes."""
    parts: list[Part] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError("signed_content", f"invalid template {template!r}: {exc}") from None
    for literal, field, spec, conversion in parsed:
        if literal:
            parts.append(literal.encode("utf-8"))
        if field is None:
            continue
        if field not in (_BODY, _TIMESTAMP, _ID) or spec or conversion:
            raise ConfigError(
                "signed_content",
                f"unknown placeholder {{{field}}} in {template!r}; "
                "expected only {body}, {timestamp} and {id} (write {{ or }} for a brace)",
            )
        parts.append(field)
    if _BODY not in parts:
        raise ConfigError(
            "signed_content",
            f"template {template!r} must contain {{body}}, or the body is unsigned",
        )
    return tuple(parts)


class GenericHmacVerifier(Frozen):
    """Event id from ``id_header``, type from ``type_header`` or ``type_field`` if configured."""

    __slots__ = (
        "_algorithm",
        "_display",
        "_fields",
        "_header",
        "_hex",
        "_id_display",
        "_id_header",
        "_id_signed",
        "_keys",
        "_parts",
        "_plain",
        "_prefix",
        "_size",
        "_template",
        "_timestamp_display",
        "_timestamp_header",
        "_tolerance",
    )

    scheme: str = "hmac"
    credential_headers: frozenset[str] = frozenset()
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="generic HMAC",
        summary="a configured header: HMAC of a configured template",
        checks=(
            "The signature in `signature_header`, after `signature_prefix`, `encoding` hex or "
            "base64: HMAC with `algorithm` (sha1, sha256 or sha512) over the `signed_content` "
            "template of `{body}`, `{timestamp}` (from `timestamp_header`) and `{id}` (from "
            "`id_header`). A signed `{timestamp}` (unix seconds) must be within ±5 minutes."
        ),
        secrets="The shared signing secret, used as text.",
        dedup=(
            "`id_header`, if set; with a signed `{timestamp}`, also the hash of the signed "
            "content (the same signed request twice is one event)"
        ),
        event_type="`type_header` or `type_field`, if set",
        body_dedup="yes, unless the template signs `{timestamp}`",
        options=(
            "signature_header",
            "algorithm",
            "encoding",
            "signature_prefix",
            "signed_content",
            "timestamp_header",
            *TIMED_OPTIONS,
        ),
        secret_example="env:PARTNER_SECRET",
        required=(("signature_header", '"X-Signature"'),),
    )

    _keys: tuple[hmac.HMAC, ...]
    _header: str
    _display: str
    _algorithm: str
    _size: int
    _hex: bool
    _prefix: str
    _template: str
    _parts: tuple[Part, ...]
    _plain: bool
    _timestamp_header: str | None
    _id_header: str | None
    _id_signed: bool
    _timestamp_display: str
    _id_display: str
    _tolerance: int
    _fields: Fields

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        if not options.signature_header:
            raise ConfigError(
                "signature_header", "scheme 'hmac' needs the name of the header with the signature"
            )
        algorithm = options.algorithm.lower()
        if algorithm not in DIGEST_SIZES:
            raise ConfigError(
                "algorithm", f"got {options.algorithm!r}; expected one of sha1, sha256, sha512"
            )
        encoding = options.encoding.lower()
        if encoding not in _ENCODINGS:
            raise ConfigError("encoding", f"got {options.encoding!r}; expected hex or base64")
        parts = compile_template(options.signed_content)
        fields = Fields.from_options(options)
        timestamp_header = header_name(options.timestamp_header, "timestamp_header")
        if _TIMESTAMP in parts and timestamp_header is None:
            raise ConfigError(
                "timestamp_header", "signed_content uses {timestamp}; name the header that holds it"
            )
        if _ID in parts and fields.id_header is None:
            raise ConfigError("id_header", "signed_content uses {id}; name the header holding it")
        init(
            self,
            _keys=utf8_keys(self.scheme, secrets, algorithm),
            _header=header_name(options.signature_header, "signature_header") or "",
            _display=options.signature_header.strip(),
            _algorithm=algorithm,
            _size=DIGEST_SIZES[algorithm],
            _hex=encoding == "hex",
            _prefix=options.signature_prefix,
            _template=options.signed_content,
            _parts=parts,
            _plain=parts == (_BODY,),
            _timestamp_header=timestamp_header if _TIMESTAMP in parts else None,
            _id_header=fields.id_header,
            _id_signed=_ID in parts,
            _timestamp_display=(options.timestamp_header or "").strip(),
            _id_display=(options.id_header or "").strip(),
            _tolerance=tolerance_from(options),
            _fields=fields,
        )

    def verify(self, request: Inbound) -> Verified:
        headers = request.headers
        header = headers.get(self._header)
        timestamp_header = self._timestamp_header
        timestamp = headers.get(timestamp_header) if timestamp_header else None
        if not header or (timestamp_header and not timestamp):
            raise VerificationError(self._missing(), code="missing_signature")
        event_id = self._fields.event_id(headers)
        if self._plain:
            content = request.body
        else:
            if self._id_signed and not event_id:
                raise VerificationError(self._missing(), code="missing_signature")
            content = self._content(request.body, timestamp or "", event_id or "")

        prefix = self._prefix
        signature = None
        if header.startswith(prefix):
            value = header[len(prefix) :]
            signature = unhex(value, self._size) if self._hex else unbase64(value, self._size)
        if signature is None or not any_match(self._keys, b"", content, signature):
            raise VerificationError(
                f"signature did not match; expected header {self._display} "
                f"({prefix}<{'hex' if self._hex else 'base64'} HMAC-{self._algorithm.upper()} "
                f'of "{self._template}">); {tried(len(self._keys))}',
                code="bad_signature",
            )
        if timestamp_header and timestamp is not None:
            check_timestamp(
                timestamp, request.received_at, self._tolerance, self._timestamp_display
            )
        return Verified(
            event_id=event_id,
            event_type=self._fields.event_type(headers, request.body),
            body_dedup=timestamp is None,
            # The timestamp makes the signed content one request's: seen again, it is a replay
            # (or a resend) of that request, whatever unsigned headers came with it.
            replay_key=("signed:" + hashlib.sha256(content).hexdigest()) if timestamp else None,
        )

    def _missing(self) -> str:
        names = [self._display]
        if self._timestamp_header:
            names.append(self._timestamp_display)
        if self._id_signed:
            names.append(self._id_display)
        return "missing header: expected " + ", ".join(names)

    def _content(self, body: bytes, timestamp: str, msg_id: str) -> bytes:
        out = []
        for part in self._parts:
            if isinstance(part, bytes):
                out.append(part)
            elif part == _BODY:
                out.append(body)
            elif part == _TIMESTAMP:
                out.append(header_bytes(timestamp))
            else:
                out.append(header_bytes(msg_id))
        return b"".join(out)

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """The signature header, plus the timestamp header when signed and the id header when
        configured (with `message_id`). `url` is unused."""
        ts = str(timestamp)
        content = self._content(body, ts, message_id)
        raw = mac(self._keys[0], b"", content)
        encoded = raw.hex() if self._hex else base64.b64encode(raw).decode("ascii")
        headers = {self._display: self._prefix + encoded}
        if self._timestamp_header:
            headers[self._timestamp_display] = ts
        if self._id_header:
            headers[self._id_display] = message_id
        return headers
