"""Typed settings: defaults < hookyard.toml < HOOKYARD_* environment < command-line flags.

`load_config` validates everything at start (and on SIGHUP) and raises ConfigError naming the
offending key. Secrets are referenced as `env:NAME`, `file:PATH` or given literally; they are
resolved here and never appear in errors, logs or API output.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import string
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from yarl import URL

from hookyard.errors import ConfigError
from hookyard.units import parse_duration, parse_size

DEFAULT_LISTEN = "127.0.0.1:8787"
DEFAULT_DATABASE = "sqlite:///hookyard.db"
ROLES = ("ingest", "api", "worker", "poller")
Role = Literal["ingest", "api", "worker", "poller"]
DEFAULT_RETRY_SCHEDULE = ("0", "5s", "5m", "30m", "2h", "5h", "10h", "10h")
ENV_PREFIX = "HOOKYARD_"
ALERT_SOURCE = "hookyard"  # the built-in source of Hookyard's own alerts (see alerts.py)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
FIELD_PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")  # data.items.0.id

Duration = Annotated[float, BeforeValidator(parse_duration)]


def _age(value: Any) -> float | None:
    return None if value == "forever" else parse_duration(value)


Age = Annotated[float | None, BeforeValidator(_age)]  # a duration, or "forever" (None)
Size = Annotated[int, BeforeValidator(parse_size)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Model):
    listen: str = DEFAULT_LISTEN
    database: str = DEFAULT_DATABASE
    admin_token: str | None = None  # a secret reference; generated on first start when unset
    token_file: str = "hookyard.token"  # a generated admin token goes here, beside the config
    public_url: str | None = None  # the base URL providers call, for schemes that sign the URL
    max_body: Size = 1024 * 1024
    max_header_bytes: Size = 32 * 1024
    max_pending: int = Field(default=20_000, ge=1)  # queued writes before ingest answers 503
    # How long ingest waits for its commit before answering 503 (a database that hangs):
    # providers give up after 10 to 30 s, and should hear "retry" rather than time out.
    commit_timeout: Duration = Field(default=10.0, gt=0)
    rejected_log_size: int = Field(default=10_000, ge=0)
    rejected_samples_per_second: int = Field(default=20, ge=0)
    # Verification failures per minute on one source that raise a source.verification_failures
    # alert (0: never).
    alert_verification_failures: int = Field(default=100, ge=0)
    # Dedup keys are kept this long: longer than any provider's retry horizon.
    dedup_window: Duration = 7 * 86400
    # Idle client connections stay open this long; keep it above a load balancer's idle timeout.
    keepalive_timeout: Duration = Field(default=75, ge=1)
    tls_cert: str | None = None  # PEM certificate (chain) to serve HTTPS; reloaded on SIGHUP
    tls_key: str | None = None
    # Proxies whose X-Forwarded-For/-Proto are believed (IPs or CIDRs); nobody else's.
    trusted_proxies: list[str] = []

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        return _cidrs(value)

    # What this process does; processes sharing a PostgreSQL database can split the work.
    roles: list[Role] = ["ingest", "api", "worker", "poller"]
    # Apply pending schema migrations at start (under a lock, so several processes starting
    # together migrate once). Off: start refuses an old schema; run `hookyard migrate`.
    auto_migrate: bool = True

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(f"give at least one of {', '.join(ROLES)}")
        if len(set(value)) != len(value):
            raise ValueError("a role is listed twice")
        return value

    log_format: Literal["text", "json"] = "text"
    tracing: bool = False  # OpenTelemetry spans, ingest to delivery (the otel extra)
    # Payload fields the event list filters on often (field.<path>=...): each gets an index,
    # built at start, which every later insert keeps up to date (it parses the payload).
    indexed_fields: list[str] = []

    @field_validator("indexed_fields")
    @classmethod
    def _fields(cls, value: list[str]) -> list[str]:
        for path in value:
            if not FIELD_PATH.match(path):
                raise ValueError(f"{path!r} is not a dotted path like data.customer.id")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("database")
    @classmethod
    def _database(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://", "env:", "file:")):
            raise ValueError(
                "expected sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE (or an env: or "
                "file: reference to one, when it holds a password)"
            )
        return value


class AuthConfig(_Model):
    """How calls to a REST API authenticate: exactly one of bearer, basic, header (with key),
    query (with key), or OAuth 2 client credentials (token_url, client_id, client_secret)."""

    bearer: str | None = None  # reference to the token
    basic: str | None = None  # reference to "user:password"
    header: str | None = None  # header name carrying `key`, e.g. X-Api-Key
    query: str | None = None  # query parameter carrying `key`, e.g. api_key
    key: str | None = None  # reference to the API key
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None  # reference
    scope: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> AuthConfig:
        kinds = [k for k in ("bearer", "basic", "header", "query", "token_url") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError("give exactly one of bearer, basic, header, query, token_url")
        if (self.header or self.query) and not self.key:
            raise ValueError("header and query auth need `key`")
        if self.token_url and not (self.client_id and self.client_secret):
            raise ValueError("OAuth 2 (token_url) needs client_id and client_secret")
        return self


class ApiConfig(_Model):
    """A provider's REST list endpoint: how to call it, page through it and read its items."""

    url: str  # the list endpoint
    params: dict[str, str] = {}  # query parameters sent with the first page
    headers: dict[str, str] = {}  # values may be env:/file: references
    auth: AuthConfig | None = None
    pagination: Literal["none", "link", "next_url", "cursor", "page", "offset"] = "none"
    next: str | None = None  # body path of the next URL or cursor (default next / next_cursor)
    cursor_param: str = "cursor"
    page_param: str = "page"
    offset_param: str = "offset"
    limit_param: str | None = "limit"  # the page-size parameter (None: not sent)
    page_size: int = Field(default=100, ge=1, le=10_000)
    first_page: int = Field(default=1, ge=0)
    items: str = "data"  # dotted path to the items array; "" when the body is the array
    id_field: str = "id"
    updated_field: str | None = "updated_at"  # ISO 8601 or unix seconds
    version_field: str | None = None  # preferred over updated_field to tell versions apart
    created_field: str | None = None  # equal to updated_field means "created"
    since_param: str | None = "updated_since"  # filters by update time (cursor mode, windows)
    until_param: str | None = "updated_until"
    time_format: Literal["iso", "unix", "unix_ms"] = "iso"
    object_url: str | None = None  # one object's current state, "https://.../orders/{id}"
    resource: str | None = None  # event types are RESOURCE.created|updated|deleted
    calls_per_minute: Annotated[float, Field(gt=0)] | None = None  # a budget for this source
    timeout: Duration = 30.0

    @field_validator("url", "object_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected an http:// or https:// URL")
        return value


