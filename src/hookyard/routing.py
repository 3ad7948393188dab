"""Pure matching of events to destinations: event-type globs and simple payload conditions."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_MISSING = object()


def _lookup(document: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(document, dict) and part in document:
            document = document[part]
        elif isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        else:
            return _MISSING
    return document


@dataclass(frozen=True, slots=True)
class Condition:
    path: str
    op: str  # equals | in | exists
    value: Any

    @classmethod
    def parse(cls, path: str, spec: Any) -> Condition:
        if isinstance(spec, dict):
            ((op, value),) = spec.items()
            return cls(path, op, value)
        return cls(path, "equals", spec)

    def holds(self, document: Any) -> bool:
        found = _lookup(document, self.path)
        if self.op == "exists":
            return (found is not _MISSING) == bool(self.value)
        if found is _MISSING:
            return False
        if self.op == "in":
            return any(_same(found, v) for v in self.value)
        return _same(found, self.value)


def _same(a: Any, b: Any) -> bool:
    # JSON true must not equal 1, as Python's == would have it.
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


@dataclass(frozen=True, slots=True)
class Route:
    source: str
    destinations: tuple[str, ...]
    type_pattern: re.Pattern[str] | None  # None: every type
    conditions: tuple[Condition, ...]

    @classmethod
    def build(
        cls, source: str, destinations: list[str], types: list[str] | None, where: dict[str, Any]
    ) -> Route:
        pattern = None
        if types is not None:
            pattern = re.compile("|".join(f"(?:{fnmatch.translate(t)})" for t in types))
        conditions = tuple(Condition.parse(p, s) for p, s in where.items())
        return cls(source, tuple(destinations), pattern, conditions)

    def matches(self, event_type: str | None, document: Callable[[], Any]) -> bool:
        if self.type_pattern is not None and not self.type_pattern.match(event_type or ""):
            return False
        if self.conditions:
            parsed = document()
            return all(c.holds(parsed) for c in self.conditions)
        return True


def ordering_key(ordering: str | None, source: str, document: Callable[[], Any]) -> str | None:
    """The key a destination keeps deliveries in order by: the source, or a payload field
    (missing fields share the empty key; non-string values their JSON text)."""
    if ordering is None:
        return None
    if ordering == "source":
        return source
    found = _lookup(document(), ordering.removeprefix("field:"))
    if found is _MISSING:
        return ""
    return found if isinstance(found, str) else json.dumps(found, sort_keys=True)


def destinations_for(
    routes: tuple[Route, ...], event_type: str | None, document: Callable[[], Any]
) -> list[str]:
    """Destinations an event goes to, each once, in route order. `document` parses the payload
    lazily: only routes with payload conditions pay for JSON parsing."""
    chosen: list[str] = []
    for route in routes:
        if route.matches(event_type, document):
            chosen.extend(d for d in route.destinations if d not in chosen)
    return chosen
