"""The compiled, immutable view of the settings that ingest and the worker read.

Built once at start and again on SIGHUP; a reload swaps the whole object, so a request always
sees one consistent configuration.
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from yarl import URL

from hookyard.config import (
    ALERT_SOURCE,
    DestinationConfig,
    PollConfig,
    ReconcileConfig,
    Settings,
    SourceConfig,
    destination_kind,
    resolve_secret,
)
from hookyard.deliver.egress import EgressPolicy, EgressRefused
from hookyard.errors import ConfigError
from hookyard.pollers.api import RestApi
from hookyard.routing import Route, destinations_for, ordering_key
from hookyard.verify import Verifier, VerifyOptions, build_verifier, check_options

# Original headers forwarded to destinations unless a source extends the list. A source's own
# webhook-* and svix-* headers travel renamed (hookyard-original-webhook-*, -svix-*), never in
# place of ours: the Svix library reads svix-* before webhook-*, so a provider's svix-* would
# make receivers check the provider's signature instead of Hookyard's.
DEFAULT_FORWARD = (
    "x-github-*",
    "x-hub-signature*",
    "x-gitlab-event*",
    "stripe-signature",
    "x-shopify-*",
    "x-slack-*",
    "svix-*",
    "webhook-*",
)
# Never forwarded, and redacted when stored, whatever a source's allow-list says.
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-gitlab-token", "x-api-key"}
)
REDACTED = "[redacted]"
# Standard Webhooks headers (and Svix's name for them) that ours would clash with.
_RENAMED = ("webhook-", "svix-")
# Query parameters that carry credentials (some providers put a token in the webhook URL).
CREDENTIAL_PARAMS = frozenset(
    {"token", "access_token", "api_key", "apikey", "key", "secret", "client_secret", "password"}
)
# Header and query parameter names that say they hold a credential (X-Auth-Token, X-Api-Key,
# ?auth_token=): besides the exact names above, redacted when stored and shown, never forwarded.
_LOOKS_SECRET = re.compile(r"token|secret|password|passwd|api[-_]?key|auth", re.IGNORECASE)
# Provider headers whose names look like credentials but are not: kept as they came (the worker
# verifies a stored PayPal hint with its auth-algo; Twilio's token is a delivery id).
NOT_CREDENTIALS = frozenset({"paypal-auth-algo", "i-twilio-idempotency-token"})


@functools.lru_cache(maxsize=1024)  # on every ingest request, for names that repeat
def looks_secret(name: str) -> bool:
    """Whether a (lower-cased) header name says that its value is a credential. Provider
    signature headers do not (x-hub-signature, stripe-signature...): they may be forwarded."""
    return _LOOKS_SECRET.search(name) is not None and name not in NOT_CREDENTIALS


def credential_param(name: str) -> bool:
    """Whether a query parameter (any case) carries a credential."""
    return name.lower() in CREDENTIAL_PARAMS or _LOOKS_SECRET.search(name) is not None


MIN_ADMIN_TOKEN = 16  # characters of a configured admin token (tokens are not rate-limited)


def redact_query(query: str) -> str:
    """The query string fit to store and show: credential parameters' values redacted. Only
    what is kept is redacted: schemes that sign the URL (Twilio, Square, HubSpot) verify it as
    it was received."""
    if not query or ("key" not in query.lower() and not _LOOKS_SECRET.search(query)):
        return query  # the common case, without parsing
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(credential_param(k) for k, _ in pairs):
        return query
    return urlencode([(k, REDACTED if credential_param(k) else v) for k, v in pairs], safe="[]")


# Schemes whose hints the worker resolves, and where it fetches from by default ([sources.NAME]
# fetch_url overrides; for sns and paypal it replaces the scheme and host of the certificate
# URLs the provider names).
FETCH_URLS = {"mollie": "https://api.mollie.com", "sns": "", "paypal": ""}


@dataclass(frozen=True, slots=True)
class FetchTarget:
    """The provider API a fetch-back source's hints are resolved against."""

    url: str  # base URL, e.g. https://api.mollie.com
    secrets: tuple[str, ...] = field(default=(), repr=False)  # Mollie: API key; PayPal: ids
    confirm: bool = True  # sns: confirm subscriptions