class PollConfig(_Model):
    """When and how a poll source looks for changes."""

    interval: Duration | None = None  # default 60s, unless cron is set
    cron: str | None = None  # "*/5 * * * *" (UTC)
    # cursor: ask for items updated since the last poll (minus lookback); etag: list all with
    # conditional requests and compare content; hash: list all and compare content.
    detect: Literal["cursor", "etag", "hash"] = "cursor"
    lookback: Duration = 60.0  # cursor mode re-reads this much before its checkpoint
    # The first run: skip records what exists without emitting (history: `hookyard backfill`);
    # emit makes a `created` event of every existing item.
    initial: Literal["skip", "emit"] = "skip"

    @model_validator(mode="after")
    def _schedule(self) -> PollConfig:
        if self.interval is not None and self.cron is not None:
            raise ValueError("set either interval or cron, not both")
        if self.cron is not None and not croniter.is_valid(self.cron):
            raise ValueError(f"{self.cron!r} is not a cron expression")
        if self.interval is not None and self.interval < 0.1:
            raise ValueError("interval must be at least 100ms")
        return self


class ReconcileConfig(_Model):
    """Check what the webhooks carried against the REST API, and emit what they missed."""

    interval: Duration = Field(default=900.0, ge=1)
    window: Duration = Field(default=3600.0, ge=1)  # how far back each run checks


