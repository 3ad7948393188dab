"""The console's actions (POST): replay an event, retry a delivery, act on a destination.

Each checks the session and the form's CSRF token before anything else, answers a forged or
stale form with 403 and does nothing, then makes the same store calls as the matching API
endpoint (api/rest.py: replay_event, retry_delivery) and records the same audit action. Success
redirects (303) to the page the operator came from, with a message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hookyard.console.context import PREFIX, Console, Visitor, back
from hookyard.console.destinations import ACTIONS, perform
from hookyard.console.forms import FormRejected, check_csrf, read_form
from hookyard.console.render import page

Handler = Callable[[Request, Visitor, dict[str, str]], Awaitable[Response]]


def waits(states: dict[str, dict[str, Any]], name: str) -> str | None:
    """Why deliveries to `name` do not go now: it is paused or disabled (they are held)."""
    current = states.get(name, {}).get("state", "active")
    if current == "active":
        return None
    until = "resumed" if current == "paused" else "re-enabled"
    return f"{name} is {current}: its deliveries wait until it is {until}."


def action_routes(console: Console) -> list[Route]:
    state = console.state

    def checked(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            visitor = await console.visitor(request)
            if visitor is None:  # no redirect: a lost session must not turn into a GET
                return page("refused.html", 403, reason="your session has ended; log in again")
            try:
                form = await read_form(request)
                check_csrf(request, form, visitor.session.csrf)
            except FormRejected as exc:
                return page("refused.html", 403, reason=str(exc))
            return await handler(request, visitor, form)

        return endpoint

    async def replay(request: Request, visitor: Visitor, form: dict[str, str]) -> Response:
        event_id = request.path_params["event_id"]
        here = f"{PREFIX}/events/{event_id}"
        destination = form.get("destination") or None
        found = await state.store.get_raw(event_id)
        if found is None:
            return back(f"{PREFIX}/events", visitor, f"No event {event_id}.")
        if found[0] is None:
            return back(
                here, visitor, "Retention removed this event's payload; it cannot be replayed."
            )
        if destination is not None and destination not in state.gateway.destinations:
            return back(here, visitor, f"No destination named {destination}.")
        configured = {name: d.ordering for name, d in state.gateway.destinations.items()}
        created = await state.store.replay([event_id], destination, configured)
        if created:
            state.work_ready.set()
        await console.audit(
            visitor, "event.replay", event_id, destination=destination, deliveries=created
        )
        if not created:
            return back(here, visitor, "Nothing to replay: no configured destination had it.")
        targets = [destination] if destination else []
        if destination is None:  # the destinations it had, as the replay chose them
            event = await state.store.get_event(event_id) or {}
            targets = [d["destination"] for d in event.get("deliveries", [])]
        states = await state.store.destination_states()
        held = sorted({note for name in targets if (note := waits(states, name))})
        done = f"Replayed: {created} new deliver{'y' if created == 1 else 'ies'}."
        return back(here, visitor, " ".join([done, *held]))

    async def retry(request: Request, visitor: Visitor, form: dict[str, str]) -> Response:
        delivery_id = request.path_params["delivery_id"]
        delivery = await state.store.get_delivery(delivery_id)
        if delivery is None:
            return back(f"{PREFIX}/events", visitor, f"No delivery {delivery_id}.")
        here = f"{PREFIX}/events/{delivery['event_id']}"
        before = await state.store.retry_delivery(delivery_id)
        if before == "gone":
            return back(here, visitor, "Retention removed this event's payload: nothing to send.")
        if before not in ("dead", "retrying"):
            hint = "replay its event instead" if before == "succeeded" else "it is queued"
            return back(here, visitor, f"The delivery is {before}; {hint}.")
        state.work_ready.set()
        await console.audit(visitor, "delivery.retry", delivery_id, was=before)
        name = delivery["destination"]
        held = waits(await state.store.destination_states(), name)
        if held is not None:  # due again, but the worker leaves it until then
            return back(here, visitor, f"Delivery to {name} is due again, but {held}")
        return back(here, visitor, f"Delivery to {name} will be tried again now.")

    async def destination(request: Request, visitor: Visitor, form: dict[str, str]) -> Response:
        name, slug = request.path_params["name"], request.path_params["action"]
        action = ACTIONS.get(slug)
        if name not in state.gateway.destinations or action is None:
            return back(f"{PREFIX}/destinations", visitor, f"No action {slug} on {name}.")
        message = await perform(console, visitor, name, action)
        return back(f"{PREFIX}/destinations", visitor, message)

    return [
        Route(f"{PREFIX}/events/{{event_id}}/replay", checked(replay), methods=["POST"]),
        Route(f"{PREFIX}/deliveries/{{delivery_id}}/retry", checked(retry), methods=["POST"]),
        Route(f"{PREFIX}/destinations/{{name}}/{{action}}", checked(destination), methods=["POST"]),
    ]
