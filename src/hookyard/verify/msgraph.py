"""Microsoft Graph change notifications (and lifecycle notifications).

* Subscription validation: when a subscription is created (or renewed, or a lifecycle URL is
  set), Graph POSTs to ``notificationUrl?validationToken=<token>`` and expects, within 10 s,
  200 ``text/plain`` with the URL-decoded token. That is answered inline (a `Handshake`). It
  cannot be authenticated (Graph signs nothing), so nothing is stored, the token is echoed
  only as ``text/plain`` and only if it is plain printable text of bounded length.
* Notifications: ``{"value": [ {…, "clientState": …}, … ]}``. Basic notifications are not
  signed; the only proof is ``clientState``, the secret given when subscribing. Every
  notification in ``value`` must carry a ``clientState`` equal (constant time, as SHA-256
  digests) to one of the configured secrets (several: rotation, or several subscriptions).

Consequences, stated plainly: the body is not signed (TLS is its integrity), and the
clientState secret is inside the body, so it is stored and delivered with the event. Rich
notifications' ``validationTokens`` (JWTs signed by Microsoft) are not checked here: that needs
Microsoft's signing keys fetched at run time. Graph sends no event id and no time, so two real
changes of one resource arrive as identical bodies: like a token source (a static secret, here
in the body), the body's hash is no dedup key unless the source sets ``dedup_body = true``.
Type: the ``changeType`` (or ``lifecycleEvent``) every notification shares.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import ClassVar
from urllib.parse import parse_qsl, urlsplit

from hookyard.errors import VerificationError
from hookyard.verify._common import (
    Fields,
    Frozen,
    init,
    json_object,
    require_secrets,
    sha256,
    shared_field,
    to_bytes,
    tried,
)
from hookyard.verify.base import (
    ID_TYPE_OPTIONS,
    Handshake,
    Inbound,
    SchemeDoc,
    Verified,
    VerifyOptions,
)
from hookyard.verify.providers import _facts

_MAX_TOKEN = 4096  # characters; Graph's tokens are far shorter


def _validation_token(url: str) -> str | None:
    """The ``validationToken`` query parameter, URL-decoded; None when there is none."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return None
    if "validationToken" not in query:
        return None
    tokens = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "validationToken"]
    if not tokens:
        return None
    if len(tokens) != 1 or not tokens[0] or len(tokens[0]) > _MAX_TOKEN:
        return ""
    return tokens[0] if tokens[0].isprintable() else ""


class MicrosoftGraphVerifier(Frozen):
    __slots__ = ("_digests", "_fields")

    scheme: str = "msgraph"
    credential_headers: frozenset[str] = frozenset()
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Microsoft Graph",
        summary="every notification's clientState equals a secret",
        checks=(
            "Every notification in `value` carries a `clientState` equal to one of the secrets "
            "(it stays in the stored payload). Nothing is signed: TLS is the body's integrity. "
            "Rich notifications' `validationTokens` are not checked."
        ),
        secrets="The `clientState` values given when subscribing.",
        dedup="`id_header`, if set (Graph sends no event id)",
        event_type="the `lifecycleEvent` or `changeType` every notification shares",
        body_dedup=(
            "no: two changes of one resource send identical bodies (`dedup_body = true` "
            "turns it on)"
        ),
        options=ID_TYPE_OPTIONS,
        handshake="`?validationToken=…`: the token (`text/plain`)",
        notes=(
            "Graph signs nothing, so the validation request is answered but never stored; the "
            "token is echoed only if it is printable text of bounded length."
        ),
        secret_example="env:GRAPH_CLIENT_STATE",
    )

    _digests: tuple[bytes, ...]
    _fields: Fields

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        items = require_secrets(self.scheme, secrets)
        init(
            self,
            _digests=tuple(sha256(s.encode("utf-8")) for s in items),
            _fields=Fields.from_options(options),
        )

    def verify(self, request: Inbound) -> Verified:
        token = _validation_token(request.url)
        if token is not None:
            if not token:
                raise VerificationError(
                    "query parameter validationToken must be given once, as printable text of "
                    f"at most {_MAX_TOKEN} characters",
                    code="bad_signature",
                )
            return Verified(handshake=Handshake(200, "text/plain", token.encode("utf-8")))

        doc = json_object(request.body)
        items = doc.get("value") if doc is not None else None
        if not isinstance(items, list) or not items:
            raise VerificationError(
                'missing clientState: expected a JSON body {"value": [notifications]}, each '
                "with the subscription's clientState (or a validationToken query parameter)",
                code="missing_signature",
            )
        for n, item in enumerate(items, 1):
            state = item.get("clientState") if isinstance(item, dict) else None
            if not isinstance(state, str) or not self._known(state):
                raise VerificationError(
                    f"credentials did not match; notification #{n} of {len(items)} has "
                    f"{'a wrong' if isinstance(state, str) else 'no'} clientState (it must "
                    f"equal the clientState set when subscribing); {tried(len(self._digests))}",
                    code="bad_credentials",
                )
        kind = shared_field(items, "lifecycleEvent") or shared_field(items, "changeType")
        # No body dedup: identical bodies are the norm for repeated changes of one resource.
        return _facts(self._fields, request, event_type=kind)

    def _known(self, state: str) -> bool:
        digest = sha256(to_bytes(state))
        found = False
        for expected in self._digests:  # no early exit: time does not tell which one matched
            found |= hmac.compare_digest(digest, expected)
        return found

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Nothing: the clientState is part of the body, which is the caller's."""
        return {}