class SourceConfig(_Model):
    # webhook: providers POST to /in/NAME and `verify` checks them; api: applications publish
    # through POST /api/v1/sources/NAME/events with a publish token; poll: Hookyard polls a
    # REST API (`api`, `poll`) and emits what changed.
    kind: Literal["webhook", "api", "poll"] = "webhook"
    verify: str | None = None
    secrets: list[str] = []
    tolerance: Duration | None = None
    signature_header: str | None = None
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    signature_prefix: str = ""
    signed_content: str = "{body}"
    timestamp_header: str | None = None
    id_header: str | None = None
    type_header: str | None = None
    type_field: str | None = None
    token_header: str | None = None
    dedup_body: bool | None = None  # None: the scheme decides (HMAC without a signed timestamp)
    max_body: Size | None = None
    forward_headers: list[str] = []  # glob patterns added to the default allow-list
    # Where fetch-back schemes (mollie) fetch what a hint names; the default is the provider's
    # API. Outbound requests obey [egress].
    fetch_url: str | None = None
    # At most this many fetches (hints resolved) per second or minute, across all processes:
    # forged hints cannot spend the provider API's quota faster. "10/s", "600/m".
    fetch_rate: Annotated[float, BeforeValidator(parse_rate)] = 10.0
    # sns: the worker confirms subscriptions by visiting SubscribeURL. Off: the confirmation is
    # only stored and delivered (your application confirms with its Token).
    confirm_subscriptions: bool = True
    # The REST side: the provider's list API (for polling, reconciliation, backfill and the
    # current state of an object), and the jobs that use it.
    api: ApiConfig | None = None
    poll: PollConfig | None = None
    reconcile: ReconcileConfig | None = None
    # Where a webhook's JSON names its object's id and version (or update time): the same
    # object version arriving by webhook, reconciliation, poll or backfill is one event.
    object_id: str | None = None  # e.g. data.id
    object_version: str | None = None  # e.g. data.updated_at
    deletion_types: list[str] = ["*.deleted"]  # webhooks that carry no new version
    retention: SourceRetention | None = None  # this source's own; else [retention]

    @field_validator("tolerance")
    @classmethod
    def _tolerance(cls, value: float | None) -> float | None:
        # Timestamps are whole seconds: under a second would round to 0, which means "no check".
        if value is not None and (not math.isfinite(value) or 0 < value < 1):
            raise ValueError("a tolerance is 0 (no timestamp check) or at least 1s")
        return value

    @field_validator("object_id", "object_version")
    @classmethod
    def _paths(cls, value: str | None) -> str | None:
        if value is not None and not FIELD_PATH.match(value):
            raise ValueError(f"{value!r} is not a dotted path like data.object.id")
        return value

    @model_validator(mode="after")
    def _verify_for_webhooks(self) -> SourceConfig:
        if self.kind == "webhook" and self.verify is None:
            raise ValueError('a webhook source needs `verify` (a scheme, or "none")')
        if self.kind == "api" and self.verify is not None:
            raise ValueError("an api source is authenticated by publish tokens; drop `verify`")
        if self.kind == "poll":
            if self.verify is not None:
                raise ValueError("a poll source receives no webhooks; drop `verify`")
            if self.api is None:
                raise ValueError("a poll source needs [api]: the REST endpoint to poll")
        elif self.poll is not None:
            raise ValueError('[poll] is for sources of kind = "poll"')
        if (self.object_id is None) != (self.object_version is None):
            raise ValueError("object_id and object_version go together")
        if self.reconcile is not None:
            if self.kind != "webhook":
                raise ValueError("[reconcile] checks a webhook source's stream")
            if self.api is None:
                raise ValueError("[reconcile] needs [api]: the REST endpoint to check against")
            if self.object_id is None:
                raise ValueError(
                    "[reconcile] needs object_id and object_version: where webhooks name the "
                    "object and its version"
                )
        return self

    @property
    def polling(self) -> PollConfig:
        return self.poll or PollConfig()


