"""/_sim: drive the simulator over HTTP (for `hookyard demo` and scripts in other languages).

No auth, no rate limit, not counted: these are the test harness, not the provider's API.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from hookyard.simulator._api import json_response

if TYPE_CHECKING:
    from hookyard.simulator import Simulator


async def _data(request: web.Request) -> dict[str, Any] | web.Response:
    """The JSON object in the body ({} when empty), or the 400 to answer."""
    raw = await request.read()
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        return json_response({"error": "bad_request", "message": "body must be a JSON object"}, 400)
    return data


def routes(sim: Simulator) -> list[web.RouteDef]:
    async def create(request: web.Request) -> web.Response:
        data = await _data(request)
        if isinstance(data, web.Response):
            return data
        id = data.pop("id", None)
        try:
            obj = sim.create(data or None, id=None if id is None else str(id))
        except ValueError as exc:
            return json_response({"error": "conflict", "message": str(exc)}, 409)
        return json_response(obj, 201)

    async def update(request: web.Request) -> web.Response:
        data = await _data(request)
        if isinstance(data, web.Response):
            return data
        try:
            return json_response(sim.update(request.match_info["id"], data), 200)
        except KeyError:
            return json_response({"error": "not_found"}, 404)

    async def delete(request: web.Request) -> web.Response:
        try:
            sim.delete(request.match_info["id"])
        except KeyError:
            return json_response({"error": "not_found"}, 404)
        return web.Response(status=204)

    async def mutate(request: web.Request) -> web.Response:
        try:
            count = int(request.query.get("count", "1"))
        except ValueError:
            count = -1
        if count < 0:
            return json_response({"error": "bad_request", "message": "count: an integer >= 0"}, 400)
        changes = sim.mutate(count)
        return json_response([{"change": change, "id": id} for change, id in changes], 200)

    async def stats(request: web.Request) -> web.Response:
        return json_response({**dataclasses.asdict(sim.stats), "objects": len(sim.objects)}, 200)

    return [
        web.post("/_sim/objects", create),
        web.patch("/_sim/objects/{id}", update),
        web.delete("/_sim/objects/{id}", delete),
        web.post("/_sim/mutate", mutate),
        web.get("/_sim/stats", stats),
    ]
