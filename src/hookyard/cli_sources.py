"""`hookyard sources ...` and `hookyard backfill`: the REST side from the command line, as a
client of the API like the rest of the CLI (cli.py registers these commands)."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from hookyard.cli import Api, _table, api_options, segment
from hookyard.relay.listen import Listener, run_listener

PROGRESS_EVERY = 0.5  # seconds between looks at a backfill's progress


@click.group()
def sources() -> None:
    """Sources with their REST jobs (poll, reconcile, backfill) and the API calls they cost."""


def _job_line(job: dict[str, Any]) -> str:
    state = "running" if job["running"] else f"next {job['next_run_at'] or '-'}"
    error = f"  error: {job['last_error']}" if job["last_error"] else ""
    skips = job.get("skipped")  # absent from servers older than the count
    skipped = f", {skips} malformed items skipped (all runs; see the log)" if skips else ""
    return (
        f"{job['job']}: {state}, last success {job['last_success_at'] or 'never'}, "
        f"{job['emitted']} emitted of {job['checked']} checked{skipped}{error}"
    )


@sources.command("list")
@api_options
def sources_list(config: Path | None, url: str | None, token: str | None, as_json: bool) -> None:
    """Configured sources: kind, routes, REST jobs and today's API calls."""
    rows = Api(url, token, config).get("/api/v1/sources").json()
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        row["destinations"] = ",".join(row["destinations"])
        row["jobs"] = ", ".join(
            f"{j['job']}{' (failing)' if j['failures'] else ''}" for j in row["jobs"]
        )
        today = row["api_calls_today"]
        row["calls_today"] = f"{today['calls']} ({today['not_modified']} 304)" if today else ""
    _table(rows, ["name", "kind", "verify", "destinations", "jobs", "calls_today"])


@sources.command("show")
@api_options
@click.argument("name")
def sources_show(
    config: Path | None, url: str | None, token: str | None, as_json: bool, name: str
) -> None:
    """One source: each REST job's last run, error and next run; API calls per day."""
    source = Api(url, token, config).get(f"/api/v1/sources/{segment(name)}").json()
    if as_json:
        click.echo(json.dumps(source))
        return
    click.echo(f"{source['name']} ({source['kind']}) -> {', '.join(source['destinations'])}")
    for job in source["jobs"]:
        click.echo("  " + _job_line(job))
    if source["api_calls"]:
        click.echo("API calls per day (304s: conditional requests that saved the work):")
        for day in source["api_calls"]:
            click.echo(f"  {day['day']}  {day['calls']:>8} calls  {day['not_modified']:>8} 304s")


def _run_now(job: str) -> None:
    @sources.command(job, help=f"Run NAME's {job} now instead of at its next scheduled time.")
    @api_options
    @click.argument("name")
    def command(
        config: Path | None, url: str | None, token: str | None, as_json: bool, name: str
    ) -> None:
        result = Api(url, token, config).post(f"/api/v1/sources/{segment(name)}/{job}").json()
        click.echo(json.dumps(result) if as_json else f"{name}: {job} started")


_run_now("poll")
_run_now("reconcile")


