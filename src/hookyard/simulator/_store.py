"""The simulated objects, kept in (updated_at, id) order so that any page is a slice.

The index is a sorted list of (updated_ts, id): finding where `updated_since` starts, or where a
cursor left off, is a bisect, and a page is a slice, so a request costs O(page), not O(objects).
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right, insort
from typing import Any

from hookyard.simulator._time import Clock, iso

Key = tuple[int, str]  # (updated_ts, id)

RESERVED = frozenset({"id", "object", "version", "created_at", "updated_at"})
STATUSES = ("new", "paid", "shipped", "delivered", "cancelled")


class Store:
    def __init__(self, object_type: str, clock: Clock, rng: random.Random) -> None:
        self.object_type = object_type
        self.clock = clock
        self.rng = rng
        self.objects: dict[str, dict[str, Any]] = {}
        self.newest = 0  # updated_ts of the newest change, deletions included
        self._updated: dict[str, int] = {}  # id -> its key's updated_ts
        self._index: list[Key] = []
        self._seq = 0

    # -- changes ---------------------------------------------------------------------------------

    def create(self, data: dict[str, Any] | None, id: str | None) -> dict[str, Any]:
        if id is None:
            id = self._next_id()
        elif id in self.objects:
            raise ValueError(f"object {id!r} already exists")
        ts = self._touch()
        stamp = iso(ts)
        obj: dict[str, Any] = {
            "id": id,
            "object": self.object_type,
            "version": 1,
            "created_at": stamp,
            "updated_at": stamp,
        }
        _merge(obj, self.default_data() if data is None else data)
        self.objects[id] = obj
        self._updated[id] = ts
        insort(self._index, (ts, id))
        return obj

    def update(self, id: str, data: dict[str, Any] | None) -> dict[str, Any]:
        obj = self._get(id)
        ts = self._touch()
        if self._updated[id] != ts:
            self._unindex(id)
            self._updated[id] = ts
            insort(self._index, (ts, id))
        _merge(obj, data or {})
        obj["version"] += 1
        obj["updated_at"] = iso(ts)
        return obj

    def delete(self, id: str) -> dict[str, Any]:
        """Remove the object; returns its last state, version bumped like any other change."""
        obj = self._get(id)
        ts = self._touch()
        self._unindex(id)
        del self.objects[id], self._updated[id]
        obj["version"] += 1
        obj["updated_at"] = iso(ts)
        return obj

    def seed(self, count: int) -> None:
        """Bulk create: one timestamp, and one sort (linear on already-ordered keys) at the end."""
        ts = self._touch()
        stamp = iso(ts)
        rng, type_ = self.rng, self.object_type
        keys: list[Key] = []
        for _ in range(count):
            id = self._next_id()
            self.objects[id] = {
                "id": id,
                "object": type_,
                "version": 1,
                "created_at": stamp,
                "updated_at": stamp,
                "status": "new",
                "amount": rng.randint(100, 100_000),
            }
            self._updated[id] = ts
            keys.append((ts, id))
        self._index.extend(keys)
        self._index.sort()

    def default_data(self) -> dict[str, Any]:
        return {"status": "new", "amount": self.rng.randint(100, 100_000)}

    def random_change(self) -> tuple[str, str | None, dict[str, Any] | None]:
        """(change, id, data) for mutate: mostly updates, some creates and deletes."""
        roll = self.rng.random()
        if not self._index or roll < 0.15:
            return "created", None, None
        id = self._index[self.rng.randrange(len(self._index))][1]
        if roll < 0.9:
            if self.rng.random() < 0.5:
                return "updated", id, {"status": self.rng.choice(STATUSES)}
            return "updated", id, {"amount": self.rng.randint(100, 100_000)}
        return "deleted", id, None

    # -- queries ---------------------------------------------------------------------------------

    def lower(self, since: float | None) -> int:
        """Index of the first object with updated_at >= since."""
        return 0 if since is None else bisect_left(self._index, (since, ""))

    def upper(self, until: float | None) -> int:
        """Index just past the last object with updated_at < until."""
        return len(self._index) if until is None else bisect_left(self._index, (until, ""))

    def after(self, key: Key) -> int:
        """Index of the first object ordered after key: where a keyset cursor resumes."""
        return bisect_right(self._index, key)

    def keys(self, start: int, stop: int) -> list[Key]:
        return self._index[start:stop]

    def page(self, keys: list[Key]) -> list[dict[str, Any]]:
        objects = self.objects
        return [objects[id] for _, id in keys]

    def updated_ts(self, id: str) -> int:
        return self._updated[id]

    # -- internals -------------------------------------------------------------------------------

    def _touch(self) -> int:
        ts = self.clock.stamp()
        self.newest = max(self.newest, ts)
        return ts

    def _next_id(self) -> str:
        while True:  # skip ids a caller chose explicitly
            self._seq += 1
            id = f"obj_{self._seq:06d}"
            if id not in self.objects:
                return id

    def _get(self, id: str) -> dict[str, Any]:
        try:
            return self.objects[id]
        except KeyError:
            raise KeyError(f"no {self.object_type} {id!r}") from None

    def _unindex(self, id: str) -> None:
        key = (self._updated[id], id)
        i = bisect_left(self._index, key)
        assert self._index[i] == key, "index out of step with objects"
        del self._index[i]


def _merge(obj: dict[str, Any], data: dict[str, Any]) -> None:
    """Caller data never overrides the fields the simulator owns."""
    for name, value in data.items():
        if name not in RESERVED:
            obj[name] = value
