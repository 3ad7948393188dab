"""Provider-specific HMAC schemes: Paddle, Square, Zoom, Linear, Intercom, Typeform, Calendly,
Twitch EventSub, Jira and GitLab (facts: /work/shared/research/providers.md).

All verify the exact raw body bytes, compare decoded signatures in constant time, accept any of
several secrets (rotation), and check a replay window only where the provider signs a timestamp.
Where nothing time-bound is signed, ``body_dedup`` is set. Handshakes are answered only after the
signature has verified, so an endpoint cannot be claimed or used as an oracle.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import ClassVar

import orjson

from hookyard.errors import VerificationError
from hookyard.verify._common import (
    Fields,
    Frozen,
    any_match,
    check_timestamp,
    header_bytes,
    init,
    json_object,
    json_path,
    mac,
    require_secrets,
    sha256,
    to_bytes,
    tolerance_from,
    tried,
    unbase64,
    unhex,
    utf8_keys,
    whole,
)
from hookyard.verify.base import (
    ID_TYPE_OPTIONS,
    TIMED_OPTIONS,
    Handshake,
    Inbound,
    SchemeDoc,
    Verified,
    VerifyOptions,
)
from hookyard.verify.simple import _any_digest
from hookyard.verify.standard import SECRET_PREFIX, StandardWebhooksVerifier


def _tolerance(options: VerifyOptions, default: int) -> int:
    """The provider's default window unless the source sets one (0 = off)."""
    return default if options.tolerance is None else tolerance_from(options)


def _missing(what: str) -> VerificationError:
    return VerificationError(f"missing header {what}", code="missing_signature")


def _mismatch(expected: str, n: int) -> VerificationError:
    return VerificationError(
        f"signature did not match; expected {expected}; {tried(n)}", code="bad_signature"
    )


def _facts(
    fields: Fields,
    request: Inbound,
    *,
    event_id: str | None = None,
    event_type: str | None = None,
    delivery_id: str | None = None,
    body_dedup: bool = False,
    handshake: Handshake | None = None,
    replay_key: str | None = None,
    content_key: str | None = None,
) -> Verified:
    """The provider's facts, with the source's id/type overrides applied."""
    headers = request.headers
    if fields.id_header:
        event_id = fields.event_id(headers)
    if fields.overrides_type:
        event_type = fields.event_type(headers, request.body)
    return Verified(
        event_id=event_id,
        event_type=event_type,
        delivery_id=delivery_id,
        body_dedup=body_dedup,
        handshake=handshake,
        replay_key=replay_key,
        content_key=content_key,
    )


def _any_of(keys: tuple[hmac.HMAC, ...], head: bytes, body: bytes, sigs: list[bytes]) -> bool:
    """Whether any key's HMAC equals any of the signatures (each comparison constant-time)."""
    if not sigs:
        return False
    for base in keys:
        expected = mac(base, head, body)
        for signature in sigs:
            if hmac.compare_digest(expected, signature):
                return True
    return False


class _Base(Frozen):
    __slots__ = ("_fields", "_keys", "_tolerance")

    scheme: str = ""
    credential_headers: frozenset[str] = frozenset()
    _algorithm = "sha256"
    _default_tolerance = 0

    _keys: tuple[hmac.HMAC, ...]
    _tolerance: int
    _fields: Fields

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        init(
            self,
            _keys=utf8_keys(self.scheme, secrets, self._algorithm),
            _tolerance=_tolerance(options, self._default_tolerance),
            _fields=Fields.from_options(options),
        )

    def _sig(self, head: bytes, body: bytes) -> bytes:
        return mac(self._keys[0], head, body)

    def _check_body_signature(
        self, request: Inbound, header: str, prefix: str, encoding: str, described: str
    ) -> None:
        """One `prefix` + hex or base64 signature of the body alone, in `header`."""
        value = request.headers.get(header.lower())
        if not value:
            raise _missing(header)
        size = self._keys[0].digest_size
        raw = None
        if value.startswith(prefix):
            encoded = value[len(prefix) :]
            raw = unhex(encoded, size) if encoding == "hex" else unbase64(encoded, size)
        if raw is None or not any_match(self._keys, b"", request.body, raw):
            raise _mismatch(f"header {header} ({described})", len(self._keys))


