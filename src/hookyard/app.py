"""Builds the ASGI app from the shared state: wiring only.

`/in/...` goes straight to the raw ingest handler (no framework on the hot path); everything
else goes to the FastAPI app (API, health, OpenAPI).
"""

from __future__ import annotations

from typing import Any

from hookyard.api.ingest import IngestApp
from hookyard.api.rest import build_api
from hookyard.state import AppState


class HookyardApp:
    def __init__(self, state: AppState) -> None:
        self.ingest = IngestApp(state)
        self.api = build_api(state)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/in/"):
            await self.ingest(scope, receive, send)
        else:
            await self.api(scope, receive, send)