def _utc(value: datetime | None) -> str | None:
    """A naive date or time is UTC."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


TIME = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"])


@click.command()
@api_options
@click.argument("source")
@click.option("--since", type=TIME, required=True, help="Start of the history (UTC), 2026-01-31.")
@click.option("--until", type=TIME, help="End of the history (UTC; default: now).")
@click.option("--detach", is_flag=True, help="Start it and return; follow with `sources show`.")
def backfill(
    config: Path | None,
    url: str | None,
    token: str | None,
    as_json: bool,
    source: str,
    since: datetime,
    until: datetime | None,
    detach: bool,
) -> None:
    """Emit SOURCE's history through its REST API as events with origin `backfill`.

    Versions stored within the dedup window (by webhook, poll or an earlier backfill; [server]
    dedup_window, 7 days by default) are skipped; older ones are emitted again. The server
    runs it: Ctrl-C here leaves it running, and the same command again follows it (or resumes
    it, after a restart, from the page where it stopped).
    """
    api = Api(url, token, config)
    body = {"since": _utc(since), "until": _utc(until)}
    api.post(f"/api/v1/sources/{segment(source)}/backfill", body)
    if detach:
        click.echo(json.dumps({"source": source, "state": "started"}) if as_json else "started")
        return
    try:
        status = _follow(api, source, quiet=as_json)
    except KeyboardInterrupt:
        click.echo("\nstill running on the server; the same command follows it again", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(status))
    progress = status["progress"] or {}
    click.echo(
        f"backfill of {source} done: {progress.get('items', 0)} items in "
        f"{progress.get('pages', 0)} pages, {status['emitted']} new events "
        f"({progress.get('items', 0) - status['emitted']} already stored)",
        err=as_json,
    )


def _follow(api: Api, source: str, *, quiet: bool) -> dict[str, Any]:
    """Wait for the backfill to finish, drawing its progress (items of the total, when the
    API says how many there are; else pages and items so far)."""
    bar: Any = None
    shown = 0
    last_error = None
    started = time.monotonic()
    try:
        while True:
            status: dict[str, Any] = api.get(f"/api/v1/sources/{segment(source)}/backfill").json()
            progress = status["progress"] or {}
            items = progress.get("items") or 0
            if status["last_error"] and status["last_error"] != last_error:
                last_error = status["last_error"]
                click.echo(f"\nretrying after an error: {last_error}", err=True)
            if not quiet:
                total = progress.get("total")
                if total and bar is None:
                    bar = click.progressbar(
                        length=total, label=f"backfill {source}", file=sys.stderr
                    )
                    bar.__enter__()
                if bar is not None:
                    bar.update(max(0, min(items, total or items) - shown))
                    shown = max(shown, items)
                else:
                    elapsed = time.monotonic() - started
                    click.echo(
                        f"\rbackfill {source}: {progress.get('pages', 0)} pages, {items} items,"
                        f" {status['emitted']} new events ({elapsed:.0f}s)",
                        nl=False,
                        err=True,
                    )
            if progress.get("done"):
                return status
            time.sleep(PROGRESS_EVERY)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
        elif not quiet:
            click.echo("", err=True)


@click.command("current")
@api_options
@click.argument("event_id")
def events_current(
    config: Path | None, url: str | None, token: str | None, as_json: bool, event_id: str
) -> None:
    """Print the event's object as the source's REST API returns it now ([api] object_url)."""
    response = Api(url, token, config).get(f"/api/v1/events/{segment(event_id)}/current")
    sys.stdout.buffer.write(response.content + (b"" if response.content.endswith(b"\n") else b"\n"))


@click.command()
@api_options
@click.argument("destination")
@click.option(
    "--forward",
    required=True,
    metavar="URL",
    help="The local receiver: http://localhost:3000/hooks.",
)
@click.option(
    "--streams",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Streams (or lease loops) at once; deliveries in flight: streams x max.",
)
@click.option(
    "--max",
    "max_",
    type=click.IntRange(1, 100),
    default=10,
    show_default=True,
    help="Unreported deliveries per stream (per lease call with --transport poll).",
)
@click.option(
    "--lease",
    type=click.FloatRange(1, 3600),
    default=15.0,
    show_default=True,
    help="Seconds before a delivery whose result never came is handed out again (the "
    "server's side of the heartbeat); keep it above --timeout.",
)
@click.option(
    "--heartbeat",
    type=click.FloatRange(1, 300),
    default=15.0,
    show_default=True,
    help="Silence this long (no event, no answer) means a dead link: reconnect.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 600),
    default=10.0,
    show_default=True,
    help="Seconds the local receiver has to answer.",
)
@click.option(
    "--transport",
    type=click.Choice(["sse", "poll"]),
    default="sse",
    show_default=True,
    help="sse: deliveries pushed over an event stream as they fall due; poll: long polls "
    "(for proxies that buffer event streams).",
)
def listen(
    config: Path | None,
    url: str | None,
    token: str | None,
    as_json: bool,
    destination: str,
    forward: str,
    streams: int,
    max_: int,
    lease: float,
    heartbeat: float,
    timeout: float,
    transport: str,
) -> None:
    """Relay DESTINATION's deliveries to a receiver on this machine (relay = true).

    Connects outward only, like `stripe listen`: works from a laptop or behind a firewall.
    Each delivery reaches --forward with its exact body and the headers a direct delivery
    carries; the receiver's answer is reported back and recorded as the attempt (2xx succeeds,
    anything else is retried on the destination's schedule). A delivery whose answer never
    reached the server (this client killed, asleep, cut off) is handed out again after
    --lease seconds: at least once, so let the receiver deduplicate on webhook-id.

    Use a relay token (`hookyard tokens create --scope relay:DESTINATION`) or the admin token.
    """
    if lease <= timeout:  # a result reported after its lease ran out only comes back stale
        raise click.BadParameter("must be longer than --timeout", param_hint="--lease")
    target = urlsplit(forward)
    if target.scheme not in ("http", "https") or not target.hostname:
        # Else every delivery fails here, and its retries are spent until it is dead.
        raise click.BadParameter(
            f"expected an http(s) URL, like http://localhost:3000/hooks; got {forward!r}",
            param_hint="--forward",
        )
    api = Api(url, token, config)
    auth = api.client.headers["authorization"].removeprefix("Bearer ")
    listener = Listener(
        api.url, auth, destination, forward, streams, max_, lease, heartbeat, timeout, as_json,
        transport,
    )  # fmt: skip
    sys.exit(run_listener(listener))
