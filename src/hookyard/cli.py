"""The `hookyard` command.

Only `serve` opens the database; `check` and `send` read the config file; every other command
is a client of the REST API (`--url` and `--token`, or HOOKYARD_URL and HOOKYARD_TOKEN, or the
config file). Exit codes: 0 success, 1 the operation failed, 2 bad usage or config.
"""

from __future__ import annotations

import json
import mimetypes
import sys
import time
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import click
import httpx

from hookyard import __version__
from hookyard.config import Settings, load_config, parse_listen, resolve_secret
from hookyard.errors import ConfigError, HookyardError
from hookyard.gateway import Gateway
from hookyard.ids import new_id
from hookyard.tokens import read_token_file
from hookyard.verify import SCHEMES
from hookyard.verify import reference as scheme_reference

DEFAULT_CONFIG = Path("hookyard.toml")


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _config_path(value: Path | None) -> Path | None:
    """--config, else ./hookyard.toml when it exists, else no file (defaults and environment)."""
    if value is not None:
        return value
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def _load(config: Path | None, overrides: dict[str, Any] | None = None) -> tuple[Settings, Path]:
    try:
        return load_config(_config_path(config), overrides=overrides)
    except ConfigError as exc:
        _fail(f"invalid configuration\n{exc}", 2)


config_option = click.option(
    "--config",
    "-c",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default: ./hookyard.toml if present).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hookyard")
def main() -> None:
    """Hookyard: receive webhooks reliably, deliver them reliably, keep them all.

    Start with `hookyard serve --config hookyard.toml`; see README.md for a walk-through.
    """


@main.command()
@config_option
@click.option("--listen", help="HOST:PORT to listen on (default 127.0.0.1:8787).")
@click.option(
    "--database",
    help="Database URL: sqlite:///PATH (default sqlite:///hookyard.db beside the config) or "
    "postgresql://USER@HOST:PORT/DATABASE.",
)
@click.option(
    "--roles",
    help="Comma-separated roles of this process: ingest, api, worker, poller (default: all). "
    "Processes sharing a PostgreSQL database can split them.",
)
def serve(config: Path | None, listen: str | None, database: str | None, roles: str | None) -> None:
    """Run the gateway: ingest, API, delivery worker and REST poller (by default all in one
    process).

    SIGHUP reloads the config file (an invalid file is refused and the running one kept);
    SIGTERM stops gracefully.
    """
    from hookyard.runtime import run

    server: dict[str, Any] = {}
    if listen:
        server["listen"] = listen
    if database:
        server["database"] = database
    if roles:
        server["roles"] = [role.strip() for role in roles.split(",") if role.strip()]
    overrides = {"server": server} if server else {}
    _load(config, overrides)  # report config errors with exit code 2 before starting
    try:
        run(_config_path(config), overrides)
    except ConfigError as exc:
        _fail(f"invalid configuration\n{exc}", 2)
    except HookyardError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot start: {exc}")


@main.command()
@config_option
@click.option("--database", help="Database URL (default: from the config).")
@click.option("--dry-run", is_flag=True, help="Only show the schema version and what would run.")
def migrate(config: Path | None, database: str | None, dry_run: bool) -> None:
    """Bring the database schema up to this version of Hookyard.

    `hookyard serve` does this at start unless `server.auto_migrate = false`; run it yourself
    before rolling out a new version to several processes (see docs/deployment.md). Safe to run
    while other processes are up, and more than once.
    """
    from hookyard.config import database_url, redact_url
    from hookyard.store import migration_connection
    from hookyard.store.migrate import SCHEMA_VERSION, plan
    from hookyard.store.migrate import migrate as apply

    settings, base_dir = _load(config, {"server": {"database": database}} if database else None)
    try:
        url = database_url(settings, base_dir)
        shown = redact_url(url)
        with migration_connection(url, base_dir) as conn:
            steps = plan(conn)
            before = "empty" if steps.before is None else f"version {steps.before}"
            if not steps.scripts:
                click.echo(f"{shown}: schema version {SCHEMA_VERSION}, up to date")
            elif dry_run:
                pending = ", ".join(str(n) for n in steps.pending)
                versions = "version" if len(steps.pending) == 1 else "versions"
                click.echo(f"{shown}: schema {before}; would apply {versions} {pending}")
            else:
                apply(conn)
                click.echo(f"{shown}: schema {before} -> version {SCHEMA_VERSION}")
    except ConfigError as exc:
        _fail(f"invalid configuration\n{exc}", 2)
    except HookyardError as exc:
        _fail(str(exc))


