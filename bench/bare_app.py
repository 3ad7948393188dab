"""The ceiling: a bare ASGI app that reads the whole body and answers 200.

Also used as the local delivery sink when nginx is not available.
"""

from typing import Any

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")],
}
_BODY = {"type": "http.response.body", "body": b'{"ok":true}'}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":  # lifespan: nothing to set up
        return
    more = True
    while more:  # read the body to the end, as any real receiver must
        message = await receive()
        more = message.get("more_body", False)
    await send(_START)
    await send(_BODY)