# --- timestamped schemes -------------------------------------------------------------------


class PaddleVerifier(_Base):
    """``Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>…]`` over ``{ts}:{body}``; the
    ``pdl_ntfset_…`` secret is used as its UTF-8 bytes. Event id / type: body ``event_id`` /
    ``event_type``; delivery id: body ``notification_id``.

    Paddle's SDK allows only 5 s of variance; that rejects legitimate deliveries that wait in a
    load balancer, queue or retry, so the default here is the 300 s most providers use.
    """

    __slots__ = ()
    scheme = "paddle"
    _default_tolerance = 300  # not the SDK's 5 s: see the class docstring
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Paddle Billing",
        summary="Paddle-Signature ts=…;h1=…: HMAC-SHA256 of ts:body, ±5 min",
        checks=(
            "`Paddle-Signature: ts=<unix>;h1=<hex>[;h1=…]`: HMAC-SHA256 over `{ts}:{body}`, "
            "any `h1` may match; `ts` within ±5 minutes (not the SDK's 5 s, which refuses "
            "deliveries that waited in a queue or a retry)."
        ),
        secrets="The notification destination's secret key (`pdl_ntfset_…`), used as text.",
        dedup="JSON `event_id`, else `notification_id`",
        event_type="JSON `event_type`",
        body_dedup="no",
        options=TIMED_OPTIONS,
        secret_example="env:PADDLE_WEBHOOK_SECRET",
    )

    def verify(self, request: Inbound) -> Verified:
        header = request.headers.get("paddle-signature")
        if not header:
            raise _missing("Paddle-Signature")
        timestamp: str | None = None
        signatures = []
        for item in header.split(";"):
            key, _, value = item.partition("=")
            if key == "h1":
                raw = unhex(value, 32)
                if raw is not None:
                    signatures.append(raw)
            elif key == "ts" and timestamp is None:
                timestamp = value
        if timestamp is None:
            raise VerificationError(
                "header Paddle-Signature has no ts=<unix timestamp>", code="bad_signature"
            )
        if not _any_of(self._keys, header_bytes(timestamp) + b":", request.body, signatures):
            raise _mismatch(
                "header Paddle-Signature 'ts=<unix>;h1=<hex HMAC-SHA256 of \"{ts}:{body}\">', "
                "key = the notification secret as text",
                len(self._keys),
            )
        check_timestamp(timestamp, request.received_at, self._tolerance, "Paddle-Signature ts=")
        doc = json_object(request.body)
        return _facts(
            self._fields,
            request,
            event_id=json_path(doc, ("event_id",)),
            event_type=json_path(doc, ("event_type",)),
            delivery_id=json_path(doc, ("notification_id",)),
        )

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Only ``Paddle-Signature`` (ids are in the body); `url`, `message_id` unused."""
        ts = str(timestamp)
        return {"Paddle-Signature": f"ts={ts};h1={self._sig(ts.encode() + b':', body).hex()}"}


class ZoomVerifier(_Base):
    """``x-zm-signature: v0=<hex HMAC-SHA256 of "v0:{x-zm-request-timestamp}:{body}">``.

    ``endpoint.url_validation`` is answered with ``{"plainToken", "encryptedToken"}`` where
    encryptedToken = hex HMAC-SHA256(secret, plainToken). Type: body ``event``. Zoom documents
    no event id we could rely on, so none is set (the source may configure one); the body hash
    is the dedup key (the body carries ``event_ts``).
    """

    __slots__ = ()
    scheme = "zoom"
    _default_tolerance = 300
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Zoom",
        summary="x-zm-signature v0=: HMAC-SHA256 of v0:ts:body, ±5 min",
        checks=(
            "`x-zm-signature: v0=<hex HMAC-SHA256>` over "
            "`v0:{x-zm-request-timestamp}:{body}`; the timestamp within ±5 minutes."
        ),
        secrets="The app's secret token.",
        dedup="the body hash (Zoom documents no event id; the body carries `event_ts`)",
        event_type="JSON `event`",
        body_dedup="yes (no event id)",
        options=TIMED_OPTIONS,
        handshake="`endpoint.url_validation`: `plainToken` and `encryptedToken`",
        notes=(
            "`encryptedToken` is the hex HMAC-SHA256 of `plainToken`, keyed by the secret that "
            "verified the request (during a rotation, Zoom's current one)."
        ),
        secret_example="env:ZOOM_SECRET_TOKEN",
    )

    def verify(self, request: Inbound) -> Verified:
        headers = request.headers
        header = headers.get("x-zm-signature")
        timestamp = headers.get("x-zm-request-timestamp")
        if not header or not timestamp:
            raise _missing("x-zm-signature and x-zm-request-timestamp")
        raw = unhex(header[3:], 32) if header.startswith("v0=") else None
        head = b"".join((b"v0:", header_bytes(timestamp), b":"))
        key = None
        if raw is not None:
            # the key that verified also answers the handshake (rotation: Zoom's current one)
            key = next(
                (k for k in self._keys if hmac.compare_digest(mac(k, head, request.body), raw)),
                None,
            )
        if key is None:
            raise _mismatch(
                'header x-zm-signature (v0=<hex HMAC-SHA256 of "v0:{x-zm-request-timestamp}:'
                "{body}\">, key = the app's secret token)",
                len(self._keys),
            )
        check_timestamp(timestamp, request.received_at, self._tolerance, "x-zm-request-timestamp")
        doc = json_object(request.body)
        event = json_path(doc, ("event",))
        handshake = None
        if event == "endpoint.url_validation":
            plain = json_path(doc, ("payload", "plainToken"))
            if plain is not None:
                token = mac(key, b"", to_bytes(plain)).hex()
                answer = orjson.dumps({"plainToken": plain, "encryptedToken": token})
                handshake = Handshake(200, "application/json", answer)
        # No event id: the body (its event_ts) tells a retry or a replay of the same event.
        return _facts(
            self._fields,
            request,
            event_type=event,
            handshake=handshake,
            body_dedup=handshake is None,
        )

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Timestamp and signature; `url`, `message_id` unused."""
        ts = str(timestamp)
        signature = self._sig(b"".join((b"v0:", ts.encode(), b":")), body).hex()
        return {"x-zm-request-timestamp": ts, "x-zm-signature": "v0=" + signature}


