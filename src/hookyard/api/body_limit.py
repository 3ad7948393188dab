"""A bound on request bodies of the API and the console, enforced before any handler runs.

FastAPI reads and parses a JSON body before it resolves the dependencies that check the
token, so without this anyone could make the process hold a body of any size in memory and
only then hear 401. The two endpoints that take large bodies read them themselves, after the
token check: publishing (bounded by the source's max_body) and importing (in batches).
"""

from __future__ import annotations

import re
from typing import Any

from hookyard.api.ingest import error_body, respond

MAX_BODY = 4 * 1024 * 1024  # bytes: the results of 1,000 relay deliveries fit several times
_READS_ITS_OWN = re.compile(r"/api/v1/(sources/[^/]+/events|events/import)")

Scope = dict[str, Any]


class BodyLimit:
    def __init__(self, app: Any, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or _READS_ITS_OWN.fullmatch(scope["path"]):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:  # the server holds the body to that length
            if declared.isdigit() and int(declared) <= self.limit:
                await self.app(scope, receive, send)
            else:
                await self._refuse(receive, send)
            return
        # Chunked: read up to the limit here, then hand the body on.
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(receive, send, message)
                return
            if not message.get("more_body"):
                break

        async def replay() -> Any:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, receive: Any, send: Any, last: Scope | None = None) -> None:
        """Answer 413, then read the rest of the body and drop it: the client hears the
        answer once it has sent its body, instead of a connection reset while sending."""
        too_large = error_body("body_too_large", f"the body exceeds {self.limit} bytes")
        await respond(send, 413, too_large)
        message = last or {"type": "http.request", "more_body": True}
        while message["type"] == "http.request" and message.get("more_body"):
            message = await receive()