@dataclass(frozen=True)
class Source:
    name: str
    kind: str  # webhook | api
    verifier: Verifier
    dedup_body: bool | None  # None: as the verifier decides per request
    max_body: int
    forward: re.Pattern[str]
    credential_headers: frozenset[str]
    fetch: FetchTarget | None = None  # where a fetch-back scheme fetches what hints name
    fetch_rate: float = 10.0  # fetches per second at most, across all processes
    api: RestApi | None = None  # the provider's REST API (polling, reconciliation, backfill)
    poll: PollConfig | None = None  # set for poll sources
    reconcile: ReconcileConfig | None = None
    # Paths to a webhook's object id and version, and the types that carry no new version.
    object_paths: tuple[str, str] | None = None
    deletion_types: tuple[str, ...] = ()

    def is_credential(self, name: str) -> bool:
        """Whether a (lower-cased) header carries a credential: one of this source's, or one
        whose name says so."""
        return name in self.credential_headers or looks_secret(name)

    def redact(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Headers fit to store and show. Verification has read them before (ingest.prepare)."""
        return [(k, REDACTED if self.is_credential(k) else v) for k, v in headers]

    def forwarded(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Original headers a destination receives: allow-listed, never credentials."""
        out = []
        for name, value in headers:
            if self.is_credential(name) or not self.forward.match(name):
                continue
            if name.startswith(_RENAMED):
                name = "hookyard-original-" + name
            out.append((name, _as_sent(value)))
        return out


def _as_sent(value: str) -> str:
    """An arrived header value (held as Latin-1: one character per byte) in the form that
    the HTTP client, which writes UTF-8, turns back into the same bytes. Bytes that are not
    UTF-8 cannot go out exactly; they go as the UTF-8 of their Latin-1 reading."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


DEFAULT_ROUTING_KEY = "{source}.{type}"  # amqp destinations
DEFAULT_SUBJECT = "hookyard.{source}.{type}"  # nats destinations


@dataclass(frozen=True, slots=True)
class Destination:
    name: str
    url: str = field(
        repr=False
    )  # may hold a password or token: show it with redact_destination_url
    # Several during a rotation: each signature is sent. Secrets, like the headers: no repr.
    signing_keys: tuple[bytes, ...] = field(repr=False)
    headers: tuple[tuple[str, str], ...] = field(repr=False)  # static headers, authorization
    ssl: ssl.SSLContext | None  # a custom CA or a client certificate
    proxy: str | None
    timeout: float
    retry_schedule: tuple[float, ...]
    jitter: float
    retry_after_max: float
    disable_after: float
    concurrency: int
    rate_limit: float | None  # attempts per second
    ordering: str | None  # "source" or "field:<path>"
    egress: EgressPolicy
    refused: str | None  # why the egress policy refuses the URL's literal IP, if it does
    relay: bool = False  # no URL: relay clients lease its deliveries (relay/)
    kind: str = "http"  # http, redis, amqp, nats (the URL's scheme), or relay
    stream: str | None = None  # redis
    maxlen: int | None = None  # redis: approximate cap
    exchange: str | None = None  # amqp
    routing_key: str = DEFAULT_ROUTING_KEY  # amqp template
    subject: str = DEFAULT_SUBJECT  # nats template


@dataclass(frozen=True, slots=True)
class Gateway:
    settings: Settings
    base_dir: Path
    sources: dict[str, Source]
    destinations: dict[str, Destination]
    routes: dict[str, tuple[Route, ...]]  # by source name
    # Every source's credential headers: redacted in what is kept of a request that reached no
    # source (a mistyped path, a source removed by a reload).
    credential_headers: frozenset[str] = CREDENTIAL_HEADERS

    @classmethod
    def build(cls, settings: Settings, base_dir: Path) -> Gateway:
        """Compile the settings, resolving every secret reference (so `check` catches them)."""
        if settings.server.admin_token is not None:
            token = resolve_secret(
                settings.server.admin_token, key="server.admin_token", base_dir=base_dir
            )
            if len(token.strip()) < MIN_ADMIN_TOKEN:  # empty: nobody could ever log in
                raise ConfigError(
                    "server.admin_token",
                    f"is {len(token.strip())} characters; use at least {MIN_ADMIN_TOKEN} random"
                    " ones (left unset, Hookyard generates one of 256 random bits)",
                )
        sources = {
            name: _source(name, cfg, settings, base_dir) for name, cfg in settings.sources.items()
        }
        destinations = {
            name: _destination(name, cfg, settings, base_dir)
            for name, cfg in settings.destinations.items()
        }
        routes: dict[str, list[Route]] = {name: [] for name in [*sources, ALERT_SOURCE]}
        for route in settings.routes:
            routes[route.source].append(
                Route.build(route.source, route.destinations, route.types, route.where)
            )
        return cls(
            settings,
            base_dir,
            sources,
            destinations,
            {k: tuple(v) for k, v in routes.items()},
            CREDENTIAL_HEADERS.union(*(source.credential_headers for source in sources.values())),
        )

    def targets(
        self, source: str, event_type: str | None, document: Callable[[], Any]
    ) -> tuple[tuple[str, str | None], ...]:
        """The destinations an event of `source` goes to, each with its ordering key."""
        names = destinations_for(self.routes.get(source, ()), event_type, document)
        return tuple(
            (name, ordering_key(self.destinations[name].ordering, source, document))
            for name in names
        )

    @property
    def warnings(self) -> list[str]:
        """What is valid but likely wrong: `check` prints it; `serve` logs it at start, reload."""
        window = self.settings.server.dedup_window
        found = [
            f"sources.{name}: tolerance {_shown_tolerance(source.verifier)} is longer than "
            f"[server] dedup_window ({window:g} s): a request replayed after its dedup key "
            "expired, and still within the tolerance, would be delivered again"
            for name, source in self.sources.items()
            if outlives_dedup(source.verifier, self.settings)
        ]
        if self.settings.server.public_url:
            return found
        return found + [
            f"sources.{name}: verify = {source.verifier.scheme!r} signs the URL the provider "
            "called, which without [server] public_url is rebuilt from the request's Host "
            "header; behind a proxy or load balancer, set public_url to the URL registered "
            "at the provider or every request fails verification"
            for name, source in self.sources.items()
            if getattr(getattr(source.verifier, "doc", None), "public_url", False)
        ]

    @property
    def lease(self) -> float:
        """How long a claimed delivery stays leased: the longest attempt plus a margin."""
        if self.settings.worker.lease is not None:
            return self.settings.worker.lease
        return max((d.timeout for d in self.destinations.values()), default=30.0) + 30.0


def outlives_dedup(verifier: Verifier, settings: Settings) -> bool:
    """Whether a scheme accepts a signature for longer than dedup keys are kept. A tolerance
    of 0 is for ever, but matters only where the dedup key is the replay defence (Mailgun):
    elsewhere 0 means no signed time (the body hash guards those) or a check turned off on
    purpose, to re-verify old captures."""
    tolerance = _tolerance_of(verifier)
    if tolerance is None:
        return False
    if tolerance == 0:
        return bool(getattr(verifier, "replay_by_dedup", False))
    return tolerance > settings.server.dedup_window


UNSIGNED_BODY_REPLAY = (
    "this scheme does not sign the body, so a signature replayed after its token's dedup key "
    "expired would pass with any body"
)


def _tolerance_of(verifier: Verifier) -> int | None:
    """The timestamp tolerance of schemes that sign a time (seconds; 0: no check), else None."""
    tolerance: int | None = getattr(verifier, "_tolerance", None)
    return tolerance


def _shown_tolerance(verifier: Verifier) -> str:
    tolerance = _tolerance_of(verifier)
    return "0 (no timestamp check)" if tolerance == 0 else f"{tolerance} s"


def _source(name: str, cfg: SourceConfig, settings: Settings, base_dir: Path) -> Source:
    key = f"sources.{name}"
    secrets = [
        resolve_secret(ref, key=f"{key}.secrets.{i}", base_dir=base_dir)
        for i, ref in enumerate(cfg.secrets)
    ]
    options = VerifyOptions(
        tolerance=None if cfg.tolerance is None else int(cfg.tolerance),
        signature_header=cfg.signature_header,
        algorithm=cfg.algorithm,
        encoding=cfg.encoding,
        signature_prefix=cfg.signature_prefix,
        signed_content=cfg.signed_content,
        timestamp_header=cfg.timestamp_header,
        id_header=cfg.id_header,
        type_header=cfg.type_header,
        type_field=cfg.type_field,
        token_header=cfg.token_header,
    )
    try:
        if cfg.verify is not None:
            check_options(cfg.verify, cfg.model_fields_set)
        verifier = build_verifier(cfg.verify or "none", secrets, options)
    except ConfigError as exc:
        raise ConfigError(f"{key}.{exc.key}" if exc.key else key, exc.reason) from None
    if getattr(verifier, "replay_by_dedup", False) and outlives_dedup(verifier, settings):
        raise ConfigError(
            f"{key}.tolerance",
            f"{_shown_tolerance(verifier)} must be shorter than [server] dedup_window "
            f"({settings.server.dedup_window:g} s): "
            + getattr(verifier, "replay_risk", UNSIGNED_BODY_REPLAY),
        )
    patterns = [*DEFAULT_FORWARD, *(p.lower() for p in cfg.forward_headers)]
    forward = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))
    return Source(
        name=name,
        kind=cfg.kind,
        verifier=verifier,
        dedup_body=cfg.dedup_body,
        max_body=cfg.max_body or settings.server.max_body,
        forward=forward,
        credential_headers=CREDENTIAL_HEADERS | verifier.credential_headers,
        fetch=(
            FetchTarget(
                (cfg.fetch_url or FETCH_URLS[verifier.scheme]).rstrip("/"),
                tuple(secrets),
                cfg.confirm_subscriptions,
            )
            if verifier.scheme in FETCH_URLS
            else None
        ),
        fetch_rate=cfg.fetch_rate,
        api=_rest_api(name, cfg, base_dir),
        poll=cfg.polling if cfg.kind == "poll" else None,
        reconcile=cfg.reconcile,
        object_paths=(cfg.object_id, cfg.object_version)
        if cfg.object_id and cfg.object_version
        else None,
        deletion_types=tuple(cfg.deletion_types),
    )


def _rest_api(name: str, cfg: SourceConfig, base_dir: Path) -> RestApi | None:
    if cfg.api is None:
        return None
    key = f"sources.{name}"
    if cfg.kind == "poll" and cfg.polling.detect == "cursor" and not cfg.api.updated_field:
        raise ConfigError(f"{key}.poll.detect", "cursor needs api.updated_field (or use hash)")
    if cfg.reconcile is not None and not cfg.api.updated_field:
        raise ConfigError(f"{key}.api.updated_field", "reconcile lists by update time")
    return RestApi.build(name, cfg.api, base_dir)


def _destination(
    name: str, cfg: DestinationConfig, settings: Settings, base_dir: Path
) -> Destination:
    prefix = f"destinations.{name}"

    def secret(reference: str, key: str) -> str:
        return resolve_secret(reference, key=f"{prefix}.{key}", base_dir=base_dir)

    references = [cfg.secret] if isinstance(cfg.secret, str) else cfg.secret or []
    keys = tuple(
        decode_whsec(secret(ref, f"secret.{i}"), key=f"{prefix}.secret")
        for i, ref in enumerate(references)
    )
    headers = [(k.lower(), secret(v, f"headers.{k}")) for k, v in cfg.headers.items()]
    if cfg.bearer_token is not None:
        headers.append(("authorization", "Bearer " + secret(cfg.bearer_token, "bearer_token")))
    if cfg.basic_auth is not None:
        pair = secret(cfg.basic_auth, "basic_auth")
        if ":" not in pair:
            raise ConfigError(f"{prefix}.basic_auth", "expected user:password")
        headers.append(("authorization", "Basic " + base64.b64encode(pair.encode()).decode()))
    url, kind = _transport(cfg, prefix, base_dir)
    egress = EgressPolicy.from_cidrs([*settings.egress.allow, *cfg.egress_allow])
    return Destination(
        name=name,
        url=url,
        signing_keys=keys,
        headers=tuple(headers),
        ssl=_ssl_context(cfg, prefix, base_dir),
        proxy=cfg.proxy,
        timeout=cfg.timeout,
        retry_schedule=tuple(cfg.schedule()),
        jitter=cfg.jitter,
        retry_after_max=cfg.retry_after_max,
        disable_after=cfg.disable_after,
        concurrency=cfg.concurrency,
        rate_limit=cfg.rate_limit,
        ordering=cfg.ordering,
        egress=egress,
        refused=_literal_refusal(egress, url) if url else None,
        relay=cfg.relay,
        kind=kind,
        stream=cfg.stream,
        maxlen=cfg.maxlen,
        exchange=cfg.exchange,
        routing_key=DEFAULT_ROUTING_KEY if cfg.routing_key is None else cfg.routing_key,
        subject=cfg.subject or DEFAULT_SUBJECT,
    )


def _transport(cfg: DestinationConfig, prefix: str, base_dir: Path) -> tuple[str, str]:
    """The resolved URL (it may be a secret reference) and the transport its scheme picks;
    every key must fit that transport."""
    if cfg.url is None:
        url, kind = "", "relay"
    else:
        url = resolve_secret(cfg.url, key=f"{prefix}.url", base_dir=base_dir)
        try:
            kind = destination_kind(url)
        except ValueError as exc:
            raise ConfigError(f"{prefix}.url", str(exc)) from None
    problem = cfg.transport_problem(kind)
    if problem is not None:
        raise ConfigError(f"{prefix}.{problem[0]}", problem[1])
    return url, kind


def _literal_refusal(egress: EgressPolicy, url: str) -> str | None:
    """Checked once here: a URL naming an IP literal never reaches the resolver."""
    try:
        egress.check_literal(URL(url).host or "")
    except EgressRefused as exc:
        return str(exc)
    return None


def _ssl_context(cfg: DestinationConfig, prefix: str, base_dir: Path) -> ssl.SSLContext | None:
    if cfg.ca_file is None and cfg.client_cert is None:
        return None
    try:
        context = ssl.create_default_context(
            cafile=str(base_dir / cfg.ca_file) if cfg.ca_file else None
        )
        if cfg.client_cert is not None:
            context.load_cert_chain(
                base_dir / cfg.client_cert,
                base_dir / cfg.client_key if cfg.client_key else None,
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(prefix, f"cannot load the TLS files: {exc}") from None
    return context


def decode_whsec(secret: str, *, key: str) -> bytes:
    """A Standard Webhooks secret: `whsec_` + base64 of 24 to 64 random bytes."""
    body = secret.removeprefix("whsec_")
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except ValueError:
        raise ConfigError(key, "expected whsec_ followed by base64") from None
    if not 24 <= len(raw) <= 64:
        raise ConfigError(key, f"decodes to {len(raw)} bytes; expected 24 to 64 random bytes")
    return raw
