"""`hookyard simulate`: run the provider simulator in the foreground until Ctrl-C."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from hookyard.simulator import Simulator
from hookyard.simulator._types import DEFAULT_SECRET, Auth, SimulatorOptions

AUTH_FORMS = {
    "bearer": "bearer:TOKEN",
    "basic": "basic:USER:PASSWORD",
    "header": "header:NAME:TOKEN",
    "query": "query:NAME:TOKEN",
    "oauth2": "oauth2:CLIENT_ID:CLIENT_SECRET",
}


FC = TypeVar("FC", bound=Callable[..., object])


def parse_auth(spec: str, token_ttl: float = 3600) -> Auth:
    """`bearer:TOKEN`, `basic:USER:PASSWORD`, `header:NAME:TOKEN`, `query:NAME:TOKEN` or
    `oauth2:CLIENT_ID:CLIENT_SECRET`; the last part may itself contain colons."""
    kind, _, rest = spec.partition(":")
    if kind not in AUTH_FORMS:
        raise ValueError(f"unknown kind {kind!r}: use one of {', '.join(AUTH_FORMS.values())}")
    if kind == "bearer":
        if not rest:
            raise ValueError(f"expected {AUTH_FORMS[kind]}")
        return Auth("bearer", token=rest)
    first, sep, second = rest.partition(":")
    if not first or not sep:
        raise ValueError(f"expected {AUTH_FORMS[kind]}")
    if kind == "header":
        return Auth("header", name=first, token=second)
    if kind == "query":
        return Auth("query", name=first, token=second)
    if kind == "basic":
        return Auth("basic", username=first, password=second)
    return Auth("oauth2", username=first, password=second, token_ttl=token_ttl)


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _fraction(name: str, help: str) -> Callable[[FC], FC]:
    return click.option(
        f"--{name}", type=click.FloatRange(0, 1), default=0.0, show_default=True, help=help
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--listen",
    default="127.0.0.1:9100",
    show_default=True,
    help="HOST:PORT to serve on (port 0: any free port).",
)
@click.option(
    "--objects",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Objects to create before serving (no webhooks for them).",
)
@click.option("--object-type", default="order", show_default=True, help="Objects' type name.")
@click.option("--webhook-url", metavar="URL", help="POST a signed webhook for every change here.")
@click.option(
    "--secret",
    default=DEFAULT_SECRET,
    show_default=True,
    help="Standard Webhooks signing secret (whsec_ + base64).",
)
@_fraction("drop", "Fraction of webhooks never sent.")
@_fraction("duplicate", "Fraction of webhooks sent twice with the same webhook-id.")
@_fraction("reorder", "Fraction of webhooks held back until the next one was sent.")
@click.option(
    "--delay",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Delay each webhook by a random 0..SECONDS.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Retry a webhook the receiver refused or did not answer, 1 s apart.",
)
@click.option(
    "--changes-per-second",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Random creates/updates/deletes per second (0: only those made through /_sim).",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(min=1),
    metavar="CALLS",
    help="API calls allowed per --rate-window; more are answered 429.  [default: unlimited]",
)
@click.option(
    "--rate-window",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Length of the rate limit's fixed window.",
)
@click.option(
    "--auth",
    "auth_spec",
    metavar="KIND:...",
    help="Credentials the API requires: " + ", ".join(AUTH_FORMS.values()) + ".  [default: none]",
)
@click.option(
    "--token-ttl",
    type=click.FloatRange(min=0, min_open=True),
    default=3600.0,
    show_default=True,
    metavar="SECONDS",
    help="Lifetime of OAuth2 access tokens.",
)
@click.option(
    "--page-size",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Page size when the client does not ask (limit / per_page).",
)
@click.option(
    "--max-page-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Largest page a client may ask for; more is a 400.",
)
@click.option(
    "--clock-skew",
    type=float,
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Added to the clock that dates changes (an API whose clock differs from yours).",
)
@click.option("--no-etag", is_flag=True, help="No ETag/Last-Modified, never 304.")
@click.option("--seed", type=int, help="Seed every random choice, for a reproducible run.")
def simulate(
    listen: str,
    objects: int,
    object_type: str,
    webhook_url: str | None,
    secret: str,
    drop: float,
    duplicate: float,
    reorder: float,
    delay: float,
    retries: int,
    changes_per_second: float,
    rate_limit: int | None,
    rate_window: float,
    auth_spec: str | None,
    token_ttl: float,
    page_size: int,
    max_page_size: int,
    clock_skew: float,
    no_etag: bool,
    seed: int | None,
) -> None:
    """Run a simulated SaaS provider: a REST API to poll and webhooks for every change.

    Objects are listed sorted by (updated_at, id); every list accepts updated_since (inclusive)
    and updated_until (exclusive) as ISO 8601 or unix seconds.

    \b
      GET /cursor/objects?limit=N&cursor=C    keyset cursor: next_cursor, has_more
      GET /page/objects?page=P&per_page=N     page numbers: total_pages, total
      GET /offset/objects?offset=O&limit=N    offsets: total
      GET /link/objects?page=P&per_page=N     bare array, Link: <...>; rel="next"
      GET /next/objects?page=P&per_page=N     {"results": [...], "next": URL | null}
      GET /objects/ID
      POST /oauth/token                       with --auth oauth2:...
    \b
    Control, without auth or rate limit:
      POST /_sim/objects   PATCH|DELETE /_sim/objects/ID
      POST /_sim/mutate?count=N   GET /_sim/stats

    Prints one line per change; runs until Ctrl-C.
    """
    host, port = _listen(listen)
    auth = None
    if auth_spec is not None:
        try:
            auth = parse_auth(auth_spec, token_ttl)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--auth") from None
    try:
        options = SimulatorOptions(
            page_size=page_size,
            max_page_size=max_page_size,
            auth=auth,
            rate_limit=rate_limit,
            rate_window=rate_window,
            etag=not no_etag,
            clock_skew=clock_skew,
            webhook_url=webhook_url,
            webhook_secret=secret,
            drop=drop,
            duplicate=duplicate,
            reorder=reorder,
            delay=delay,
            webhook_retries=retries,
            seed=seed,
            object_type=object_type,
        )
        sim = Simulator(options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        asyncio.run(_serve(sim, host, port, objects, changes_per_second))
    except KeyboardInterrupt:
        click.echo("stopped")


async def _serve(sim: Simulator, host: str, port: int, objects: int, per_second: float) -> None:
    try:
        url = await sim.start(host, port)
        sim.seed(objects)
        options = sim.options
        click.echo(f"simulator listening on {url} ({objects} {options.object_type}s)")
        if options.auth is not None:
            click.echo(f"auth: {options.auth.kind}")
        if options.webhook_url is not None:
            click.echo(f"webhooks to {options.webhook_url}")
        sim._on_change = _printer(sim)
        if per_second <= 0:
            await asyncio.Event().wait()  # changes come only through /_sim
        started, done = time.monotonic(), 0
        while True:
            due = int((time.monotonic() - started) * per_second) - done
            sim.mutate(due)
            done += due
            await asyncio.sleep(max(0.0, (done + 1) / per_second - (time.monotonic() - started)))
    finally:
        await sim.stop()


def _printer(sim: Simulator) -> Callable[[str, dict[str, Any]], None]:
    """One line per change, the automatic ones and those made through /_sim alike."""
    dropped = len(sim.stats.webhooks_dropped)

    def show(change: str, obj: dict[str, Any]) -> None:
        nonlocal dropped
        line = f"{obj['updated_at']} {change:<8} {obj['id']} v{obj['version']}"
        if len(sim.stats.webhooks_dropped) > dropped:
            dropped = len(sim.stats.webhooks_dropped)
            line += "  (webhook dropped)"
        click.echo(line)

    return show