class BackoffConfig(_Model):
    """Exponential backoff instead of a schedule: at once, then initial, initial * factor, ...
    each capped at `max`, for `attempts` attempts in all."""

    initial: Duration = 5.0
    factor: float = Field(default=2.0, gt=1)
    max: Duration = 36000.0
    attempts: int = Field(default=8, ge=1, le=1000)

    def schedule(self) -> list[float]:
        delays = [0.0]
        delay = self.initial
        for _ in range(self.attempts - 1):
            delays.append(min(delay, self.max))
            delay = min(delay * self.factor, self.max)  # capped as it grows: no overflow
        return delays


RATE_UNITS = {"s": 1.0, "m": 60.0}


def parse_rate(value: str) -> float:
    """Requests per second from "10/s" or "600/m"."""
    count, sep, unit = value.replace(" ", "").partition("/")
    if not sep or unit not in RATE_UNITS:
        raise ValueError(f"expected N/s or N/m, got {value!r}")
    try:
        rate = float(count) / RATE_UNITS[unit]
    except ValueError:
        raise ValueError(f"expected N/s or N/m, got {value!r}") from None
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError("a rate must be a positive number")
    return rate


# A destination URL's scheme picks its transport; each broker has keys of its own.
TRANSPORTS = {
    "http": "http",
    "https": "http",
    "redis": "redis",
    "rediss": "redis",
    "amqp": "amqp",
    "amqps": "amqp",
    "nats": "nats",
    "tls": "nats",
}
BROKER_KEYS = {
    "redis": ("stream", "maxlen"),
    "amqp": ("exchange", "routing_key"),
    "nats": ("subject",),
}
HTTP_KEYS = (
    "headers",
    "bearer_token",
    "basic_auth",
    "ca_file",
    "client_cert",
    "client_key",
    "proxy",
)
TEMPLATE_FIELDS = ("source", "type")  # what a routing_key or subject template may name


def destination_kind(url: str) -> str:
    """The transport a destination URL names: http, redis, amqp or nats. The error does not
    repeat the URL: it may hold a password."""
    scheme, sep, rest = url.partition("://")
    kind = TRANSPORTS.get(scheme.lower()) if sep else None
    if kind is None or not re.match(r"[^/\s]+", rest):
        raise ValueError(
            "expected an http(s)://, redis(s)://, amqp(s)://, nats:// or tls:// URL with a host "
            "(or an env: or file: reference to one)"
        )
    return kind


def _template(value: str) -> str:
    """Check a routing_key or subject template: only {source} and {type} are filled in."""
    try:
        parts = list(string.Formatter().parse(value))
    except ValueError:
        raise ValueError("unbalanced { or }: the placeholders are {source} and {type}") from None
    for _, name, spec, conversion in parts:
        if name is not None and (name not in TEMPLATE_FIELDS or spec or conversion):
            raise ValueError(f"{{{name}}} is not a placeholder: use {{source}} and {{type}}")
    return value


