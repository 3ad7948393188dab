"""A simulated SaaS provider: a REST API to poll and signed webhooks for every change.

A real HTTP server on loopback, for Hookyard's own tests, `hookyard demo` and users' tests:

    sim = Simulator(SimulatorOptions(webhook_url=url, drop=0.1, seed=1))
    base = await sim.start()          # http://127.0.0.1:PORT
    sim.seed(1000)                    # objects to poll
    sim.update("obj_000001", {"status": "paid"})   # a change, and its webhook
    await sim.flush_webhooks()
    await sim.stop()

Changes are synchronous and made from the event loop's thread; webhooks go out in the background.
"""

from __future__ import annotations

import base64
import binascii
import random
from collections.abc import Callable
from typing import Any

from aiohttp import web

from hookyard.simulator._api import Api
from hookyard.simulator._auth import Authenticator
from hookyard.simulator._control import routes as control_routes
from hookyard.simulator._limits import Failures
from hookyard.simulator._store import Store
from hookyard.simulator._time import Clock
from hookyard.simulator._types import DEFAULT_SECRET, Auth, SimulatorOptions, Stats
from hookyard.simulator._webhooks import WebhookSender

__all__ = ["DEFAULT_SECRET", "Auth", "Simulator", "SimulatorOptions", "Stats"]


def _secret_key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ValueError("webhook_secret must be whsec_ followed by base64") from None


class Simulator:
    def __init__(self, options: SimulatorOptions | None = None) -> None:
        self.options = options = options or SimulatorOptions()
        options.check()
        self.stats = Stats()
        self.url = ""  # the base URL, once started
        self._clock = Clock(options.clock_skew)
        # Two streams, so that data choices (mutate) and webhook fates do not shift each other.
        seed = options.seed
        self._store = Store(
            options.object_type,
            self._clock,
            random.Random(None if seed is None else f"{seed}/data"),
        )
        self._webhooks = (
            None
            if options.webhook_url is None
            else WebhookSender(
                options, _secret_key(options.webhook_secret), self.stats, random.Random(seed)
            )
        )
        self._failures = Failures()
        self._auth = (
            None if options.auth is None else Authenticator(options.auth, self._clock, self.stats)
        )
        self._runner: web.AppRunner | None = None
        # The CLI's hook to print every change, including those made through /_sim.
        self._on_change: Callable[[str, dict[str, Any]], None] | None = None

    @property
    def objects(self) -> dict[str, dict[str, Any]]:
        """The live objects by id (deleted ones are gone)."""
        return self._store.objects

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0: any free port); returns the base URL."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        app = web.Application()
        app.add_routes(
            Api(self._store, self.options, self.stats, self._auth, self._failures).routes()
        )
        if self._auth is not None:
            app.add_routes([web.post("/oauth/token", self._auth.token)])
        app.add_routes(control_routes(self))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}"
        if self._webhooks is not None:
            await self._webhooks.start()
        return self.url

    async def stop(self) -> None:
        """Stop serving and cancel webhooks not sent yet; idempotent."""
        if self._webhooks is not None:
            await self._webhooks.stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def flush_webhooks(self, timeout: float = 10.0) -> None:
        """Wait until every scheduled webhook (delayed, held back) was sent; TimeoutError if not."""
        if self._webhooks is not None:
            await self._webhooks.flush(timeout)

    # -- changes ---------------------------------------------------------------------------------

    def create(
        self, data: dict[str, Any] | None = None, *, id: str | None = None, webhook: bool = True
    ) -> dict[str, Any]:
        """A new object (id default obj_NNNNNN, data default a plausible order); returns a copy."""
        obj = self._store.create(data, id)
        self._notify("created", obj, webhook)
        return dict(obj)

    def update(
        self, id: str, data: dict[str, Any] | None = None, *, webhook: bool = True
    ) -> dict[str, Any]:
        """Merge data into the object, bump its version and updated_at; KeyError if none."""
        obj = self._store.update(id, data)
        self._notify("updated", obj, webhook)
        return dict(obj)

    def delete(self, id: str, *, webhook: bool = True) -> None:
        """Remove the object (the webhook carries its last state); KeyError if none."""
        self._notify("deleted", self._store.delete(id), webhook)

    def seed(self, count: int) -> None:
        """Bulk-create count objects, all at the current second, without webhooks."""
        self._store.seed(count)

    def mutate(self, count: int, *, webhook: bool = True) -> list[tuple[str, str]]:
        """count random changes, mostly updates; returns [(created|updated|deleted, id)]."""
        changes: list[tuple[str, str]] = []
        for _ in range(count):
            change, id, data = self._store.random_change()
            if id is None:
                id = str(self.create(webhook=webhook)["id"])
            elif change == "updated":
                self.update(id, data, webhook=webhook)
            else:
                self.delete(id, webhook=webhook)
            changes.append((change, id))
        return changes

    def set_time(self, when: float | None) -> None:
        """Freeze the clock at unix time `when` (None: the real clock again).

        It dates changes (clock_skew still added) and expires OAuth tokens; the rate limit and
        webhook timestamps keep real time.
        """
        self._clock.frozen = when

    def fail_next(self, count: int, status: int = 500, retry_after: float | None = None) -> None:
        """The next count API calls answer status (and Retry-After, if given) instead."""
        self._failures.add(count, status, retry_after)

    def _notify(self, change: str, obj: dict[str, Any], webhook: bool) -> None:
        if webhook and self._webhooks is not None:
            self._webhooks.schedule(f"{self.options.object_type}.{change}", obj)
        if self._on_change is not None:
            self._on_change(change, obj)