class CalendlyVerifier(_Base):
    """``Calendly-Webhook-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">``; window
    180 s (Calendly's sample). Type: body ``event``; no documented event id."""

    __slots__ = ()
    scheme = "calendly"
    _default_tolerance = 180
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Calendly",
        summary="Calendly-Webhook-Signature t=…,v1=…: HMAC-SHA256 of t.body, ±3 min",
        checks=(
            "`Calendly-Webhook-Signature: t=<unix>,v1=<hex>`: HMAC-SHA256 over `{t}.{body}`; "
            "`t` within ±3 minutes (Calendly's sample)."
        ),
        secrets="The webhook signing key.",
        dedup="the body hash (Calendly documents no event id; the body carries `created_at`)",
        event_type="JSON `event`",
        body_dedup="yes (no event id)",
        options=TIMED_OPTIONS,
        secret_example="env:CALENDLY_SIGNING_KEY",
    )

    def verify(self, request: Inbound) -> Verified:
        header = request.headers.get("calendly-webhook-signature")
        if not header:
            raise _missing("Calendly-Webhook-Signature")
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
                "header Calendly-Webhook-Signature has no t=<unix timestamp>",
                code="bad_signature",
            )
        if not _any_of(self._keys, header_bytes(timestamp) + b".", request.body, signatures):
            raise _mismatch(
                "header Calendly-Webhook-Signature 't=<unix>,v1=<hex HMAC-SHA256 of "
                '"{t}.{body}">\', key = the webhook signing key',
                len(self._keys),
            )
        check_timestamp(
            timestamp, request.received_at, self._tolerance, "Calendly-Webhook-Signature t="
        )
        doc = json_object(request.body)
        # No event id: the body (its created_at) tells a retry or a replay of the same event.
        return _facts(self._fields, request, event_type=json_path(doc, ("event",)), body_dedup=True)

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Only the signature header; `url`, `message_id` unused."""
        ts = str(timestamp)
        signature = self._sig(ts.encode() + b".", body).hex()
        return {"Calendly-Webhook-Signature": f"t={ts},v1={signature}"}


def _rfc3339(value: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 time with a zone; nanoseconds trimmed to
    microseconds (``datetime`` holds no more). None if it is not one."""
    if not value.isascii() or len(value) > 40 or "T" not in value.upper():
        return None
    text = value.upper()
    date, _, rest = text.partition("T")
    main, dot, frac = rest.partition(".")
    if dot:
        digits = len(frac) - len(frac.lstrip("0123456789"))
        if not digits:
            return None
        text = f"{date}T{main}.{frac[: min(digits, 6)]}{frac[digits:]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


