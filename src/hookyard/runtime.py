"""Runs Hookyard's roles in one process: ingest, API and the delivery worker (all three by
default; `server.roles` picks, for processes sharing a PostgreSQL database).

`Service` owns the store and the background tasks and can be started and stopped from code
(the tests do); `serve` puts it behind uvicorn and handles SIGHUP (reload) and SIGTERM/SIGINT
(graceful stop: uvicorn stops accepting, in-flight commits finish, leases are given back).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from hookyard import alerts, logs
from hookyard.app import HookyardApp
from hookyard.config import Settings, database_url, load_config, parse_listen, redact_url
from hookyard.deliver.worker import Worker
from hookyard.errors import ConfigError, StoreError
from hookyard.fetchback import FetchBack
from hookyard.gateway import Gateway
from hookyard.http_protocol import HttpProtocol
from hookyard.maintenance import run_maintenance
from hookyard.pollers.runner import Pollers
from hookyard.rejected import RejectedLog
from hookyard.retention import run_retention
from hookyard.state import AppState
from hookyard.store import Store, open_store
from hookyard.tokens import bootstrap_admin
from hookyard.tracing import Tracing

log = logging.getLogger("hookyard")


class Service:
    def __init__(
        self,
        settings: Settings,
        base_dir: Path,
        *,
        config_path: Path | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.config_path = config_path
        self.overrides = overrides or {}
        self.gateway = Gateway.build(settings, base_dir)
        self.store: Store | None = None
        self.state: AppState | None = None
        self.worker: Worker | None = None
        self.fetchback: FetchBack | None = None
        self.pollers: Pollers | None = None
        self.token_file: Path | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._retention: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> AppState:
        settings = self.gateway.settings
        for warning in self.gateway.warnings:
            log.warning("%s", warning)
        url = database_url(settings, self.gateway.base_dir)
        store = await asyncio.to_thread(
            open_store, url, self.gateway.base_dir, auto_migrate=settings.server.auto_migrate
        )
        self.store = store
        if store.migrated and store.migrated[0] != store.migrated[1]:
            before, after = store.migrated
            log.info(
                "database schema %s version %d",
                "created at" if before is None else f"migrated from {before} to",
                after,
            )
        self.token_file = bootstrap_admin(store, settings, self.gateway.base_dir)
        built = await asyncio.to_thread(store.sync_field_indexes, settings.server.indexed_fields)
        if built:
            log.info("built %d payload field indexes", len(built))
        rejected = RejectedLog(
            store,
            keep=settings.server.rejected_log_size,
            per_second=settings.server.rejected_samples_per_second,
            spike_threshold=settings.server.alert_verification_failures,
            on_spike=self._verification_spike,
        )
        state = AppState(
            gateway=self.gateway,
            store=store,
            rejected=rejected,
            tracing=Tracing(settings.server.tracing),
        )
        await self._refresh_states(state)
        loop = asyncio.get_running_loop()

        def on_notify(topic: str) -> None:  # called on the store's listener thread
            loop.call_soon_threadsafe(self._notified, state, topic)

        store.on_notify = on_notify
        rejected.start()
        self._maintenance = asyncio.create_task(run_maintenance(state), name="maintenance")
        self._retention = asyncio.create_task(run_retention(state), name="retention")
        if "worker" in settings.server.roles:
            self.worker = Worker(state)
            self.worker.start()
            self.fetchback = FetchBack(state)
            self.fetchback.start()
        if "poller" in settings.server.roles:
            self.pollers = Pollers(state)
            self.pollers.start()
        self.state = state
        return state

    async def _refresh_states(self, state: AppState, *, quiet: bool = False) -> None:
        try:
            states = await state.store.destination_states()
        except StoreError as exc:
            if not quiet:
                raise
            log.warning("could not refresh destination states (%s); next notification will", exc)
            return
        state.destination_states = {name: row["state"] for name, row in states.items()}

    def _notified(self, state: AppState, topic: str) -> None:
        """Another process committed work, or changed a destination's state."""
        if topic == "work":
            state.work_ready.set()
        elif topic == "hints":
            state.hints_ready.set()
        elif topic == "rest":
            state.rest_ready.set()
        elif topic == "state":
            task = asyncio.create_task(self._refresh_states(state, quiet=True))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _verification_spike(self, source: str, failures: int, window: float) -> None:
        if self.state is not None:
            await alerts.emit(
                self.state,
                "source.verification_failures",
                {"source": source, "failures": failures, "window_seconds": round(window)},
            )

    async def stop(self) -> None:
        for task in (self._maintenance, self._retention):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.fetchback is not None:
            await self.fetchback.stop()
        if self.pollers is not None:
            await self.pollers.stop()
        if self.worker is not None:
            await self.worker.stop(self.gateway.settings.worker.shutdown_grace)
        if self.state is not None:
            await self.state.rejected.stop()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)

    def reload(self) -> bool:
        """Re-read the config file; keep the running one if the new one is invalid."""
        if self.state is None:
            return False
        try:
            settings, base_dir = load_config(self.config_path, overrides=self.overrides)
            gateway = Gateway.build(settings, base_dir)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return False
        running = self.gateway.settings.server
        changed = [
            k
            for k in type(running).model_fields
            if getattr(settings.server, k) != getattr(running, k)
        ]
        if changed:
            # One rule for the whole section: it is read once, at start.
            log.warning(
                "[server] %s changed; that takes effect after a restart", ", ".join(changed)
            )
            try:  # the sources checked against the running [server] (its dedup_window)
                gateway = Gateway.build(settings.model_copy(update={"server": running}), base_dir)
            except ConfigError as exc:
                log.error("reload refused, keeping the running configuration: %s", exc)
                return False
        for warning in gateway.warnings:
            log.warning("%s", warning)
        self.gateway = gateway
        self.state.gateway = gateway
        self.state.work_ready.set()
        log.info(
            "configuration reloaded: %d sources, %d destinations, %d routes",
            len(settings.sources),
            len(settings.destinations),
            len(settings.routes),
        )
        return True


