"""SQL of the relay (relay/): which leases a client's results still hold."""

from __future__ import annotations

from collections.abc import Sequence

from hookyard.models import Claim
from hookyard.store.db import Conn, in_list


def leased(conn: Conn, destination: str, delivery_ids: Sequence[str]) -> dict[str, Claim]:
    """The in-flight deliveries of `destination` among these, as the claims their leases are."""
    found: dict[str, Claim] = {}
    for start in range(0, len(delivery_ids), 500):
        chunk = list(delivery_ids[start : start + 500])
        rows = conn.execute(
            "SELECT id, event_id, attempts, replay, lease_until FROM deliveries"
            f" WHERE id IN {in_list(chunk)} AND destination = ? AND status = 'in_flight'",
            [*chunk, destination],
        )
        for delivery_id, event_id, attempts, replay, lease_until in rows:
            found[delivery_id] = Claim(
                delivery_id, event_id, destination, attempts, bool(replay), lease_until
            )
    return found
