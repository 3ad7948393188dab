"""Fetch-back: turning thin hints into events, inside the worker role.

Some providers send a hint instead of an event (Mollie: `id=tr_...`, "fetch the payment to
learn its status"), or an event that can only be verified with something fetched (SNS: the
signing certificate). Ingest stores such a request as a pending hint and answers at once; this
task leases due hints, fetches what each needs (outbound requests obey the egress policy), and
stores the resulting event, routed and delivered like any. A Mollie event is deduplicated on
the resource and its status, so a hint repeated for the same state yields one event and each
change of state a new one; an SNS message on its MessageId.

A fetch that fails for a reason that may pass (network, 5xx, 429, a rejected API key that an
operator can fix) is retried on SCHEDULE; one the provider answers 404 or 410 for, or that has
used every attempt, fails: the request is marked failed and the failure goes to the rejected
log (`hookyard rejected list`), where it can be seen. Hints of a source that no longer fetches
(removed from the config, or its scheme changed) fail the same way once nobody has fetched them
for an hour (queries.ORPHANED_AFTER).

Hints are unauthenticated, so a flood of forged ones is bounded at ingest (store_hint): a hint
identical to one of the same source not yet fetched is answered as that one and not stored
again, and past MAX_PENDING pending hints a source's new ones are refused with 503 and
Retry-After, for the provider to send again later. Fetching is oldest first (see
queries.claim_hints), so a hint that was stored waits at most about MAX_PENDING / fetch_rate.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field

import aiohttp
import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from yarl import URL

from hookyard.deliver.egress import USER_AGENT, EgressPolicy, GuardedSession
from hookyard.errors import Unavailable, VerificationError
from hookyard.gateway import FetchTarget, Source
from hookyard.ids import new_id
from hookyard.ingest import dedup_keys, lazy_json
from hookyard.models import Hint, NewEvent, NewRequest, Rejected
from hookyard.state import AppState
from hookyard.store import queries
from hookyard.verify import Inbound, paypal, sns

log = logging.getLogger("hookyard.fetchback")
# Before attempts 2..12: about two days in all, since the provider got its 200 and will not
# send the hint again.
SCHEDULE = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0)
LEASE = 60.0  # a fetch that has not finished by then is tried again (its worker died)
BATCH = 32
TIMEOUT = 15.0
MOLLIE_RESOURCES = {"tr": "payments", "ord": "orders"}
# Pending hints per source past which ingest refuses new ones (503, Retry-After): about 100 s
# of fetching at the default rate of 10/s. 503 rather than 429: the provider is not the one
# sending too much, and many providers retry a 5xx but give up on a 4xx.
MAX_PENDING = 1000
# Schemes whose hint is its body alone (Mollie's `id=...`; an SNS message carries its
# signature inside): an identical body names the same object with the same proof, so a
# repeat can be answered as the hint already waiting. A PayPal hint's signature is in its
# headers: a forged copy of a body must not stand in for the genuine request, so PayPal hints
# are bounded by MAX_PENDING alone.
MERGED_BY_BODY = frozenset({"mollie", "sns"})
ORPHAN_CHECK = 60.0  # how often a process with no fetch-back source looks for orphaned hints


class FetchFailed(Exception):
    def __init__(self, reason: str, *, final: bool = False) -> None:
        super().__init__(reason)
        self.final = final


@dataclass(frozen=True, slots=True)
class Fetched:
    payload: bytes
    event_id: str
    event_type: str | None
    dedup: tuple[str, ...]  # the event's dedup keys


@dataclass
class Context:
    """What fetchers share: the egress-guarded HTTP client, and certificates fetched before
    (keyed by URL: AWS reuses one certificate for many messages)."""

    session: aiohttp.ClientSession
    certificates: dict[str, x509.Certificate] = field(default_factory=dict)


async def fetch_mollie(context: Context, target: FetchTarget, hint: str, stored: Hint) -> Fetched:
    session = context.session
    kind = hint.split("_", 1)[0]
    resource = MOLLIE_RESOURCES[kind]
    url = f"{target.url}/v2/{resource}/{hint}"
    headers = {"authorization": f"Bearer {target.secrets[0]}", "user-agent": USER_AGENT}
    async with session.get(url, headers=headers, allow_redirects=False) as response:
        body = await response.read()
        if response.status in (404, 410):
            raise FetchFailed(f"Mollie knows no {hint} (HTTP {response.status})", final=True)
        if response.status != 200:
            raise FetchFailed(f"GET {url} answered HTTP {response.status}")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise FetchFailed(f"GET {url} answered something that is not JSON") from None
    if not isinstance(document, dict) or document.get("id") != hint:
        raise FetchFailed(f"GET {url} answered something other than {hint}")
    status = document.get("status")
    if not isinstance(status, str):
        raise FetchFailed(f"GET {url} answered {hint} without a status")
    # Known by its content: a refund or chargeback leaves the status `paid` but changes the
    # object, and must not be taken for a repeat.
    keys = dedup_keys(None, None, body)
    return Fetched(body, hint, f"{resource.rstrip('s')}.{status}", keys)


def _via(target: FetchTarget, url: str) -> str:
    """An AWS URL, or the same path and query under `fetch_url` when one is configured (a
    proxy, or a stand-in for AWS in tests)."""
    if not target.url:
        return url
    parsed = URL(url)
    return target.url + parsed.raw_path_qs


async def _certificate(context: Context, target: FetchTarget, url: str) -> x509.Certificate:
    cached = context.certificates.get(url)
    if cached is not None:
        return cached
    async with context.session.get(_via(target, url), allow_redirects=False) as response:
        pem = await response.read()
        if response.status != 200:
            raise FetchFailed(f"GET {url} answered HTTP {response.status}")
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise FetchFailed(f"{url} is not a PEM certificate", final=True) from None
    if len(context.certificates) >= 64:  # AWS rotates rarely: a small cache is plenty
        context.certificates.clear()
    context.certificates[url] = certificate
    return certificate


async def fetch_sns(context: Context, target: FetchTarget, hint: str, stored: Hint) -> Fetched:
    body = stored.body
    message = sns.envelope(body)
    assert message is not None  # ingest's verifier accepted it
    certificate = await _certificate(context, target, message["SigningCertURL"])
    digest = hashes.SHA1() if message["SignatureVersion"] == "1" else hashes.SHA256()
    key = certificate.public_key()
    try:
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidSignature
        key.verify(
            base64.b64decode(message["Signature"]),
            sns.string_to_sign(message),
            padding.PKCS1v15(),
            digest,
        )
    except (InvalidSignature, binascii.Error, ValueError):
        raise FetchFailed(
            f"SNS message {hint}: the signature does not match {message['SigningCertURL']}",
            final=True,
        ) from None
    kind = message["Type"]
    if kind == "SubscriptionConfirmation" and target.confirm:  # "visit the SubscribeURL"
        url = message["SubscribeURL"]
        async with context.session.get(_via(target, url), allow_redirects=False) as response:
            await response.read()
            if response.status != 200:
                raise FetchFailed(f"confirming the subscription answered HTTP {response.status}")
    return Fetched(body, hint, kind, dedup_keys(hint, None, None))


async def fetch_paypal(context: Context, target: FetchTarget, hint: str, stored: Hint) -> Fetched:
    headers = stored.headers
    url = headers["paypal-cert-url"]
    certificate = await _certificate(context, target, url)
    names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not names or names[0].value not in paypal.CERT_NAMES:
        raise FetchFailed(f"{url} is not PayPal's message-verification certificate", final=True)
    key = certificate.public_key()
    try:
        signature = base64.b64decode(headers["paypal-transmission-sig"], validate=True)
    except binascii.Error:
        signature = b""
    for webhook_id in target.secrets:  # several during rotation
        signed = paypal.signed_string(headers, webhook_id, stored.body)
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
                break
        except InvalidSignature:
            continue
    else:
        raise FetchFailed(
            f"PayPal event {hint}: the signature matches none of the source's webhook ids",
            final=True,
        )
    document = orjson.loads(stored.body)
    kind = document.get("event_type")
    # PayPal signs only a CRC32 of the body, which can be forged to fit: a transmission is
    # accepted once, whatever body comes with it.
    keys = dedup_keys(hint, None, None, headers["paypal-transmission-id"])
    return Fetched(stored.body, hint, kind if isinstance(kind, str) else None, keys)


FETCHERS = {"mollie": fetch_mollie, "sns": fetch_sns, "paypal": fetch_paypal}


async def store_hint(state: AppState, source: Source, request: NewRequest) -> str:
    """Keep a hint for the worker to fetch, within the source's bound: returns the request id
    to answer with (its own, or that of the identical hint already waiting). Raises
    Unavailable when the source has MAX_PENDING hints waiting, StoreError if the database
    fails."""
    row = queries.ingest_rows(request).request
    assert row is not None
    answer = await state.store.store_hint(
        row, source.verifier.scheme in MERGED_BY_BODY, MAX_PENDING
    )
    if answer is None:
        # Retry when what is waiting has been fetched, as far as the provider listens.
        wait = min(3600, max(1, math.ceil(MAX_PENDING / source.fetch_rate)))
        raise Unavailable(
            f"source {source.name!r} has {MAX_PENDING} hints waiting to be fetched; retry later",
            retry_after=wait,
        )
    return answer


class FetchBack:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self._task: asyncio.Task[None] | None = None
        self._context: Context | None = None
        self._http = GuardedSession(lambda: state.gateway.settings.egress.allow, TIMEOUT)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hookyard-fetchback")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._http.close()

    def _client(self) -> tuple[Context, EgressPolicy]:
        session, policy = self._http.get()
        if self._context is None or self._context.session is not session:
            self._context = Context(session)  # egress changed on reload: a new client
        return self._context, policy

    async def _run(self) -> None:
        ready = self.state.hints_ready
        orphans_at = 0.0  # with no source to fetch for, when to look for orphaned hints next
        while True:
            ready.clear()
            try:
                rates = {
                    name: source.fetch_rate
                    for name, source in self.state.gateway.sources.items()
                    if source.fetch is not None
                }
                hints: list[Hint] = []
                # A claim also hands out orphaned hints (see queries.claim_hints): with no
                # source to fetch for, it is made only to look for those, once a minute.
                if rates or time.monotonic() >= orphans_at:
                    hints = await self.state.store.claim_hints(LEASE, BATCH, rates)
                    await asyncio.gather(*(self._resolve(hint) for hint in hints))
                if len(hints) == BATCH:
                    continue  # more may be due
                orphans_at = time.monotonic() + ORPHAN_CHECK
            except Exception:
                log.exception("fetch-back could not claim hints; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    ready.wait(), self.state.gateway.settings.worker.poll_interval
                )

    async def _resolve(self, hint: Hint) -> None:
        source = self.state.gateway.sources.get(hint.source)
        try:
            try:
                fetched = await self._fetch(source, hint)
            except FetchFailed:
                raise
            except Exception as exc:  # whatever else went wrong may pass: try again later
                raise FetchFailed(f"{type(exc).__name__}: {exc}") from exc
        except FetchFailed as exc:
            final = exc.final or hint.attempt > len(SCHEDULE)
            next_at = None if final else time.time() + SCHEDULE[hint.attempt - 1]
            log.warning(
                "fetching hint %s of %s failed (attempt %d%s): %s",
                hint.request_id,
                hint.source,
                hint.attempt,
                ", giving up" if final else "",
                exc,
            )
            await self.state.store.settle_hint(hint.request_id, None, str(exc), next_at)
            self.state.fetches[(hint.source, "failed" if final else "retry")] += 1
            if final:
                self._record_failure(hint, str(exc))
            return
        assert source is not None
        event = NewEvent(
            id=new_id("evt"),
            source=source.name,
            origin="fetch-back",
            received_at=time.time(),
            provider_event_id=fetched.event_id,
            event_type=fetched.event_type,
            dedup_keys=fetched.dedup,
            content_type="application/json",
            payload=fetched.payload,
            destinations=self.state.gateway.targets(
                source.name, fetched.event_type, lazy_json(fetched.payload)
            ),
        )
        [accepted] = await self.state.store.settle_hint(hint.request_id, [event])
        # ok: a new event, duplicate: the object was known, retry: failed and tried again
        # later, failed: for good (/metrics: hookyard_fetches_total).
        self.state.fetches[(hint.source, "duplicate" if accepted.duplicate else "ok")] += 1
        if event.destinations and not accepted.duplicate:
            self.state.work_ready.set()

    async def _fetch(self, source: Source | None, hint: Hint) -> Fetched:
        if source is None or source.fetch is None:
            raise FetchFailed(
                f"source {hint.source!r} no longer fetches hints (it was removed from the"
                " config, or its scheme changed)",
                final=True,
            )
        inbound = Inbound("POST", "", hint.headers, hint.body, hint.received_at)
        try:  # the source's config may have changed since ingest accepted the hint
            verified = source.verifier.verify(inbound)
        except VerificationError as exc:
            raise FetchFailed(f"the stored hint no longer verifies: {exc}", final=True) from None
        if verified.hint is None:
            raise FetchFailed("the stored hint no longer verifies as a hint", final=True)
        context, policy = self._client()
        # An IP in the URL is never resolved, so the resolver's check would not see it.
        policy.check_literal(URL(source.fetch.url).host or "")
        return await FETCHERS[source.verifier.scheme](context, source.fetch, verified.hint, hint)

    def _record_failure(self, hint: Hint, reason: str) -> None:
        self.state.rejected.add(
            Rejected(
                id=new_id("rej"),
                source=hint.source,
                received_at=hint.received_at,
                status=200,  # what the provider was answered: the hint itself was fine
                code="fetch_failed",
                reason=f"request {hint.request_id}: {reason}",
                method="POST",
                path=f"/in/{hint.source}",
                query="",
                headers=b"[]",
                peer=None,
                body=hint.body[:4096],
                body_size=len(hint.body),
            )
        )