@main.command()
@config_option
def check(config: Path | None) -> None:
    """Validate a config file: every key, route and secret reference."""
    settings, base_dir = _load(config)
    try:
        gateway = Gateway.build(settings, base_dir)
    except ConfigError as exc:
        _fail(f"invalid configuration\n{exc}", 2)
    for warning in gateway.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"ok: {len(settings.sources)} sources, {len(settings.destinations)} destinations, "
        f"{len(settings.routes)} routes"
    )


@main.command()
@click.argument("name", required=False)
def schemes(name: str | None) -> None:
    """The built-in verification schemes, one a line; with NAME, that scheme's reference:
    what it checks, its secrets and options, and a config snippet (docs/providers.md)."""
    if name is None:
        click.echo(scheme_reference.listing(), nl=False)
        return
    if name not in SCHEMES:
        _fail(f"unknown scheme {name!r}; the built-in schemes are: {', '.join(SCHEMES)}", 2)
    click.echo(scheme_reference.section(name), nl=False)


@main.command()
@config_option
@click.argument("source")
@click.argument("file", type=click.File("rb"))
@click.option("--url", envvar="HOOKYARD_URL", help="Server base URL (default: from the config).")
@click.option("--content-type", help="Content type (default: guessed from the file name).")
@click.option("--header", "-H", "headers", multiple=True, help="Extra header, 'Name: value'.")
def send(
    config: Path | None,
    source: str,
    file: Any,
    url: str | None,
    content_type: str | None,
    headers: tuple[str, ...],
) -> None:
    """Sign FILE as SOURCE's provider would and POST it to /in/SOURCE.

    FILE may be - for standard input. Useful to try a config, and in tests.
    """
    settings, base_dir = _load(config)
    try:
        gateway = Gateway.build(settings, base_dir)
    except ConfigError as exc:
        _fail(f"invalid configuration\n{exc}", 2)
    if source not in gateway.sources:
        _fail(f"no source named {source!r} in the config", 2)
    body = file.read()
    target = f"{_base_url(url, settings)}/in/{source}"
    name = getattr(file, "name", "")
    guessed = mimetypes.guess_type(name)[0] if name and name != "<stdin>" else None
    request_headers = {"content-type": content_type or guessed or "application/json"}
    for item in headers:
        key, sep, value = item.partition(":")
        if not sep:
            _fail(f"--header takes 'Name: value', got {item!r}", 2)
        request_headers[key.strip()] = value.strip()
    request_headers.update(
        gateway.sources[source].verifier.sign(
            body, url=target, timestamp=int(time.time()), message_id=new_id("msg")
        )
    )
    try:
        response = httpx.post(target, content=body, headers=request_headers, timeout=30)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach {target}: {exc}")
    click.echo(f"{response.status_code} {response.text}")
    sys.exit(0 if response.is_success else 1)


# -- API clients --------------------------------------------------------------------------------