class TwitchVerifier(_Base):
    """Twitch EventSub: ``Twitch-Eventsub-Message-Signature: sha256=<hex HMAC-SHA256 of
    message id + timestamp + body>`` (timestamp: the RFC 3339 string exactly as sent).

    Messages more than 10 minutes off are rejected. ``webhook_callback_verification`` is
    answered with the body's ``challenge`` as text/plain. Event id: the message id (the same on
    retries); type: ``Twitch-Eventsub-Subscription-Type``.
    """

    __slots__ = ()
    scheme = "twitch"
    _default_tolerance = 600
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Twitch EventSub",
        summary="Twitch-Eventsub-Message-Signature: HMAC-SHA256 of id + timestamp + body, ±10 min",
        checks=(
            "`Twitch-Eventsub-Message-Signature: sha256=<hex HMAC-SHA256>` over message id + "
            "timestamp + body (`Twitch-Eventsub-Message-Id`, and "
            "`Twitch-Eventsub-Message-Timestamp` exactly as sent); the timestamp (RFC 3339) "
            "within ±10 minutes."
        ),
        secrets="The subscription's secret.",
        dedup="`Twitch-Eventsub-Message-Id` (the same on retries)",
        event_type="`Twitch-Eventsub-Subscription-Type`",
        body_dedup="no",
        options=TIMED_OPTIONS,
        handshake="`webhook_callback_verification`: the `challenge` (`text/plain`)",
        secret_example="env:TWITCH_EVENTSUB_SECRET",
    )

    def verify(self, request: Inbound) -> Verified:
        headers = request.headers
        msg_id = headers.get("twitch-eventsub-message-id")
        timestamp = headers.get("twitch-eventsub-message-timestamp")
        header = headers.get("twitch-eventsub-message-signature")
        if not msg_id or not timestamp or not header:
            raise _missing("Twitch-Eventsub-Message-Id, -Timestamp and -Signature are all required")
        raw = unhex(header[7:], 32) if header.startswith("sha256=") else None
        head = header_bytes(msg_id) + header_bytes(timestamp)
        if raw is None or not any_match(self._keys, head, request.body, raw):
            raise _mismatch(
                "header Twitch-Eventsub-Message-Signature (sha256=<hex HMAC-SHA256 of "
                "message id + timestamp + body>, key = the subscription secret)",
                len(self._keys),
            )
        if self._tolerance:
            moment = _rfc3339(timestamp)
            if moment is None:
                raise VerificationError(
                    "header Twitch-Eventsub-Message-Timestamp is not an RFC 3339 time",
                    code="bad_signature",
                )
            skew = request.received_at - moment
            if abs(skew) > self._tolerance:
                when = "old" if skew > 0 else "in the future"
                raise VerificationError(
                    f"Twitch-Eventsub-Message-Timestamp is {whole(abs(skew))} s {when}; "
                    f"allowed ±{self._tolerance} s",
                    code="stale_timestamp",
                )
        doc = json_object(request.body)
        handshake = None
        if headers.get("twitch-eventsub-message-type") == "webhook_callback_verification":
            challenge = doc.get("challenge") if doc is not None else None
            if isinstance(challenge, str):
                handshake = Handshake(200, "text/plain", challenge.encode("utf-8"))
        return _facts(
            self._fields,
            request,
            event_id=msg_id,
            event_type=headers.get("twitch-eventsub-subscription-type") or None,
            handshake=handshake,
        )

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Id, RFC 3339 timestamp, signature and message type ``notification`` (the
        subscription type is the caller's); `url` unused."""
        ts = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        signature = self._sig(to_bytes(message_id) + ts.encode(), body).hex()
        return {
            "Twitch-Eventsub-Message-Id": message_id,
            "Twitch-Eventsub-Message-Timestamp": ts,
            "Twitch-Eventsub-Message-Signature": "sha256=" + signature,
            "Twitch-Eventsub-Message-Type": "notification",
        }


class LinearVerifier(_Base):
    """``Linear-Signature: <hex HMAC-SHA256 of the body>``; the body's ``webhookTimestamp``
    (ms, inside the signed body) must be within 60 s, as Linear's SDK checks. A body without
    one (Linear's SDK then skips the check) is deduplicated by body hash too.

    Delivery id ``Linear-Delivery``; type ``Linear-Event`` plus ``.<action>`` when present.
    """

    __slots__ = ()
    scheme = "linear"
    _default_tolerance = 60
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Linear",
        summary="Linear-Signature: HMAC-SHA256 of the body; webhookTimestamp within 60 s",
        checks=(
            "`Linear-Signature`: hex HMAC-SHA256 of the body; the body's `webhookTimestamp` "
            "(milliseconds, inside the signed body) within ±60 s, as Linear's SDK checks."
        ),
        secrets="The webhook's signing secret.",
        dedup="`Linear-Delivery`; and the body hash (the delivery header is not signed)",
        event_type="`Linear-Event`, plus `.<action>` when the body has one",
        body_dedup="yes (the delivery id is not signed)",
        options=TIMED_OPTIONS,
        secret_example="env:LINEAR_WEBHOOK_SECRET",
    )

    def verify(self, request: Inbound) -> Verified:
        headers = request.headers
        header = headers.get("linear-signature")
        if not header:
            raise _missing("Linear-Signature")
        raw = unhex(header, 32)
        if raw is None or not any_match(self._keys, b"", request.body, raw):
            raise _mismatch(
                "header Linear-Signature (<hex HMAC-SHA256 of the body>, key = the webhook "
                "signing secret)",
                len(self._keys),
            )
        doc = json_object(request.body)
        stamp = doc.get("webhookTimestamp") if doc is not None else None
        if stamp is not None and self._tolerance:
            if isinstance(stamp, bool) or not isinstance(stamp, int | float) or abs(stamp) > 1e15:
                raise VerificationError(
                    "body webhookTimestamp is not a number of milliseconds", code="bad_signature"
                )
            skew = request.received_at - stamp / 1000
            if abs(skew) > self._tolerance:
                when = "old" if skew > 0 else "in the future"
                raise VerificationError(
                    f"body webhookTimestamp is {whole(abs(skew))} s {when}; "
                    f"allowed ±{self._tolerance} s",
                    code="stale_timestamp",
                )
        event_type = headers.get("linear-event") or None
        action = doc.get("action") if doc is not None else None
        if event_type is not None and isinstance(action, str) and action:
            event_type = f"{event_type}.{action}"
        return _facts(
            self._fields,
            request,
            event_type=event_type,
            delivery_id=headers.get("linear-delivery") or None,
            # Linear-Delivery is not signed: a replay inside the window with another one is
            # still the same body (webhookTimestamp included).
            body_dedup=True,
        )

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Signature and ``Linear-Delivery`` (the timestamp lives in the body, which is the
        caller's; so is ``Linear-Event``); `url`, `timestamp` unused."""
        return {"Linear-Signature": self._sig(b"", body).hex(), "Linear-Delivery": message_id}


# --- body-only schemes (no signed time: body_dedup) ----------------------------------------


class SquareVerifier(_Base):
    """``x-square-hmacsha256-signature: <base64 HMAC-SHA256 of notification URL + body>``.

    The URL is the public URL the subscription was registered with (``Inbound.url``, from
    ``[server] public_url``); any difference, even a trailing slash, fails. Event id and type:
    body ``event_id`` and ``type``.
    """

    __slots__ = ()
    scheme = "square"
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Square",
        summary="x-square-hmacsha256-signature: HMAC-SHA256 of notification URL + body",
        checks=(
            "`x-square-hmacsha256-signature`: base64 HMAC-SHA256 over the notification URL + "
            "body. The URL is `[server] public_url` + path + query and must be exactly the one "
            "registered with Square (a trailing slash differs). No timestamp is signed."
        ),
        secrets="The subscription's signature key.",
        dedup="JSON `event_id`, and the body hash",
        event_type="JSON `type`",
        body_dedup="yes (no signed timestamp)",
        options=ID_TYPE_OPTIONS,
        public_url=True,
        secret_example="env:SQUARE_SIGNATURE_KEY",
    )

    def verify(self, request: Inbound) -> Verified:
        header = request.headers.get("x-square-hmacsha256-signature")
        if not header:
            raise _missing("x-square-hmacsha256-signature")
        raw = unbase64(header, 32)
        if raw is None or not any_match(self._keys, to_bytes(request.url), request.body, raw):
            raise _mismatch(
                "header x-square-hmacsha256-signature (<base64 HMAC-SHA256 of notification URL "
                "+ body>, key = the subscription signature key; the URL must be exactly the "
                "registered one)",
                len(self._keys),
            )
        doc = json_object(request.body)
        return _facts(
            self._fields,
            request,
            event_id=json_path(doc, ("event_id",)),
            event_type=json_path(doc, ("type",)),
            body_dedup=True,
        )

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Only the signature (over `url` + body); `timestamp`, `message_id` unused."""
        signature = base64.b64encode(self._sig(to_bytes(url), body)).decode("ascii")
        return {"x-square-hmacsha256-signature": signature}


class IntercomVerifier(_Base):
    """``X-Hub-Signature: sha1=<hex HMAC-SHA1 of the body>``; event id body ``id``
    (``notif_…``), type body ``topic``."""

    __slots__ = ()
    scheme = "intercom"
    _algorithm = "sha1"
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Intercom",
        summary="X-Hub-Signature sha1=: HMAC-SHA1 of the body",
        checks=("`X-Hub-Signature: sha1=<hex HMAC-SHA1 of the body>`. No timestamp is signed."),
        secrets="The app's client secret.",
        dedup="JSON `id` (`notif_…`), and the body hash",
        event_type="JSON `topic`",
        body_dedup="yes (no signed timestamp)",
        options=ID_TYPE_OPTIONS,
        secret_example="env:INTERCOM_CLIENT_SECRET",
    )

    def verify(self, request: Inbound) -> Verified:
        self._check_body_signature(
            request,
            "X-Hub-Signature",
            "sha1=",
            "hex",
            "sha1=<hex HMAC-SHA1 of the body>, key = the app's client secret",
        )
        doc = json_object(request.body)
        return _facts(
            self._fields,
            request,
            event_id=json_path(doc, ("id",)),
            event_type=json_path(doc, ("topic",)),
            body_dedup=True,
        )

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Only the signature; `url`, `timestamp`, `message_id` unused."""
        return {"X-Hub-Signature": "sha1=" + self._sig(b"", body).hex()}


