"""`hookyard demo`: the hybrid pattern on one machine, in one command.

A simulated provider changes its orders every second and sends webhooks for them, dropping,
duplicating and delaying some on purpose. Hookyard receives the webhooks (dropping the
duplicates), reconciles them against the provider's REST API every few seconds (recovering
what was dropped; a late webhook for a recovered version is a duplicate), and delivers every
change to a small receiver that prints it. At the end, the demo checks that each change
arrived exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import click
import orjson
import uvicorn
from aiohttp import web

from hookyard.app import HookyardApp
from hookyard.config import load_config
from hookyard.runtime import Service
from hookyard.simulator import DEFAULT_SECRET, Simulator, SimulatorOptions

CONFIG = """\
[server]
listen = "127.0.0.1:0"
database = "sqlite:///hookyard.db"

[egress]
allow = ["127.0.0.0/8"]      # the simulator and the receiver are on this machine

[sources.shop]               # webhooks, checked against the REST API every 5 s
verify = "standard"
secrets = ["{secret}"]
object_id = "data.id"
object_version = "data.version"
[sources.shop.api]
url = "{api}/cursor/objects"
pagination = "cursor"
version_field = "version"
resource = "order"
object_url = "{api}/objects/{{id}}"
[sources.shop.reconcile]
interval = "5s"
window = "10m"

[destinations.printer]
url = "{receiver}"
timeout = "5s"

[[routes]]
source = "shop"
destination = "printer"
"""


def _object(body: bytes) -> tuple[str, int]:
    document = orjson.loads(body)
    obj = document.get("data", document)
    return obj["id"], obj["version"]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # Ctrl-C ends the demo, which then stops the server


class Printer:
    """The demo's destination: prints each delivery, counts each object version."""

    def __init__(self) -> None:
        self.versions: Counter[tuple[str, int]] = Counter()

    async def handle(self, request: web.Request) -> web.Response:
        object_id, version = _object(await request.read())
        self.versions[object_id, version] += 1
        # A webhook's own headers travel renamed; a reconciled event has none.
        origin = "webhook" if request.headers.get("hookyard-original-webhook-id") else "reconcile"
        kind = request.headers.get("hookyard-event-type", "")
        click.echo(f"  delivered  {origin:<9}  {kind:<14} {object_id} v{version}")
        return web.Response(status=204)


async def _serve_receiver(printer: Printer) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/orders", printer.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/orders"


async def run_demo(duration: float, folder: Path, drop: float) -> bool:
    printer = Printer()
    receiver, receiver_url = await _serve_receiver(printer)
    api_port = _free_port()
    config = folder / "hookyard.toml"
    config.write_text(
        CONFIG.format(
            secret=DEFAULT_SECRET, api=f"http://127.0.0.1:{api_port}", receiver=receiver_url
        )
    )
    settings, base_dir = load_config(config)
    service = Service(settings, base_dir, config_path=config)
    state = await service.start()
    server = _Server(
        uvicorn.Config(
            HookyardApp(state),
            host="127.0.0.1",
            port=0,
            lifespan="off",
            loop="none",
            access_log=False,
            log_level="warning",
            log_config=None,
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    sim = Simulator(
        SimulatorOptions(
            webhook_url=f"http://127.0.0.1:{port}/in/shop", drop=drop, duplicate=0.1, delay=2.0
        )
    )
    await sim.start(port=api_port)
    click.echo(
        f"Hookyard on http://127.0.0.1:{port} (config {config}); the provider on {sim.url}.\n"
        f"The provider drops {drop:.0%} of its webhooks and repeats 10%; Hookyard reconciles "
        f"every 5 s.\nA change a second for {duration:.0f} s (Ctrl-C stops sooner):\n"
    )
    for _ in range(5):  # a few orders to change
        obj = sim.create({"status": "new"})
        click.echo(f"provider   created  {obj['id']} v1")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline and not stop.is_set():
            for change, object_id in sim.mutate(1):
                current = sim.objects.get(object_id)
                shown = f"v{current['version']}" if current else ""
                click.echo(f"provider   {change:<8} {object_id} {shown}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        click.echo("\nWaiting for the last webhooks and one more reconciliation ...")
        await sim.flush_webhooks()
        return await _settle(sim, printer)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        await sim.stop()
        server.should_exit = True
        await serving
        await service.stop()
        await receiver.cleanup()


async def _settle(sim: Simulator, printer: Printer, timeout: float = 15.0) -> bool:
    """Wait until every object's latest version arrived; report."""
    latest = {(object_id, obj["version"]) for object_id, obj in sim.objects.items()}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not latest <= printer.versions.keys():
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    dropped = len(sim.stats.webhooks_dropped)
    repeated = len(sim.stats.duplicates_sent)
    twice = [key for key, count in printer.versions.items() if count > 1]
    missing = latest - printer.versions.keys()
    click.echo(
        f"\nThe provider sent {len(sim.stats.webhooks_sent)} webhooks, dropped {dropped} and "
        f"repeated {repeated}.\nDelivered {sum(printer.versions.values())} events: "
        f"{len(missing)} latest versions missing, {len(twice)} delivered twice."
    )
    ok = not missing and not twice
    click.echo("Every change arrived exactly once." if ok else "Something was lost or repeated.")
    return ok


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@click.command()
@click.option(
    "--duration",
    type=click.FloatRange(1),
    default=30,
    show_default=True,
    help="Seconds of changes before the summary.",
)
@click.option(
    "--drop",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    help="Fraction of webhooks the provider drops.",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the database and config in this folder (default: a temporary one).",
)
def demo(duration: float, drop: float, keep: Path | None) -> None:
    """See webhooks, reconciliation and exactly-once delivery work together, on this machine.

    Starts a simulated provider, Hookyard and a receiver that prints what it gets; the
    provider drops and repeats webhooks on purpose. Nothing to set up; nothing is left
    behind unless --keep is given.
    """
    import uvloop

    def run(folder: Path) -> bool:
        return uvloop.run(run_demo(duration, folder, drop))

    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        ok = run(keep)
    else:
        with tempfile.TemporaryDirectory(prefix="hookyard-demo-") as folder:
            ok = run(Path(folder))
    raise SystemExit(0 if ok else 1)
