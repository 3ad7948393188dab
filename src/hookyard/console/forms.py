"""Reading the console's POST forms, and refusing forged ones.

Forms are small and URL-encoded, so they are parsed here from a bounded body rather than
through a multipart library. A POST is accepted only when its hidden `csrf` field equals the
session's token (compared in constant time) and, when the browser sends an Origin header, that
origin is this host: two independent checks, either of which stops a cross-site form.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request

MAX_FORM = 16 * 1024  # bytes; the largest console form holds a token and a few ids


class FormRejected(Exception):
    """A POST that is not the console's own form: answered 403, and nothing is done."""


async def read_form(request: Request) -> dict[str, str]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise FormRejected("the form is too large")
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=50))
    except (UnicodeDecodeError, ValueError):
        raise FormRejected("the form could not be read") from None


DEFAULT_PORTS = {"http": 80, "https": 443}


def _site(url: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) as a browser writes an Origin: the host in lower case and the
    default port filled in, so that "https://Hooks.Example:443" is "https://hooks.example".
    None when the URL names no host or a bad port."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:  # Origin: null (a sandboxed frame, a file) is no site
        return None
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, DEFAULT_PORTS.get(scheme) if port is None else port


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site (or hides where from).
    Behind a proxy that rewrites Host (nginx's default), the site is [server] public_url's."""
    origin = request.headers.get("origin")
    if origin is None:  # older browsers and non-browser clients; the CSRF token still applies
        return True
    site = _site(origin)
    if site is None:
        return False
    # Host names no scheme: it is this site when it names the Origin's host and port.
    host = _site(f"{site[0]}://{request.headers.get('host', '')}")
    public_url: str | None = request.app.state.public_url
    return site == host or (public_url is not None and site == _site(public_url))


def check_csrf(request: Request, form: dict[str, str], expected: str) -> None:
    if not same_origin(request):
        raise FormRejected("the request came from another site")
    if not hmac.compare_digest(form.get("csrf", "").encode(), expected.encode()):
        raise FormRejected("the form's security token is missing or stale; reload the page")
