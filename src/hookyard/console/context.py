"""What every console handler shares: the app state, the sessions, who is asking, and how a
page is rendered around its content (navigation, flash message, CSRF token)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from hookyard.api.rest import Caller
from hookyard.console.render import page
from hookyard.console.sessions import Session, Sessions
from hookyard.state import AppState

PREFIX = "/console"
COOKIE = "hookyard_console"

NAV = (
    ("overview", f"{PREFIX}/", "Overview"),
    ("events", f"{PREFIX}/events", "Events"),
    ("rejected", f"{PREFIX}/rejected", "Rejected"),
    ("destinations", f"{PREFIX}/destinations", "Destinations"),
)


@dataclass(frozen=True)
class Visitor:
    """A logged-in operator: the admin token behind the session, and the session."""

    caller: Caller
    session: Session


@dataclass
class Console:
    state: AppState
    sessions: Sessions = field(default_factory=Sessions)

    async def visitor(self, request: Request) -> Visitor | None:
        """The session's operator, if its admin token is still live (looked up every time, so
        revoking the token ends the session at once)."""
        session_id = request.cookies.get(COOKIE)
        session = self.sessions.get(session_id)
        if session is None:
            return None
        found = await self.state.store.find_token(session.token_hash)
        if found is None or found[2] != "admin":
            self.sessions.end(session_id)
            return None
        return Visitor(Caller(*found), session)

    def render(
        self,
        template: str,
        visitor: Visitor,
        current: str,
        *,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        flash, visitor.session.flash = visitor.session.flash, None  # shown once
        return page(
            template,
            status,
            nav=NAV,
            current=current,
            csrf=visitor.session.csrf,
            operator=visitor.caller.name,
            flash=flash,
            **context,
        )

    async def audit(self, visitor: Visitor, action: str, target: str | None, **detail: Any) -> None:
        """Record an administrative action as the API does, marked as done from the console."""
        who = visitor.caller
        detail["via"] = "console"
        await self.state.store.record_audit(
            (time.time(), who.id, who.name, action, target, orjson.dumps(detail).decode())
        )


def to_login(request: Request) -> RedirectResponse:
    """Send a visitor without a session to the login page, coming back here afterwards."""
    wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/login?next={quote(wanted, safe='')}", 303)


def back(path: str, visitor: Visitor, message: str) -> RedirectResponse:
    """After an action: a message for the next page, and a 303 so that reloading is harmless."""
    visitor.session.flash = message
    return RedirectResponse(path, 303)
