"""The console's pages (GET): overview, events, one event, rejected requests, destinations
and the confirmation of a destination action. Each needs a live session; without one it sends
the browser to the login page."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hookyard.api.rest import ApiError, check_cursor
from hookyard.console import charts
from hookyard.console.context import PREFIX, Console, Visitor, to_login
from hookyard.console.destinations import ACTIONS, destination_rows
from hookyard.console.filters import ORIGINS, STATUSES, read_filters
from hookyard.console.payload import view
from hookyard.console.pollers import poller_rows
from hookyard.console.queries import (
    BUCKET,
    MINUTES,
    SourceFigures,
    attempt_figures,
    delivery_statuses,
    failures_per_minute,
    source_figures,
)
from hookyard.console.reasons import explain

PAGE = 50  # rows a page

Handler = Callable[[Request, Visitor], Awaitable[Response]]


def page_routes(console: Console) -> list[Route]:
    state = console.state

    def signed_in(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            visitor = await console.visitor(request)
            if visitor is None:
                return to_login(request)
            return await handler(request, visitor)

        return endpoint

    def missing(visitor: Visitor, current: str, what: str) -> Response:
        return console.render("missing.html", visitor, current, status=404, what=what)

    async def overview(request: Request, visitor: Visitor) -> Response:
        now = time.time()
        names = list(state.gateway.destinations)
        start = now - MINUTES * 60
        sources = await state.store.read(lambda conn: source_figures(conn, now))
        attempts = await state.store.read(lambda conn: attempt_figures(conn, names, now))
        failed = await state.store.read(lambda conn: failures_per_minute(conn, now))
        for name in state.gateway.sources:  # quiet ones too, and removed ones that had events
            sources.setdefault(name, SourceFigures())
        events = [sum(f.per_minute[i] for f in sources.values()) for i in range(MINUTES)]
        relays = [d.name for d in state.gateway.destinations.values() if d.relay]
        return console.render(
            "overview.html",
            visitor,
            "overview",
            sources=sorted(sources.items()),
            destinations=await destination_rows(state),
            attempts=attempts,
            events_chart=charts.per_minute(events, start, "events"),
            failed_chart=charts.per_minute(failed, start, "failed attempts"),
            latency={
                name: charts.latency(found.buckets, start, BUCKET)
                for name, found in attempts.items()
            },
            listeners=[(name, state.presence.connected(name)) for name in sorted(relays)],
            pollers=await poller_rows(state, now),
        )

    async def events(request: Request, visitor: Visitor) -> Response:
        configured = tuple(sorted(state.gateway.destinations))
        form = read_filters(request.query_params, configured)
        cursor = request.query_params.get("cursor") or None
        try:  # one no page gave would show the first page again, as if it were the next
            check_cursor(cursor, "evt")
        except ApiError as exc:
            form = replace(form, filters=None, error=str(exc.detail))
        rows: list[dict[str, object]] = []
        if form.filters is not None:
            rows = await state.store.list_events(
                form.filters, cursor=cursor, limit=PAGE + 1, order="desc"
            )
        shown = rows[:PAGE]
        ids = [str(row["id"]) for row in shown]
        statuses = await state.store.read(lambda conn: delivery_statuses(conn, ids))
        return console.render(
            "events.html",
            visitor,
            "events",
            status=200 if form.error is None else 422,
            form=form,
            events=shown,
            statuses={k: sorted(Counter(v).items()) for k, v in statuses.items()},
            older=form.query(cursor=ids[-1]) if len(rows) > PAGE else None,
            paged=cursor is not None,
            sources=sorted(state.gateway.sources),
            destinations=configured,
            origins=ORIGINS,
            delivery_statuses=STATUSES,
        )

    async def event(request: Request, visitor: Visitor) -> Response:
        event_id = request.path_params["event_id"]
        found = await state.store.get_event(event_id)
        raw = await state.store.get_raw(event_id)
        if found is None or raw is None:
            return missing(visitor, "events", f"No event {event_id}.")
        return console.render(
            "event.html",
            visitor,
            "events",
            event=found,
            payload=view(raw[0]),
            destinations=sorted(state.gateway.destinations),
        )

    async def rejected(request: Request, visitor: Visitor) -> Response:
        cursor = request.query_params.get("cursor") or None
        rows, error = [], None
        try:
            rows = await state.store.list_rejected(
                cursor=check_cursor(cursor, "rej"), limit=PAGE + 1
            )
        except ApiError as exc:  # a cursor no page gave
            error = str(exc.detail)
        shown = rows[:PAGE]
        return console.render(
            "rejected.html",
            visitor,
            "rejected",
            status=200 if error is None else 422,
            error=error,
            rejected=shown,
            explain=explain,
            older=shown[-1]["id"] if len(rows) > PAGE else None,
            paged=cursor is not None,
        )

    async def destinations(request: Request, visitor: Visitor) -> Response:
        return console.render(
            "destinations.html", visitor, "destinations", destinations=await destination_rows(state)
        )

    async def confirm(request: Request, visitor: Visitor) -> Response:
        name, slug = request.path_params["name"], request.path_params["action"]
        action = ACTIONS.get(slug)
        if name not in state.gateway.destinations or action is None:
            return missing(
                visitor, "destinations", f"No action {slug!r} on a destination {name!r}."
            )
        return console.render(
            "confirm.html",
            visitor,
            "destinations",
            name=name,
            action=action,
            question=action.question.format(name=name),
        )

    return [
        Route(f"{PREFIX}/", signed_in(overview), methods=["GET"]),
        Route(f"{PREFIX}/events", signed_in(events), methods=["GET"]),
        Route(f"{PREFIX}/events/{{event_id}}", signed_in(event), methods=["GET"]),
        Route(f"{PREFIX}/rejected", signed_in(rejected), methods=["GET"]),
        Route(f"{PREFIX}/destinations", signed_in(destinations), methods=["GET"]),
        Route(f"{PREFIX}/destinations/{{name}}/{{action}}", signed_in(confirm), methods=["GET"]),
    ]