def _base_url(url: str | None, settings: Settings | None) -> str:
    if url:
        return url.rstrip("/")
    listen = settings.server.listen if settings else "127.0.0.1:8787"
    scheme = "https" if settings and settings.server.tls_cert else "http"
    host, port = parse_listen(listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def segment(value: str) -> str:
    """A name or id as one path segment of an API URL: "/", "?" or ".." cannot reach another
    endpoint."""
    return quote(value, safe="")


class Api:
    def __init__(self, url: str | None, token: str | None, config: Path | None) -> None:
        settings: Settings | None = None
        base_dir = Path.cwd()
        path = _config_path(config)
        if path is not None or not (url and token):
            settings, base_dir = _load(config)
        self.url = _base_url(url, settings)
        if token is None and settings is not None:
            if settings.server.admin_token:
                try:
                    token = resolve_secret(
                        settings.server.admin_token, key="server.admin_token", base_dir=base_dir
                    )
                except ConfigError as exc:
                    _fail(str(exc), 2)
            else:
                token = read_token_file(base_dir / settings.server.token_file)
        if not token:
            _fail(
                "no API token: pass --token, set HOOKYARD_TOKEN, or use --config with the "
                "config whose server wrote the token file",
                2,
            )
        self.client = httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {token}"}, timeout=30
        )

    def get(self, path: str, params: Any = None) -> Any:
        return self._call("GET", path, params=params)

    def post(self, path: str, body: Any = None, params: Any = None) -> Any:
        return self._call("POST", path, json=body, params=params)

    def delete(self, path: str) -> Any:
        return self._call("DELETE", path)

    def _call(self, method: str, path: str, **request: Any) -> Any:
        try:
            response = self.client.request(method, path, **request)
        except httpx.HTTPError as exc:
            _fail(f"cannot reach {self.url}: {exc}")
        if not response.is_success:
            _refused(response)
        return response


def _refused(response: httpx.Response) -> NoReturn:
    """Exit with the API's message: code 2 for a request it refused as invalid, else 1."""
    try:
        message = response.json().get("message", response.text)
    except (ValueError, AttributeError):  # not JSON, or not an object
        message = response.text
    _fail(f"{response.status_code}: {message}", 2 if response.status_code == 422 else 1)


def api_options(fn: Any) -> Any:
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(fn)
    fn = click.option("--token", envvar="HOOKYARD_TOKEN", help="API token.")(fn)
    fn = click.option("--url", envvar="HOOKYARD_URL", help="Server base URL.")(fn)
    return config_option(fn)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@main.group()
def events() -> None:
    """List, inspect, replay, export and import events."""


