"""The console as one ASGI app: its routes under /console, its static files, the security
headers every answer carries, and what a database outage looks like in a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hookyard.console.actions import action_routes
from hookyard.console.auth import auth_routes
from hookyard.console.context import PREFIX, Console
from hookyard.console.pages import page_routes
from hookyard.console.render import page
from hookyard.errors import StoreError
from hookyard.state import AppState

STATIC = Path(__file__).parent / "static"

HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
        b" frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds the console's headers to every answer; pages (not static files) are not cached,
    since they show what only an admin may see."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        static = scope["path"].startswith(f"{PREFIX}/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), *HEADERS]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def build_console(state: AppState) -> ASGIApp:
    console = Console(state)

    async def home(_: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/", 308)

    async def unavailable(_: Request, exc: Exception) -> Response:
        return page("refused.html", 503, reason="the database is unavailable; reload in a moment")

    async def not_found(_: Request, exc: Exception) -> Response:
        return page("refused.html", 404, reason="there is no such console page")

    handlers: dict[Any, Any] = {StoreError: unavailable, 404: not_found}
    app = Starlette(
        routes=[
            Route(PREFIX, home),
            *auth_routes(console),
            *page_routes(console),
            *action_routes(console),
            Mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers=handlers,
    )
    app.state.public_url = state.gateway.settings.server.public_url  # read at start only
    return SecurityHeaders(app)
