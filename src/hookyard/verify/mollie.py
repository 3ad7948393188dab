"""Mollie: no signature at all. Mollie POSTs `id=tr_...` (form-encoded) and says to fetch the
payment to learn its status, so "fake calls to your webhook will never result in orders being
processed without being actually paid" (docs.mollie.com/overview/webhooks).

So the request is only a hint: its id must look like a Mollie id, and nothing else in it is
believed. Ingest stores it as pending and answers 200 (also for ids Mollie does not know: no
oracle); the worker fetches the resource with the API key (the source's secret) and the fetched
object becomes the event (see hookyard/fetchback.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

from hookyard.errors import VerificationError
from hookyard.verify._common import Frozen, init, require_secrets
from hookyard.verify._forms import urlencoded
from hookyard.verify.base import Inbound, SchemeDoc, Verified, VerifyOptions

# Payments (tr_) and orders (ord_): the resources whose webhooks carry only an id.
MOLLIE_ID = re.compile(r"^(tr|ord)_[A-Za-z0-9]{2,64}$")


class MollieVerifier(Frozen):
    __slots__ = ()

    scheme: str = "mollie"
    credential_headers: frozenset[str] = frozenset()
    doc: ClassVar[SchemeDoc] = SchemeDoc(
        provider="Mollie",
        summary="nothing is signed: the id=tr_… hint is fetched back from Mollie's API",
        checks=(
            "Nothing can be: Mollie signs nothing and sends only `id=tr_…` (a payment) or "
            "`id=ord_…` (an order). The request is a hint, kept pending and answered 200 at "
            "once, for unknown ids too; the worker fetches the payment or order from Mollie's "
            "API with the API key, and the fetched object is the event."
        ),
        secrets="The Mollie API key that fetches (the first one).",
        dedup="the resource's id; one event per change of the fetched object",
        event_type="`payment.<status>` / `order.<status>`",
        body_dedup="no (the fetched object is known by its content)",
        options=("fetch_url", "fetch_rate"),
        notes=(
            "The fetched object is known by its content: a refund changes a `paid` payment "
            'too, and makes a new event. See "Fetch-back" in the README for retries, failures '
            "and `fetch_rate`."
        ),
        secret_example="env:MOLLIE_API_KEY",
    )

    def __init__(self, secrets: Sequence[str], options: VerifyOptions) -> None:
        require_secrets(self.scheme, secrets)  # the API key that fetches what hints name
        init(self)

    def verify(self, request: Inbound) -> Verified:
        fields = urlencoded(request.body) or []
        hint = fields[0][1] if len(fields) == 1 and fields[0][0] == "id" else ""
        if not MOLLIE_ID.fullmatch(hint):
            raise VerificationError(
                "expected a form body with one field, id=tr_... (a payment) or id=ord_... (an "
                "order), as Mollie sends",
                code="not_a_hint",
            )
        return Verified(hint=hint)

    def sign(self, body: bytes, *, url: str, timestamp: int, message_id: str) -> dict[str, str]:
        """Nothing: Mollie signs nothing (the fetch is what authenticates)."""
        return {}
