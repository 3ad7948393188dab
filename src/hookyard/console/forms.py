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


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site (or hides where from).
    Behind a proxy that rewrites Host (nginx's default), the site is [server] public_url's."""
    origin = request.headers.get("origin")
    if origin is None:  # older browsers and non-browser clients; the CSRF token still applies
        return True
    netloc = urlsplit(origin).netloc
    public_url: str | None = request.app.state.public_url
    return netloc == request.headers.get("host", "") or (
        public_url is not None and netloc == urlsplit(public_url).netloc
    )


def check_csrf(request: Request, form: dict[str, str], expected: str) -> None:
    if not same_origin(request):
        raise FormRejected("the request came from another site")
    if not hmac.compare_digest(form.get("csrf", "").encode(), expected.encode()):
        raise FormRejected("the form's security token is missing or stale; reload the page")
