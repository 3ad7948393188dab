"""Twilio: ``X-Twilio-Signature`` = base64 HMAC-SHA1 (key: the account's Auth Token) of the
full URL Twilio called, followed by every POST parameter as ``name + value``, names sorted.

Facts from ``twilio/twilio-python`` ``twilio/request_validator.py`` (9.x) and its tests:

* parameter names are sorted; for a repeated name its *values* are sorted and de-duplicated;
* a JSON body is not signed as parameters: the URL carries ``bodySHA256=<hex SHA-256 of the
  body>`` and the parameter list is empty;
* the signature may have been computed over the URL with or without the port (the SDK tries
  both: Twilio's "sig generation on back end is inconsistent");
* ``X-Twilio-Webhooks-Signature-Settings: key=…,algorithm=HMAC_SHA256`` (webhooks signed with a
  SharedKey) selects HMAC-SHA256; absent, it is HMAC-SHA1.

The URL is ``Inbound.url``: ``[server] public_url`` + path + query, exactly what was registered
with Twilio. Connection-override fragments (``#rc=…``) never reach the server; whether Twilio
signs the URL with them is UNVERIFIED (Twilio's docs do not say; the SDK signs what it is
given), so such URLs may not verify.

The body is never trusted to be what its content type says: without ``bodySHA256`` it must
parse as a form (strictly, so one body yields one parameter list), else the request is
refused; otherwise a signed form POST with no parameters would also vouch for any other body.

Nothing time-bound is signed, so ``body_dedup`` is set, with a key of what is signed (the URL
and the parameters, sorted and decoded as signed) in place of the body's hash: a replay with
its fields reordered, repeated or escaped otherwise still matches it, while the same fields
posted to another signed URL (an IVR's ``<Gather action="…?step=2">``) are another request.
Delivery id: the
``I-Twilio-Idempotency-Token`` header (the same on Twilio's retries; documented only on
secondary pages: UNVERIFIED). Event type: ``message.<MessageStatus>`` (or ``SmsStatus``) or
``call.<CallStatus>`` for form bodies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import ClassVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from hookyard.errors import VerificationError
from hookyard.verify._common import (
    Fields,
    Frozen,
    init,
    to_bytes,
    tried,
    unbase64,
    unhex,
    utf8_keys,
)
from hookyard.verify._forms import urlencoded
from hookyard.verify.base import ID_TYPE_OPTIONS, Inbound, SchemeDoc, Verified, VerifyOptions
from hookyard.verify.providers import _facts, _missing

_ALGORITHMS = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}
_DEFAULT_PORTS = {"https": "443", "http": "80"}


def _algorithm(settings: str | None) -> str | None:
    """The algorithm named by ``X-Twilio-Webhooks-Signature-Settings`` (default HMAC-SHA1);
    None if it names one we do not know (such a request cannot be verified)."""
    for part in (settings or "").split(","):
        name, eq, value = part.partition("=")
        if eq and name.strip() == "algorithm" and value.strip():
            return _ALGORITHMS.get(value.strip().upper())
    return "sha1"


def url_variants(url: str) -> tuple[str, ...]:
    """The URL without its port, and with it (the scheme's default when none is given), as
    Twilio's validator tries both."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return (url,)
    netloc = parts.netloc
    if not netloc:
        return (url,)
    if port is not None:
        host = netloc[: netloc.rindex(":")]
        return (urlunsplit(parts._replace(netloc=host)), url)
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    if default is None:
        return (url,)
    return (url, urlunsplit(parts._replace(netloc=f"{netloc}:{default}")))


def signed_params(pairs: list[tuple[str, str]]) -> str:
    """``name + value`` for every parameter: names sorted, each name's values sorted and
    de-duplicated (the SDK's ``sorted(set(values))``)."""
    values: dict[str, set[str]] = {}
    for name, value in pairs:
        values.setdefault(name, set()).add(value)
    return "".join(name + value for name in sorted(values) for value in sorted(values[name]))


def _event_type(pairs: list[tuple[str, str]]) -> str | None:
    fields = dict(pairs)
    status = fields.get("MessageStatus") or fields.get("SmsStatus")
    if status:
        return "message." + status
    status = fields.get("CallStatus")
    return "call." + status if status else None


class TwilioVerifier(Frozen):
    __slots__ = ("_fields", "_keys")

    scheme: str = "twilio"
    credential_headers: frozenset[str] = frozenset()
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Twilio",
        summary="X-Twilio-Signature: HMAC-SHA1 of the full URL + sorted form parameters",
        checks=(
            "`X-Twilio-Signature`: base64 HMAC-SHA1 of the full URL (`[server] public_url` + "
            "path + query; with or without the port) + the form parameters as `name+value`, "
            "names sorted. A JSON body is not signed as parameters: the URL's `bodySHA256` "
            "must be the body's hex SHA-256. `X-Twilio-Webhooks-Signature-Settings: "
            "algorithm=HMAC_SHA256` (webhooks signed with a shared key) selects HMAC-SHA256. "
            "No timestamp is signed."
        ),
        secrets="The account's Auth Token (for webhooks signed with a shared key: that key).",
        dedup="`I-Twilio-Idempotency-Token` (the same on retries), and the hash of what is signed",
        event_type="form bodies: `message.<MessageStatus>` (or `SmsStatus`) / `call.<CallStatus>`",
        body_dedup=(
            "yes (no signed timestamp): the hash of the signed URL and form parameters, in place "
            "of the body's"
        ),
        options=ID_TYPE_OPTIONS,
        public_url=True,
        notes="A body that is neither a form nor vouched for by `bodySHA256` is refused.",
        secret_example="env:TWILIO_AUTH_TOKEN",
    )

    _keys: dict[str, tuple[hmac.HMAC, ...]]  # by algorithm
    _fields: Fields

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        init(
            self,
            _keys={algo: utf8_keys(self.scheme, secrets, algo) for algo in ("sha1", "sha256")},
            _fields=Fields.from_options(options),
        )

    def verify(self, request: Inbound) -> Verified:
        headers = request.headers
        header = headers.get("x-twilio-signature")
        if not header:
            raise _missing("X-Twilio-Signature")
        algorithm = _algorithm(headers.get("x-twilio-webhooks-signature-settings"))
        if algorithm is None:
            raise VerificationError(
                "header X-Twilio-Webhooks-Signature-Settings names an algorithm other than "
                "HMAC_SHA1 or HMAC_SHA256",
                code="bad_signature",
            )
        keys = self._keys[algorithm]
        signature = unbase64(header, keys[0].digest_size)

        body_hash = _query_value(request.url, "bodySHA256")
        if body_hash is not None:
            expected = unhex(body_hash, 32)
            if expected is None or not hmac.compare_digest(
                hashlib.sha256(request.body).digest(), expected
            ):
                raise VerificationError(
                    "the body does not match the URL's bodySHA256 (hex SHA-256 of the body)",
                    code="bad_signature",
                )
            pairs: list[tuple[str, str]] = []
        else:
            parsed = urlencoded(request.body)
            if parsed is None:
                raise VerificationError(
                    "the body is not a form (application/x-www-form-urlencoded) and the URL has "
                    "no bodySHA256 parameter, so the signature cannot cover it",
                    code="bad_signature",
                )
            pairs = parsed
        params = to_bytes(signed_params(pairs))
        if signature is None or not self._matches(keys, request.url, params, signature):
            raise VerificationError(
                "signature did not match; expected header X-Twilio-Signature (<base64 HMAC-SHA1 "
                "of the full URL + sorted POST parameters as name+value>, key = the Auth Token; "
                "the URL must be exactly the one configured at Twilio: set [server] public_url); "
                f"{tried(len(keys))}",
                code="bad_signature",
            )
        return _facts(
            self._fields,
            request,
            event_type=_event_type(pairs),
            delivery_id=headers.get("i-twilio-idempotency-token") or None,
            body_dedup=True,
            # What is signed, not the raw body: fields reordered, repeated or spelled with
            # other escapes sign the same, so a replay so altered is still known; and the URL
            # is signed too, so the same fields sent to another URL are another request.
            content_key=_signed_key(request.url, params),
        )

    @staticmethod
    def _matches(keys: tuple[hmac.HMAC, ...], url: str, params: bytes, signature: bytes) -> bool:
        for candidate in url_variants(url):
            head = to_bytes(candidate)
            for base in keys:
                m = base.copy()
                m.update(head)
                m.update(params)
                if hmac.compare_digest(m.digest(), signature):
                    return True
        return False

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """``X-Twilio-Signature`` (HMAC-SHA1, first secret) over `url` + the body's form
        parameters, or over `url` alone when it carries ``bodySHA256`` (the caller's to add for
        JSON bodies); plus ``I-Twilio-Idempotency-Token``. `timestamp` is unused."""
        pairs = [] if _query_value(url, "bodySHA256") is not None else urlencoded(body) or []
        m = self._keys["sha1"][0].copy()
        m.update(to_bytes(url) + to_bytes(signed_params(pairs)))
        return {
            "X-Twilio-Signature": base64.b64encode(m.digest()).decode("ascii"),
            "I-Twilio-Idempotency-Token": message_id,
        }


def _signed_key(url: str, params: bytes) -> str:
    """The hash of the URL and the parameters as signed (a JSON body's hash is in the URL's
    bodySHA256). A newline, which no URL holds, keeps the two apart."""
    digest = hashlib.sha256(to_bytes(url) + b"\n" + params).hexdigest()
    return "url-params:" + digest


def _query_value(url: str, name: str) -> str | None:
    """The first value of query parameter `name`, as the SDK reads it (``parse_qs(…)[0]``).
    Lenient parsing is safe here: the whole URL is signed, so this only reads what Twilio
    wrote."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return None
    if name not in query:
        return None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == name:
            return value
    return None
