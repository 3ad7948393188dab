"""The events page's filter form, read into the API's EventFilter with the API's own checks
(times and payload field paths), so that the console and `GET /api/v1/events` agree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from hookyard.api.rest import ApiError, field_filters, parse_time
from hookyard.models import DeliveryStatus, EventFilter, Origin

STATUSES: tuple[str, ...] = get_args(DeliveryStatus)
ORIGINS: tuple[str, ...] = get_args(Origin)
FORM_FIELDS = (
    "source",
    "type",
    "origin",
    "status",
    "destination",
    "provider_event_id",
    "since",
    "until",
    "field",
)


@dataclass(frozen=True)
class FilterForm:
    values: dict[str, str]  # as typed, to fill the form again
    filters: EventFilter | None  # None when a value is invalid
    error: str | None

    def query(self, **extra: str) -> str:
        """The form's values (and `extra`) as a query string, for paging links."""
        return urlencode({**{k: v for k, v in self.values.items() if v}, **extra})


def _choice(value: str, allowed: tuple[str, ...], name: str) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise ApiError(422, "invalid_parameter", f"{name}: expected one of {', '.join(allowed)}")
    return value


def read_filters(params: QueryParams, destinations: tuple[str, ...]) -> FilterForm:
    values = {name: params.get(name, "").strip() for name in FORM_FIELDS}
    try:
        fields: tuple[tuple[str, str], ...] = ()
        if values["field"]:
            path, equals, value = values["field"].partition("=")
            if not equals:
                raise ApiError(422, "invalid_parameter", "payload field: write it as path=value")
            fields = field_filters([(path.strip(), value.strip())])
        filters = EventFilter(
            source=values["source"] or None,
            type=values["type"] or None,
            origin=_choice(values["origin"], ORIGINS, "origin"),
            status=_choice(values["status"], STATUSES, "status"),
            destination=_choice(values["destination"], destinations, "destination"),
            provider_event_id=values["provider_event_id"] or None,
            # datetime-local inputs carry no offset: the console shows and reads UTC.
            since=parse_time(values["since"] or None, "since"),
            until=parse_time(values["until"] or None, "until"),
            fields=fields,
        )
    except ApiError as exc:
        return FilterForm(values, None, str(exc.detail))
    return FilterForm(values, filters, None)
