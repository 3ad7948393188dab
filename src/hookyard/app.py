"""Builds the ASGI app from the shared state: wiring only.

`/in/...` goes straight to the raw ingest handler (no framework on the hot path); everything
else goes to the FastAPI app (API, health, OpenAPI), except `/console`, the web console (its
own small app, served with the `api` role). A process without the `ingest` or `api`
role answers those paths with 404 and says why; health and metrics are served by every role,
for load balancers and monitoring.
"""

from __future__ import annotations

from typing import Any

from hookyard.api.body_limit import BodyLimit
from hookyard.api.ingest import IngestApp, error_body, respond
from hookyard.api.rest import build_api
from hookyard.console import build_console
from hookyard.state import AppState

ALWAYS_SERVED = ("/healthz", "/readyz", "/metrics")
CONSOLE = "/console"


class HookyardApp:
    def __init__(self, state: AppState) -> None:
        self.roles = frozenset(state.gateway.settings.server.roles)
        self.ingest = IngestApp(state)
        self.api = BodyLimit(build_api(state))
        self.console = BodyLimit(build_console(state))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        path = scope["path"]
        role = "ingest" if path.startswith("/in/") else "api"
        if role not in self.roles and path not in ALWAYS_SERVED:
            await _not_served(send, role, self.roles)
        elif role == "ingest":
            await self.ingest(scope, receive, send)
        elif path == CONSOLE or path.startswith(CONSOLE + "/"):
            await self.console(scope, receive, send)
        else:
            await self.api(scope, receive, send)


async def _not_served(send: Any, role: str, roles: frozenset[str]) -> None:
    message = (
        f"this Hookyard process does not run the {role} role "
        f"(its roles: {', '.join(sorted(roles))}); send this to a process that does"
    )
    await respond(send, 404, error_body("role_not_served", message))
