"""Amazon SNS: the message is signed with a key whose certificate AWS publishes at the
message's `SigningCertURL` (docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message).

Fetching that certificate is network I/O, which ingest never does; so ingest checks everything
it can without it (the JSON envelope, a known `Type`, the topic in the source's allow-list,
certificate and subscribe URLs on AWS's SNS hosts over HTTPS, the message-type header) and
stores the request as a pending hint. The worker then fetches the certificate (cached), checks
the signature (SignatureVersion 1: SHA1, 2: SHA256), confirms a subscription by visiting its
SubscribeURL, and only then stores the message as an event (hookyard/fetchback.py). A message
whose signature fails never becomes an event; it is listed in the rejected log.

The source's `secrets` are the topic ARNs it accepts (SNS signs with AWS's key, not a shared
secret). Raw message delivery must stay off on the subscription: it drops the signed envelope.

A captured message keeps its valid signature for ever, and its `MessageId` is remembered only
for [server] dedup_window; so the signed `Timestamp` must be within `tolerance` (default one
day: SNS gives up retrying an HTTP/S endpoint within an hour), and a tolerance longer than the
dedup window, or 0, is refused (gateway.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

from yarl import URL

from hookyard.errors import ConfigError, VerificationError
from hookyard.verify._common import (
    Frozen,
    check_timestamp,
    init,
    iso_seconds,
    json_object,
    require_secrets,
    tolerance_from,
)
from hookyard.verify.base import Inbound, SchemeDoc, Verified, VerifyOptions

SNS_HOST = re.compile(r"^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$")
TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
# The fields each type signs, in order, when present (AWS's documented string to sign).
SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED["UnsubscribeConfirmation"] = SIGNED["SubscriptionConfirmation"]
# Lambda-style spellings some relays use.
ALIASES = {"SigningCertUrl": "SigningCertURL", "SubscribeUrl": "SubscribeURL"}
DEFAULT_TOLERANCE = 86400  # seconds


def envelope(body: bytes) -> dict[str, Any] | None:
    """The SNS message with its keys normalised, or None if the body is not one."""
    doc = json_object(body)
    if doc is None:
        return None
    return {ALIASES.get(key, key): value for key, value in doc.items()}


def string_to_sign(message: dict[str, Any]) -> bytes:
    fields = SIGNED[message["Type"]]
    return "".join(
        f"{name}\n{message[name]}\n" for name in fields if message.get(name) is not None
    ).encode()


def aws_url(value: Any, *, pem: bool = False) -> bool:
    """An HTTPS URL on an SNS host (a .pem file for certificates): nothing else is fetched."""
    if not isinstance(value, str):
        return False
    try:
        url = URL(value)
    except ValueError:
        return False
    host_ok = url.scheme == "https" and SNS_HOST.match(url.host or "") is not None
    return host_ok and (not pem or url.path.endswith(".pem")) and url.port in (None, 443)


class SnsVerifier(Frozen):
    __slots__ = ("_tolerance", "_topics")

    scheme: str = "sns"
    credential_headers: frozenset[str] = frozenset()
    replay_by_dedup: ClassVar[bool] = True  # see the module docstring
    replay_risk: ClassVar[str] = (
        "a captured message replayed after its MessageId's dedup key expired would be stored "
        "and delivered again"
    )
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Amazon SNS",
        summary="SNS envelope at ingest; RSA signature checked by the worker (fetched cert)",
        checks=(
            "Ingest checks the envelope (a known `Type`, `x-amz-sns-message-type` agreeing, "
            "the `TopicArn` among the secrets, `SigningCertURL` and `SubscribeURL` on "
            "`https://sns.<region>.amazonaws.com`, the signed `Timestamp` within the "
            "tolerance, one day by default) and keeps a pending hint; the worker "
            "fetches the certificate (cached), checks the signature (SignatureVersion 1: "
            "SHA1, 2: SHA256), confirms a subscription by visiting its `SubscribeURL`, and "
            "only then stores the event. A forged message ends in the rejected log "
            "(`fetch_failed`)."
        ),
        secrets="The topic ARNs the source accepts (`arn:aws:sns:…`).",
        dedup="`MessageId`",
        event_type="`Type` (`Notification`, `SubscriptionConfirmation`, …)",
        body_dedup="no",
        options=("tolerance", "fetch_url", "fetch_rate", "confirm_subscriptions"),
        notes="Keep raw message delivery off on the subscription: it drops the signed envelope.",
        secret_example="arn:aws:sns:eu-west-1:123456789012:orders",
    )
    _tolerance: int
    _topics: frozenset[str]

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        topics = require_secrets(self.scheme, secrets)
        for topic in topics:
            if not topic.startswith("arn:"):
                raise ConfigError("secrets", "sns takes the topic ARNs it accepts (arn:aws:sns:…)")
        tolerance = DEFAULT_TOLERANCE if options.tolerance is None else tolerance_from(options)
        init(self, _tolerance=tolerance, _topics=frozenset(topics))

    def verify(self, request: Inbound) -> Verified:
        message = envelope(request.body)
        if message is None or message.get("Type") not in TYPES:
            raise VerificationError(
                f"expected an SNS message: a JSON object whose Type is one of {', '.join(TYPES)}",
                code="missing_signature",
            )
        kind = message["Type"]
        header = request.headers.get("x-amz-sns-message-type")
        if header is not None and header != kind:
            raise VerificationError(
                f"x-amz-sns-message-type is {header[:40]!r} but the message's Type is {kind}",
                code="bad_signature",
            )
        problems = []
        if not isinstance(message.get("MessageId"), str) or not message["MessageId"]:
            problems.append("MessageId")
        if not isinstance(message.get("Signature"), str):
            problems.append("Signature")
        if message.get("SignatureVersion") not in ("1", "2"):
            problems.append("SignatureVersion (1 or 2)")
        if not aws_url(message.get("SigningCertURL"), pem=True):
            problems.append("SigningCertURL (https://sns.<region>.amazonaws.com/….pem)")
        if kind != "Notification" and not aws_url(message.get("SubscribeURL")):
            problems.append("SubscribeURL (https://sns.<region>.amazonaws.com/…)")
        if not isinstance(message.get("Timestamp"), str):
            problems.append("Timestamp")
        if problems:
            raise VerificationError(
                f"SNS message without a valid {', '.join(problems)}", code="bad_signature"
            )
        topic = message.get("TopicArn")
        if not isinstance(topic, str) or topic not in self._topics:
            raise VerificationError(
                f"topic {str(message.get('TopicArn'))[:200]!r} is not one this source accepts "
                "(its secrets list the topic ARNs)",
                code="bad_signature",
            )
        # Signed, so a forged one fails there; checked here so that no stale one is fetched.
        check_timestamp(
            iso_seconds(message["Timestamp"]), request.received_at, self._tolerance, "Timestamp"
        )
        # The signature is checked by the worker, with the certificate it fetches.
        return Verified(hint=message["MessageId"])

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Nothing: only AWS holds the signing key."""
        return {}
