"""`hookyard retention`: the retention policy, what the last sweep removed and what is stored;
`hookyard retention sweep` sweeps now. A client of the API like the rest of the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import httpx

from hookyard.cli import Api, _table, api_options


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "forever"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _show(status: dict[str, Any]) -> None:
    policy = status["policy"]
    default = policy["default"]
    click.echo(
        f"Policy: events {_age(default['events_seconds'])}, payloads "
        f"{_age(default['payloads_seconds'])}, attempts {_age(policy['attempts_seconds'])}, "
        f"rejected {_age(policy['rejected_seconds'])} (at most {policy['rejected_log_size']}); "
        f"a sweep every {_age(policy['interval_seconds'])}"
    )
    for name, own in sorted(policy["sources"].items()):
        if own != default:
            click.echo(
                f"  {name}: events {_age(own['events_seconds'])}, "
                f"payloads {_age(own['payloads_seconds'])}"
            )
    sweep = status["last_sweep"]
    if sweep is None:
        click.echo("No sweep yet.")
        return
    removed = ", ".join(f"{n} {kind}" for kind, n in sorted(sweep["removed"].items()) if n)
    failed = f"; failed: {sweep['error']}" if sweep["error"] else ""
    click.echo(
        f"Last sweep: {sweep['started_at']} to {sweep['finished_at']}: "
        f"removed {removed or 'nothing'}{failed}"
    )
    usage = status["usage"]
    if usage is None:
        return
    click.echo(
        f"Stored at {usage['measured_at']}: database {_bytes(usage['database_bytes'])}"
        + (f" ({_bytes(usage['free_bytes'])} free inside)" if usage["free_bytes"] else "")
    )
    rows = [
        {**row, "payload_bytes": _bytes(row["payload_bytes"]), "oldest": row["oldest_event_at"]}
        for row in usage["sources"]
    ]
    _table(rows, ["source", "events", "oldest", "payload_bytes"])


@click.group(invoke_without_command=True)
@api_options
@click.pass_context
def retention(
    ctx: click.Context, config: Path | None, url: str | None, token: str | None, as_json: bool
) -> None:
    """How long events, payloads, attempts and rejected requests are kept; what the last
    sweep removed; per source, the events stored, the oldest and the payload bytes."""
    if ctx.invoked_subcommand is not None:  # `retention --url X sweep`: the options hold
        ctx.obj = {"config": config, "url": url, "token": token, "as_json": as_json}
        return
    status = Api(url, token, config).get("/api/v1/retention").json()
    if as_json:
        click.echo(json.dumps(status))
    else:
        _show(status)


@retention.command("sweep")
@api_options
@click.pass_context
def retention_sweep(
    ctx: click.Context, config: Path | None, url: str | None, token: str | None, as_json: bool
) -> None:
    """Sweep now instead of at the next interval, and show the result."""
    given = ctx.obj or {}  # options given before `sweep`
    config, url = config or given.get("config"), url or given.get("url")
    token, as_json = token or given.get("token"), as_json or given.get("as_json", False)
    api = Api(url, token, config)
    api.client.timeout = httpx.Timeout(None)  # a first sweep of a large log takes a while
    status = api.post("/api/v1/retention/sweep").json()
    if as_json:
        click.echo(json.dumps(status))
    else:
        _show(status)