class DestinationConfig(_Model):
    # http(s)://, or a broker: redis(s)://, amqp(s)://, nats:// or tls:// (NATS JetStream). A
    # secret reference (env:/file:) when it holds a password. Required, unless relay.
    url: str | None = None
    # No URL: deliveries wait for relay clients (`hookyard listen`, the pull API) that ask for
    # them, connecting outward from behind a firewall.
    relay: bool = False
    # whsec_... references for Hookyard's outbound signature; during a rotation list several
    # and every signature is sent.
    secret: str | list[str] | None = None
    headers: dict[str, str] = {}  # static headers; values may be env:/file: references
    bearer_token: str | None = None  # reference; sent as Authorization: Bearer
    basic_auth: str | None = None  # reference to "user:password"
    ca_file: str | None = None  # trust this CA (PEM) for https
    client_cert: str | None = None  # PEM certificate (mTLS); client_key if not in the same file
    client_key: str | None = None
    proxy: str | None = None  # http://host:port; the proxy then enforces egress for names
    timeout: Duration = 30.0
    retry_schedule: list[Duration] = Field(
        default_factory=lambda: [parse_duration(d) for d in DEFAULT_RETRY_SCHEDULE], min_length=1
    )
    backoff: BackoffConfig | None = None
    rate_limit: Annotated[float, BeforeValidator(parse_rate)] | None = None  # "10/s", "600/m"
    ordering: str | None = None  # "source", or "field:<dotted.path>": one in flight per key
    jitter: float = Field(default=0.2, ge=0, le=1)
    retry_after_max: Duration = 3600.0  # how much a 429/503 Retry-After may lengthen a wait
    disable_after: Duration = 5 * 86400.0  # failing continuously this long disables it
    concurrency: int = Field(default=32, ge=1, le=1024)
    egress_allow: list[str] = []  # CIDRs this destination may reach beyond [egress] allow
    # Brokers: a delivery succeeds when the broker confirms it.
    stream: str | None = Field(default=None, min_length=1)  # redis: the stream XADD appends to
    maxlen: int | None = Field(default=None, ge=1)  # redis: trim to about this many (MAXLEN ~)
    exchange: str | None = None  # amqp: the exchange to publish to; "" is the default exchange
    routing_key: str | None = None  # amqp: template, default "{source}.{type}"
    subject: str | None = None  # nats: template, default "hookyard.{source}.{type}"

    @field_validator("routing_key")
    @classmethod
    def _routing_key(cls, value: str | None) -> str | None:
        return None if value is None else _template(value)

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str | None) -> str | None:
        if value is None:
            return None
        sample = _template(value).format(source="s", type="t")
        if any(not token or re.search(r"[\s*>]", token) for token in sample.split(".")):
            raise ValueError(
                "a NATS subject is dot-separated tokens, none empty, without spaces, * or >"
            )
        return value

    def transport_problem(self, kind: str) -> tuple[str, str] | None:
        """The first key that does not fit the transport (`kind` of the URL, or "relay"), and
        why; None when they all fit."""
        for broker, keys in BROKER_KEYS.items():
            for key in keys:
                if broker != kind and getattr(self, key) is not None:
                    return key, f"is for {broker} destinations only; this one is {kind}"
        if kind in BROKER_KEYS:
            for key in HTTP_KEYS:
                if getattr(self, key):
                    return key, (
                        f"is for HTTP destinations; a {kind} destination takes its credentials "
                        "in the url (a secret reference) and TLS from the system CAs"
                    )
        if kind == "redis" and self.stream is None:
            return "stream", "a redis destination needs the stream to XADD to"
        if kind == "amqp" and self.exchange is None:
            return "exchange", (
                'an amqp destination needs the exchange to publish to ("" is the default one)'
            )
        return None

    @field_validator("egress_allow")
    @classmethod
    def _egress(cls, value: list[str]) -> list[str]:
        return _cidrs(value)

    @field_validator("ordering")
    @classmethod
    def _ordering(cls, value: str | None) -> str | None:
        if value is not None and value != "source" and not value.startswith("field:"):
            raise ValueError('expected "source" or "field:<dotted.path>"')
        if value == "field:":
            raise ValueError("field: needs a dotted path into the payload")
        return value

    @model_validator(mode="after")
    def _one_retry_policy(self) -> DestinationConfig:
        if self.backoff is not None and "retry_schedule" in self.model_fields_set:
            raise ValueError("set either retry_schedule or backoff, not both")
        if self.retry_schedule[0] != 0:  # it would be silently ignored
            raise ValueError(
                "retry_schedule starts with the first attempt, which goes at once: make its "
                'first entry "0" (a delay before the first attempt is not supported)'
            )
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("set either bearer_token or basic_auth, not both")
        return self

    def schedule(self) -> list[float]:
        return self.backoff.schedule() if self.backoff is not None else self.retry_schedule

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("env:", "file:")):
            destination_kind(value)  # a reference is checked once resolved (gateway.py)
        return value

    @model_validator(mode="after")
    def _url_or_relay(self) -> DestinationConfig:
        if self.relay and self.url is not None:
            raise ValueError("a relay destination has no url: its clients fetch deliveries")
        if not self.relay and self.url is None:
            raise ValueError("give the destination a url (or relay = true)")
        if self.relay and (self.proxy or self.ca_file or self.client_cert):
            raise ValueError("proxy, ca_file and client_cert are for url destinations")
        return self


