"""SQL of the relay (relay/): which leases a client's results still hold."""

from __future__ import annotations

from collections.abc import Sequence

from hookyard.models import Claim, Outcome
from hookyard.store import queries
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


def finish_held(
    conn: Conn, batches: Sequence[Sequence[Outcome]]
) -> list[list[tuple[bool, float | None]]]:
    """`queries.finish` for the outcomes whose lease is still held, checked in the same
    transaction (rows locked on PostgreSQL), so that a result reported twice, at once or to
    two processes, is recorded once. Per outcome: whether it was recorded (else it is stale),
    and since when its destination has been failing."""
    answers: list[list[tuple[bool, float | None]]] = []
    for outcomes in batches:
        ids = sorted({o.claim.delivery_id for o in outcomes})  # one lock order: no deadlock
        held: set[tuple[str, float]] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = conn.execute(
                f"SELECT id, lease_until FROM deliveries WHERE id IN {in_list(chunk)}"
                f" AND status = 'in_flight' ORDER BY id{conn.dialect.for_update}",
                chunk,
            )
            held.update((delivery_id, lease_until) for delivery_id, lease_until in rows)
        recorded = []
        for outcome in outcomes:
            lease = (outcome.claim.delivery_id, outcome.claim.lease_until)
            if lease in held:
                held.discard(lease)  # a second result for the same lease is stale
                recorded.append(outcome)
        failing = iter(queries.finish(conn, recorded) if recorded else [])
        kept = {id(outcome) for outcome in recorded}
        answers.append(
            [(True, next(failing)) if id(o) in kept else (False, None) for o in outcomes]
        )
    return answers


def recorded(conn: Conn, attempts: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
    """Which of these (delivery id, attempt number) have their attempt recorded."""
    found: set[tuple[str, int]] = set()
    for start in range(0, len(attempts), 500):
        chunk = attempts[start : start + 500]
        ids = sorted({delivery_id for delivery_id, _ in chunk})
        rows = conn.execute(
            f"SELECT delivery_id, number FROM attempts WHERE delivery_id IN {in_list(ids)}", ids
        )
        wanted = set(chunk)
        found.update(row for row in ((r[0], r[1]) for r in rows) if row in wanted)
    return found