class TypeformVerifier(_Base):
    """``Typeform-Signature: sha256=<base64 HMAC-SHA256 of the body>``; event id / type: body
    ``event_id`` / ``event_type``."""

    __slots__ = ()
    scheme = "typeform"
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Typeform",
        summary="Typeform-Signature sha256=: base64 HMAC-SHA256 of the body",
        checks=(
            "`Typeform-Signature: sha256=<base64 HMAC-SHA256 of the body>`. No timestamp is signed."
        ),
        secrets="The webhook's secret.",
        dedup="JSON `event_id`, and the body hash",
        event_type="JSON `event_type`",
        body_dedup="yes (no signed timestamp)",
        options=ID_TYPE_OPTIONS,
        secret_example="env:TYPEFORM_SECRET",
    )

    def verify(self, request: Inbound) -> Verified:
        self._check_body_signature(
            request,
            "Typeform-Signature",
            "sha256=",
            "base64",
            "sha256=<base64 HMAC-SHA256 of the body>, key = the webhook secret",
        )
        doc = json_object(request.body)
        return _facts(
            self._fields,
            request,
            event_id=json_path(doc, ("event_id",)),
            event_type=json_path(doc, ("event_type",)),
            body_dedup=True,
        )

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Only the signature; `url`, `timestamp`, `message_id` unused."""
        signature = base64.b64encode(self._sig(b"", body)).decode("ascii")
        return {"Typeform-Signature": "sha256=" + signature}


class JiraVerifier(_Base):
    """Jira Cloud admin/REST webhooks with a secret: ``X-Hub-Signature: sha256=<hex
    HMAC-SHA256 of the body>``. Delivery id ``X-Atlassian-Webhook-Identifier`` (unchanged across
    retries); type body ``webhookEvent``. (Connect apps' ``Authorization: JWT`` is not this.)"""

    __slots__ = ()
    scheme = "jira"
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Jira Cloud",
        summary="X-Hub-Signature sha256=: HMAC-SHA256 of the body",
        checks=(
            "`X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>` (admin and REST webhooks "
            "with a secret; Connect apps' `Authorization: JWT` is not this). No timestamp is "
            "signed."
        ),
        secrets="The webhook's secret.",
        dedup="`X-Atlassian-Webhook-Identifier` (the same on retries), and the body hash",
        event_type="JSON `webhookEvent`",
        body_dedup="yes (no signed timestamp)",
        options=ID_TYPE_OPTIONS,
        secret_example="env:JIRA_WEBHOOK_SECRET",
    )

    def verify(self, request: Inbound) -> Verified:
        headers = request.headers
        self._check_body_signature(
            request,
            "X-Hub-Signature",
            "sha256=",
            "hex",
            "sha256=<hex HMAC-SHA256 of the body>, key = the webhook secret",
        )
        doc = json_object(request.body)
        return _facts(
            self._fields,
            request,
            event_type=json_path(doc, ("webhookEvent",)),
            delivery_id=headers.get("x-atlassian-webhook-identifier") or None,
            body_dedup=True,
        )

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Signature and ``X-Atlassian-Webhook-Identifier``; `url`, `timestamp` unused."""
        return {
            "X-Hub-Signature": "sha256=" + self._sig(b"", body).hex(),
            "X-Atlassian-Webhook-Identifier": message_id,
        }


# --- GitLab --------------------------------------------------------------------------------


def _gitlab_ids(headers: Mapping[str, str]) -> str | None:
    return headers.get("idempotency-key") or headers.get("x-gitlab-event-uuid") or None


class GitLabVerifier(Frozen):
    """GitLab: ``X-Gitlab-Token`` equal to one of the secrets (a credential: redacted, never
    forwarded), or, when ``webhook-signature`` is present and a ``whsec_`` signing token is
    configured, Standard Webhooks verification (GitLab's newer signing tokens).

    Secrets starting with ``whsec_`` serve as signing tokens; every secret is also accepted as
    a plain token. Event id ``Idempotency-Key`` (same on retries) or ``X-Gitlab-Event-UUID``;
    type ``X-Gitlab-Event``.
    """

    __slots__ = ("_digests", "_fields", "_first", "_signed")

    scheme: str = "gitlab"
    credential_headers: frozenset[str] = frozenset({"x-gitlab-token"})
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="GitLab",
        summary="X-Gitlab-Token, or Standard Webhooks signing with a whsec_ token",
        checks=(
            "`X-Gitlab-Token` equal to one of the secrets (redacted, never forwarded); or, when "
            "`webhook-signature` is present and a `whsec_` signing token is configured, "
            "Standard Webhooks signing (HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}."
            "{body}`, timestamp within ±5 minutes)."
        ),
        secrets=(
            "The hook's secret token; entries starting with `whsec_` are also signing tokens."
        ),
        dedup=(
            "`Idempotency-Key` (the same on retries), else `X-Gitlab-Event-UUID`; on signed "
            "requests the signed `webhook-id`"
        ),
        event_type="`X-Gitlab-Event`",
        body_dedup="no",
        options=TIMED_OPTIONS,
        notes="`tolerance` applies to signed requests; a plain token carries no timestamp.",
        secret_example="env:GITLAB_TOKEN",
    )

    _digests: tuple[bytes, ...]
    _first: str
    _signed: StandardWebhooksVerifier | None
    _fields: Fields

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        items = require_secrets(self.scheme, secrets)
        signing = [s for s in items if s.strip().startswith(SECRET_PREFIX)]
        init(
            self,
            _digests=tuple(sha256(s.encode("utf-8")) for s in items),
            _first=items[0],
            _signed=StandardWebhooksVerifier(signing, options) if signing else None,
            _fields=Fields.from_options(options),
        )

    def verify(self, request: Inbound) -> Verified:
        headers = request.headers
        event_id = _gitlab_ids(headers)
        if self._signed is not None and "webhook-signature" in headers:
            # Raises VerificationError on any mismatch. The id is the signed webhook-id, not
            # Idempotency-Key, which a replay could change.
            event_id = self._signed.verify(request).event_id
            body_dedup = False
        else:
            token = headers.get("x-gitlab-token")
            if not token:
                raise _missing("X-Gitlab-Token (or webhook-id/-timestamp/-signature)")
            if not _any_digest(self._digests, header_bytes(token)):
                raise VerificationError(
                    "credentials did not match; expected header X-Gitlab-Token (the hook's "
                    f"secret token); {tried(len(self._digests))}",
                    code="bad_credentials",
                )
            body_dedup = False  # GitLab sends Idempotency-Key, the same on retries
        return _facts(
            self._fields,
            request,
            event_id=event_id,
            event_type=headers.get("x-gitlab-event") or None,
            body_dedup=body_dedup,
        )

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Standard Webhooks headers when the first secret is a ``whsec_`` signing token, else
        ``X-Gitlab-Token``; plus ``Idempotency-Key``. ``X-Gitlab-Event`` is the caller's."""
        if self._signed is not None and self._first.strip().startswith(SECRET_PREFIX):
            headers = self._signed.sign(body, url=url, timestamp=timestamp, message_id=message_id)
        else:
            headers = {"X-Gitlab-Token": self._first}
        headers["Idempotency-Key"] = message_id
        return headers