Condition = Any  # a scalar (equals) or a table with one of: equals, in, exists


class RouteConfig(_Model):
    source: str
    destination: str | list[str]
    types: list[str] | None = None
    where: dict[str, Condition] = {}

    @property
    def destinations(self) -> list[str]:
        return [self.destination] if isinstance(self.destination, str) else list(self.destination)

    @field_validator("types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:  # it matched every type
            raise ValueError("an empty list matches no type; leave types out to route all")
        return value

    @field_validator("where")
    @classmethod
    def _where(cls, value: dict[str, Any]) -> dict[str, Any]:
        for path, condition in value.items():
            if isinstance(condition, dict) and (
                len(condition) != 1 or next(iter(condition)) not in ("equals", "in", "exists")
            ):
                raise ValueError(
                    f"{path}: a condition table takes exactly one of equals, in, exists"
                )
            if (
                isinstance(condition, dict)
                and "in" in condition
                and not isinstance(condition["in"], list)
            ):
                raise ValueError(f"{path}: `in` takes a list")
        return value


def _cidrs(value: list[str]) -> list[str]:
    for cidr in value:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ValueError(f"{cidr!r} is not an IP network (CIDR like 127.0.0.0/8)") from None
    return value


class EgressConfig(_Model):
    """Outbound connections go only to global addresses unless a CIDR here allows more."""

    allow: list[str] = []

    @field_validator("allow")
    @classmethod
    def _allow(cls, value: list[str]) -> list[str]:
        return _cidrs(value)


class SourceRetention(_Model):
    """A source's own retention; what it leaves unset comes from [retention]."""

    events: Age = None
    payloads: Age = None


class RetentionConfig(_Model):
    """How long things are kept: a duration ("30d") or "forever". Events still waiting for
    delivery are kept whatever their age."""

    events: Age = 90 * 86400.0
    payloads: Age = 30 * 86400.0  # the raw bytes; the event's record stays until `events`
    attempts: Age = 90 * 86400.0  # the delivery history (attempts of waiting deliveries stay)
    rejected: Age = 7 * 86400.0  # on top of server.rejected_log_size
    interval: Duration = Field(default=600.0, ge=1)  # between sweeps
    # PostgreSQL: events are partitioned by this span of time, and a span whose events are all
    # past retention is dropped whole (store/partitions.py).
    partition_span: Duration = Field(default=86400.0, ge=1)

    def for_source(self, own: SourceRetention | None) -> tuple[float | None, float | None]:
        """(events, payloads) ages for a source; a payload never outlives its event."""
        events, payloads = self.events, self.payloads
        if own is not None:
            events = own.events if "events" in own.model_fields_set else events
            payloads = own.payloads if "payloads" in own.model_fields_set else payloads
        if events is not None and (payloads is None or payloads > events):
            payloads = events
        return events, payloads


class WorkerConfig(_Model):
    max_in_flight: int = Field(default=256, ge=1)
    lease: Duration | None = None  # default: the longest destination timeout + 30 s
    poll_interval: Duration = 1.0  # fallback wake-up when no commit signalled new work
    shutdown_grace: Duration = 10.0  # on SIGTERM, how long attempts under way may finish


class Settings(_Model):
    server: ServerConfig = ServerConfig()
    worker: WorkerConfig = WorkerConfig()
    egress: EgressConfig = EgressConfig()
    retention: RetentionConfig = RetentionConfig()
    sources: dict[str, SourceConfig] = {}
    destinations: dict[str, DestinationConfig] = {}
    routes: list[RouteConfig] = []

    @field_validator("sources", "destinations")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"name {name!r} must match {NAME_PATTERN} (it appears in URLs)")
        return value


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536 or not host:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def resolve_secret(reference: str, *, key: str, base_dir: Path) -> str:
    """`env:NAME` -> the variable, `file:PATH` -> the file's stripped contents, else the literal."""
    if reference.startswith("env:"):
        name = reference[4:]
        if name not in os.environ:
            raise ConfigError(key, f"environment variable {name} is not set")
        return os.environ[name]
    if reference.startswith("file:"):
        path = base_dir / reference[5:]
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(key, f"cannot read secret file {path}: {exc.strerror}") from None
    return reference


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """HOOKYARD_SERVER__LISTEN=... -> {"server": {"listen": ...}}.

    Values stay strings (the settings model converts numbers and booleans), except TOML arrays
    and inline tables (`["a", "b"]`, `{ key = 1 }`), which lists and tables need.
    """
    tree: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        value: Any = raw
        if raw.lstrip().startswith(("[", "{")):
            try:
                value = tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError as exc:
                message = f"{name} is not a TOML array or table: {exc}"
                raise ConfigError(".".join(path), message) from None
        node = tree
        for depth, part in enumerate(path[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(".".join(path[: depth + 1]), f"{name} conflicts with a value")
        if isinstance(node.get(path[-1]), dict):
            raise ConfigError(".".join(path), f"{name} conflicts with a table")
        node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError) -> ConfigError:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        message = message.removeprefix("Value error, ")
        problems.append((key, message))
    key, message = problems[0]
    err = ConfigError(key, message)
    err.args = ("\n".join(f"{k}: {m}" for k, m in problems),)
    return err


def load_config(
    path: Path | None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Settings, Path]:
    """Read, merge and validate settings. Returns them and the folder relative paths start from."""
    data: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        base_dir = path.resolve().parent
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError("", f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"{path} is not valid TOML: {exc}") from None
    data = _merge(data, _env_overrides(os.environ if environ is None else environ))
    data = _merge(data, overrides or {})
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise _describe(exc) from None
    if ALERT_SOURCE in settings.sources:
        raise ConfigError(
            f"sources.{ALERT_SOURCE}", "reserved for Hookyard's own alerts; route from it instead"
        )
    for index, route in enumerate(settings.routes):
        if route.source not in settings.sources and route.source != ALERT_SOURCE:
            raise ConfigError(f"routes.{index}.source", f"no source named {route.source!r}")
        for name in route.destinations:
            if name not in settings.destinations:
                raise ConfigError(f"routes.{index}.destination", f"no destination named {name!r}")
    longest = max((d.timeout for d in settings.destinations.values()), default=0.0)
    if settings.worker.lease is not None and settings.worker.lease <= longest:
        # A lease that can run out during an attempt lets the same delivery be claimed again
        # while it is still being sent.
        raise ConfigError(
            "worker.lease",
            f"{settings.worker.lease:g}s must be longer than the longest destination timeout "
            f"({longest:g}s)",
        )
    return settings, base_dir


def database_url(settings: Settings, base_dir: Path) -> str:
    """The database URL, with an env:/file: reference resolved."""
    url = resolve_secret(settings.server.database, key="server.database", base_dir=base_dir)
    if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError("server.database", "the reference does not hold a database URL")
    return url


def redact_url(url: str) -> str:
    """A database URL without its password, for logs and messages (the user name stays: it
    tells which role connects). Destination URLs: redact_destination_url."""
    url = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


def redact_destination_url(url: str) -> str:
    """A destination URL fit to show anywhere: all of its user info and every query value can be
    a credential (a NATS token is the whole user info; some APIs take a key in the query)."""
    parsed = URL(url)
    shown = str(parsed.with_user(None).with_query(None))
    if parsed.user or parsed.password:
        shown = shown.replace("://", "://***@", 1)
    if parsed.query:
        shown += "?" + "&".join(f"{key}=***" for key in parsed.query)
    return shown


def sqlite_path(database: str, base_dir: Path) -> Path:
    """sqlite:///relative/path starts from the config file's folder; sqlite:////abs is absolute."""
    return base_dir / database.removeprefix("sqlite:///")