def http_config(
    state: AppState, settings: Settings, base_dir: Path, host: str, port: int
) -> uvicorn.Config:
    """How uvicorn serves Hookyard: shared by `serve` and the tests, so they run what ships."""
    server = settings.server
    cert = str(base_dir / server.tls_cert) if server.tls_cert else None
    key = str(base_dir / server.tls_key) if server.tls_key else None
    trusted = server.trusted_proxies
    return uvicorn.Config(
        HookyardApp(state),
        host=host,
        port=port,
        lifespan="off",
        # Heads are counted as they arrive: past the header limit (and 8 KiB of URL), 431
        # before the rest is read into memory (see http_protocol.py).
        http=HttpProtocol.bounded(int(server.max_header_bytes) + 8192),
        loop="none",
        access_log=False,
        log_level="warning",
        log_config=None,  # keep our logging setup
        server_header=False,
        # Longer than a load balancer's idle timeout (60 s on the common ones): a backend that
        # closes an idle connection first races the balancer's next request on it, and that
        # request fails. Idle connections cost a socket each, nothing more.
        timeout_keep_alive=int(server.keepalive_timeout),
        timeout_graceful_shutdown=10,
        ssl_certfile=cert,
        ssl_keyfile=key,
        # Forwarded headers only from configured proxies: the client address and the scheme
        # (which signed URLs depend on) cannot be spoofed by anyone else.
        proxy_headers=bool(trusted),
        forwarded_allow_ips=",".join(trusted) if trusted else "",
    )


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Stop on SIGINT/SIGTERM like uvicorn, but without re-raising the signal afterwards
        (uvicorn does, which would end the process before the store is closed cleanly)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


async def serve(config_path: Path | None, overrides: dict[str, Any]) -> None:
    settings, base_dir = load_config(config_path, overrides=overrides)
    logs.configure(settings.server.log_format)
    service = Service(settings, base_dir, config_path=config_path, overrides=overrides)
    state = await service.start()
    gc.freeze()
    if service.token_file is not None:
        print(
            f"Generated an admin token; it is in {service.token_file} (readable only by you).",
            file=sys.stderr,
        )
    host, port = parse_listen(settings.server.listen)
    config = http_config(state, settings, base_dir, host, port)
    server = _Server(config)

    def on_hangup() -> None:
        service.reload()
        if config.ssl is not None and config.ssl_certfile is not None:
            try:  # new connections get the renewed certificate; open ones keep theirs
                config.ssl.load_cert_chain(config.ssl_certfile, config.ssl_keyfile)
                log.info("TLS certificate reloaded from %s", config.ssl_certfile)
            except (OSError, ssl.SSLError) as exc:
                log.error("TLS certificate reload refused, keeping the current one: %s", exc)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, on_hangup)

    async def serve_http() -> None:
        try:
            await server.serve()
        except SystemExit:  # uvicorn's way to say it cannot listen (it logged why)
            raise OSError(f"could not listen on {settings.server.listen} (see above)") from None

    serving = asyncio.create_task(serve_http())
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if server.started:
        bound = server.servers[0].sockets[0].getsockname()
        scheme = "https" if config.ssl_certfile else "http"
        print(
            f"Hookyard listening on {scheme}://{host}:{bound[1]} "
            f"(database {redact_url(database_url(settings, base_dir))}; "
            f"roles {', '.join(settings.server.roles)})",
            file=sys.stderr,
            flush=True,
        )
    try:
        await serving
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        await service.stop()


def run(config_path: Path | None, overrides: dict[str, Any]) -> None:
    import uvloop

    # The writer thread gives up the GIL for every SQLite call and must win it back from the
    # busy event loop; at the default 5 ms interval each of those waits stalls a whole group
    # commit. 0.2 ms measured best on the ingest benchmark (see bench/README.md).
    sys.setswitchinterval(0.0002)
    # Requests allocate many short-lived, acyclic objects that reference counting frees; the
    # default threshold (700) runs the cycle collector every few requests, and its pauses were
    # the benchmark's p99 (29 ms -> 12-17 ms with this). gc.freeze() in `serve` keeps the
    # long-lived start-up objects out of every later collection.
    gc.set_threshold(50_000, 20, 100)
    uvloop.run(serve(config_path, overrides))
