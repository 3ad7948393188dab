"""Logging in with the admin token, and out.

The token is checked as the API checks a bearer token (its hash, looked up in the store) and
must have the admin scope. The browser gets a random session id in an HttpOnly, SameSite=Strict
cookie limited to /console, Secure when the page came over HTTPS; the token itself is never
put in a cookie.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from hookyard.console.context import COOKIE, PREFIX, Console
from hookyard.console.forms import FormRejected, check_csrf, read_form, same_origin
from hookyard.console.render import page
from hookyard.console.sessions import LIFETIME
from hookyard.tokens import hash_token


def _next(value: str | None) -> str:
    """Where to go after logging in: a console page only, never another site."""
    if value and value.startswith(f"{PREFIX}/") and not value.startswith("//"):
        return value
    return f"{PREFIX}/"


def _login_page(next_path: str, error: str | None = None, status: int = 200) -> Response:
    return page("login.html", status, next_path=next_path, error=error)


def auth_routes(console: Console) -> list[Route]:
    async def login_form(request: Request) -> Response:
        if await console.visitor(request) is not None:
            return RedirectResponse(_next(request.query_params.get("next")), 303)
        return _login_page(_next(request.query_params.get("next")))

    async def login(request: Request) -> Response:
        # No session yet, so no CSRF token: the Origin check stops a cross-site login form.
        if not same_origin(request):
            return page("refused.html", 403, reason="the request came from another site")
        try:
            form = await read_form(request)
        except FormRejected as exc:
            return page("refused.html", 403, reason=str(exc))
        next_path = _next(form.get("next"))
        token = form.get("token", "").strip()
        found = await console.state.store.find_token(hash_token(token)) if token else None
        if found is None:
            return _login_page(next_path, "That token is unknown or revoked.", 401)
        if found[2] != "admin":
            return _login_page(
                next_path, f"That is a {found[2]} token; the console needs the admin token.", 403
            )
        console.sessions.end(request.cookies.get(COOKIE))  # a new login replaces the old
        session_id, _ = console.sessions.create(hash_token(token))
        response = RedirectResponse(next_path, 303)
        # Behind a proxy ending TLS, the browser's scheme is public_url's.
        public_scheme = urlsplit(request.app.state.public_url or "").scheme
        response.set_cookie(
            COOKIE,
            session_id,
            max_age=int(LIFETIME),
            path=PREFIX,
            secure="https" in (request.url.scheme, public_scheme),
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(request: Request) -> Response:
        visitor = await console.visitor(request)
        if visitor is not None:
            try:
                check_csrf(request, await read_form(request), visitor.session.csrf)
            except FormRejected as exc:
                return page("refused.html", 403, reason=str(exc))
            console.sessions.end(request.cookies.get(COOKIE))
        response = RedirectResponse(f"{PREFIX}/login", 303)
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
        return response

    return [
        Route(f"{PREFIX}/login", login_form, methods=["GET"]),
        Route(f"{PREFIX}/login", login, methods=["POST"]),
        Route(f"{PREFIX}/logout", logout, methods=["POST"]),
    ]