def filter_options(fn: Any) -> Any:
    """The event filters, shared by list, replay and export."""
    for option in reversed(
        [
            click.option("--source", help="Only this source."),
            click.option("--type", "type_", help="Event type glob, e.g. 'invoice.*'."),
            click.option("--origin", help="webhook, poll, reconcile, backfill, publish, ..."),
            click.option("--status", help="Events with a delivery in this status (dead, ...)."),
            click.option("--destination", help="Events with a delivery to this destination."),
            click.option("--since", help="Received at or after (ISO 8601 or unix seconds)."),
            click.option("--until", help="Received before (ISO 8601 or unix seconds)."),
            click.option("--provider-event-id", help="The provider's event id."),
            click.option(
                "--field",
                "fields",
                multiple=True,
                metavar="PATH=VALUE",
                help="A JSON payload field equals VALUE (repeatable), e.g. data.status=paid.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


QueryParams = list[tuple[str, str | int | float | bool | None]]


def filter_params(filters: dict[str, Any]) -> QueryParams:
    """Query parameters for the filter options (field.<path> for each --field)."""
    params: QueryParams = [
        ("type" if key == "type_" else key, str(value))
        for key, value in filters.items()
        if value is not None and key != "fields"
    ]
    for item in filters.get("fields", ()):
        path, sep, value = item.partition("=")
        if not sep or not path:
            _fail(f"--field takes PATH=VALUE, got {item!r}", 2)
        params.append((f"field.{path}", value))
    return params


@events.command("list")
@api_options
@filter_options
@click.option("--order", type=click.Choice(["asc", "desc"]), default="desc", show_default=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="Continue after this cursor (printed with each page).")
def events_list(
    config: Path | None,
    url: str | None,
    token: str | None,
    as_json: bool,
    order: str,
    limit: int,
    cursor: str | None,
    **filters: Any,
) -> None:
    """List events, newest first."""
    params = [*filter_params(filters), ("order", order), ("limit", str(limit))]
    if cursor:
        params.append(("cursor", cursor))
    page = Api(url, token, config).get("/api/v1/events", params=params).json()
    if as_json:
        click.echo(json.dumps(page))
        return
    _table(page["data"], ["id", "received_at", "source", "event_type", "payload_size"])
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}")


@events.command("show")
@api_options
@click.argument("event_id")
@click.option("--raw", is_flag=True, help="Print the payload bytes exactly as received.")
def events_show(
    config: Path | None,
    url: str | None,
    token: str | None,
    as_json: bool,
    event_id: str,
    raw: bool,
) -> None:
    """Show one event with its deliveries and attempts."""
    api = Api(url, token, config)
    if raw:
        sys.stdout.buffer.write(api.get(f"/api/v1/events/{segment(event_id)}/raw").content)
        return
    event = api.get(f"/api/v1/events/{segment(event_id)}").json()
    if as_json:
        click.echo(json.dumps(event))
        return
    for key in (
        "id",
        "source",
        "origin",
        "received_at",
        "event_type",
        "provider_event_id",
        "content_type",
        "payload_size",
    ):
        click.echo(f"{key + ':':<19}{'' if event[key] is None else event[key]}")
    click.echo("deliveries:")
    for delivery in event["deliveries"]:
        click.echo(
            f"  {delivery['id']}  {delivery['destination']}  {delivery['status']}  "
            f"attempts={delivery['attempts']}"
        )
        for attempt in delivery["attempt_log"]:
            # A broker's confirmation has no status code: its excerpt says what it answered.
            result = attempt["status_code"] or attempt["error"] or attempt["response_excerpt"]
            click.echo(
                f"    #{attempt['number']} {attempt['started_at']}  {result}  "
                f"{attempt['duration_ms']:.1f} ms"
            )


@main.group()
def destinations() -> None:
    """List destinations; pause, resume, re-enable them; retry their dead deliveries."""


@destinations.command("list")
@api_options
def destinations_list(
    config: Path | None, url: str | None, token: str | None, as_json: bool
) -> None:
    """Destinations with their state (active, paused, disabled)."""
    rows = Api(url, token, config).get("/api/v1/destinations").json()
    if as_json:
        click.echo(json.dumps(rows))
        return
    _table(rows, ["name", "state", "url", "reason"])


def _destination_action(action: str, help_text: str) -> None:
    @destinations.command(action, help=help_text)
    @api_options
    @click.argument("name")
    def command(
        config: Path | None, url: str | None, token: str | None, as_json: bool, name: str
    ) -> None:
        result = (
            Api(url, token, config).post(f"/api/v1/destinations/{segment(name)}/{action}").json()
        )
        if as_json:
            click.echo(json.dumps(result))
        elif "retried" in result:
            click.echo(f"{name}: {result['retried']} dead deliveries scheduled again")
        else:
            note = "" if result["changed"] else " (unchanged)"
            click.echo(f"{name}: {result['state']}{note}")


_destination_action("pause", "Hold NAME's deliveries until it is resumed (nothing is dropped).")
_destination_action("resume", "Deliver to NAME again, at its pace.")
_destination_action("enable", "Re-enable NAME after it was disabled (410 or failing too long).")
_destination_action("retry-dead", "Give NAME's dead deliveries a fresh schedule, due now.")


@events.command("replay")
@api_options
@click.argument("event_id", required=False)
@filter_options
@click.option("--to", help="Replay to this destination instead of the earlier ones.")
@click.option("--dry-run", is_flag=True, help="Only count the matching events.")
@click.option("--yes", is_flag=True, help="Do not ask before replaying many events.")
@click.option(
    "--after", help="Go on after this event id (a stopped replay prints where it stopped)."
)
def events_replay(
    config: Path | None,
    url: str | None,
    token: str | None,
    as_json: bool,
    event_id: str | None,
    to: str | None,
    dry_run: bool,
    yes: bool,
    after: str | None,
    **filters: Any,
) -> None:
    """Deliver EVENT_ID again, or every event matching the filters (same webhook-id)."""
    api = Api(url, token, config)
    if event_id:
        if any(value for value in filters.values()) or after:
            raise click.UsageError("give an EVENT_ID or filters, not both")
        if dry_run:  # nothing is sent: say whether the event is there
            api.get(f"/api/v1/events/{segment(event_id)}")
            click.echo(json.dumps({"matched": 1}) if as_json else "1 events match")
            return
        params = {"destination": to} if to else None
        path = f"/api/v1/events/{segment(event_id)}/replay"
        result = api.post(path, params=params).json()
        click.echo(
            json.dumps(result) if as_json else f"{event_id}: {result['deliveries']} new deliveries"
        )
        return
    body: dict[str, Any] = {"to": to}
    for key, value in filter_params(filters):
        if key.startswith("field."):
            body.setdefault("fields", {})[key[6:]] = value
        else:
            body[key] = value
    # The events that match now: under steady ingest, new ones would keep the replay going
    # beyond the count it asked to confirm.
    body.setdefault("until", f"{time.time():.3f}")
    matched = api.post("/api/v1/events/replay", {**body, "dry_run": True}).json()["matched"]
    if dry_run or matched == 0:
        click.echo(json.dumps({"matched": matched}) if as_json else f"{matched} events match")
        return
    if not yes and not as_json:
        click.confirm(f"Replay {matched} events?", abort=True)
    cursor, replayed, created = after, 0, 0
    with click.progressbar(length=matched, label="replaying", file=sys.stderr) as bar:
        while True:
            try:
                page = api.post("/api/v1/events/replay", {**body, "cursor": cursor}).json()
            except SystemExit:  # the error is printed; say how to go on without repeats
                if cursor is not None:
                    click.echo(f"stopped: to go on, run it again with --after {cursor}", err=True)
                raise
            replayed += page["replayed"]
            created += page["deliveries"]
            bar.update(page["replayed"] + page["skipped"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
    summary = {"matched": matched, "replayed": replayed, "deliveries": created}
    click.echo(
        json.dumps(summary) if as_json else f"{replayed} events replayed, {created} new deliveries"
    )


@main.group()
def deliveries() -> None:
    """List deliveries and retry one."""


@deliveries.command("list")
@api_options
@click.option("--status", help="pending, in_flight, retrying, held, succeeded or dead.")
@click.option("--destination", help="Only this destination.")
@click.option("--event", "event_id", help="Only this event's deliveries.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="Continue after this cursor.")
def deliveries_list(
    config: Path | None, url: str | None, token: str | None, as_json: bool, **filters: Any
) -> None:
    """Deliveries, newest first."""
    params = {k: v for k, v in filters.items() if v is not None}
    page = Api(url, token, config).get("/api/v1/deliveries", params=params).json()
    if as_json:
        click.echo(json.dumps(page))
        return
    _table(page["data"], ["id", "event_id", "destination", "status", "attempts", "last_error"])
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}")


@deliveries.command("retry")
@api_options
@click.argument("delivery_id")
def deliveries_retry(
    config: Path | None, url: str | None, token: str | None, as_json: bool, delivery_id: str
) -> None:
    """Try a dead or retrying delivery again now."""
    row = Api(url, token, config).post(f"/api/v1/deliveries/{segment(delivery_id)}/retry").json()
    click.echo(json.dumps(row) if as_json else f"{delivery_id}: {row['status']}")


@main.group()
def tokens() -> None:
    """Create, list and revoke API tokens (admin, read, publish:SOURCE, relay:DESTINATION)."""


@tokens.command("create")
@api_options
@click.option("--name", required=True, help="Who or what will use it.")
@click.option("--scope", required=True, help="admin, read, publish:SOURCE or relay:DESTINATION.")
def tokens_create(
    config: Path | None, url: str | None, token: str | None, as_json: bool, name: str, scope: str
) -> None:
    """Create a token. It is printed once; Hookyard keeps only its hash."""
    made = Api(url, token, config).post("/api/v1/tokens", {"name": name, "scope": scope}).json()
    if as_json:
        click.echo(json.dumps(made))
        return
    click.echo(f"created {made['id']} ({made['scope']}); the token, shown only now:")
    click.echo(made["token"])


@tokens.command("list")
@api_options
def tokens_list(config: Path | None, url: str | None, token: str | None, as_json: bool) -> None:
    """Every token with its scope (never the token itself)."""
    rows = Api(url, token, config).get("/api/v1/tokens").json()
    if as_json:
        click.echo(json.dumps(rows))
        return
    _table(rows, ["id", "name", "scope", "created_at", "revoked_at"])


@tokens.command("revoke")
@api_options
@click.argument("token_id")
def tokens_revoke(
    config: Path | None, url: str | None, token: str | None, as_json: bool, token_id: str
) -> None:
    """Revoke TOKEN_ID; requests carrying it are refused from now on."""
    Api(url, token, config).delete(f"/api/v1/tokens/{segment(token_id)}")
    click.echo(json.dumps({"revoked": token_id}) if as_json else f"revoked {token_id}")


@main.command()
@api_options
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
def audit(
    config: Path | None, url: str | None, token: str | None, as_json: bool, limit: int
) -> None:
    """Administrative actions, newest first: who, what, when."""
    page = Api(url, token, config).get("/api/v1/audit", params={"limit": limit}).json()
    if as_json:
        click.echo(json.dumps(page))
        return
    _table(page["data"], ["at", "token_name", "action", "target"])


@events.command("export")
@api_options
@filter_options
@click.option("--output", "-o", type=click.File("wb"), default="-", help="File (default stdout).")
def events_export(
    config: Path | None,
    url: str | None,
    token: str | None,
    as_json: bool,
    output: Any,
    **filters: Any,
) -> None:
    """Stream matching events as NDJSON, bodies base64-encoded (lossless), oldest first."""
    api = Api(url, token, config)
    lines = 0
    try:
        with api.client.stream(
            "GET", "/api/v1/events/export", params=filter_params(filters)
        ) as response:
            if not response.is_success:
                response.read()
                _refused(response)
            for chunk in response.iter_bytes():
                output.write(chunk)
                lines += chunk.count(b"\n")
    except httpx.HTTPError as exc:
        _fail(f"cannot reach {api.url}: {exc}")
    click.echo(f"exported {lines} events", err=True)


@events.command("import")
@api_options
@click.argument("file", type=click.File("rb"))
def events_import(
    config: Path | None, url: str | None, token: str | None, as_json: bool, file: Any
) -> None:
    """Load an NDJSON export (events already present are skipped; no deliveries are made)."""
    api = Api(url, token, config)

    def chunks() -> Any:
        while block := file.read(1 << 20):
            yield block

    try:
        response = api.client.post(
            "/api/v1/events/import",
            content=chunks(),
            headers={"content-type": "application/x-ndjson"},
            timeout=None,
        )
    except httpx.HTTPError as exc:
        _fail(f"cannot reach {api.url}: {exc}")
    if not response.is_success:
        _fail(f"{response.status_code}: {response.json().get('message', response.text)}")
    result = response.json()
    click.echo(
        json.dumps(result)
        if as_json
        else f"imported {result['imported']} events, skipped {result['skipped']} already here"
    )


@main.group()
def rejected() -> None:
    """The sampled log of rejected requests, with the reason for each."""


@rejected.command("list")
@api_options
@click.option("--source", help="Only this source ('(unknown)' for paths naming none).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="Continue after this cursor.")
def rejected_list(
    config: Path | None, url: str | None, token: str | None, as_json: bool, **filters: Any
) -> None:
    """Rejected requests, newest first: status, reason, path."""
    params = {k: v for k, v in filters.items() if v is not None}
    page = Api(url, token, config).get("/api/v1/rejected", params=params).json()
    if as_json:
        click.echo(json.dumps(page))
        return
    _table(page["data"], ["received_at", "source", "status", "code", "reason"])
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}")


# The REST side and the simulator live in their own modules; registered here.
from hookyard.cli_retention import retention  # noqa: E402
from hookyard.cli_sources import backfill, events_current, listen, sources  # noqa: E402
from hookyard.demo import demo  # noqa: E402
from hookyard.simulator.cli import simulate  # noqa: E402

main.add_command(sources)
main.add_command(backfill)
main.add_command(simulate)
main.add_command(demo)
main.add_command(listen)
main.add_command(retention)
events.add_command(events_current)
