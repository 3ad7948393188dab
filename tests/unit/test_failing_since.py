"""`failing_since` counts one streak of failures; a quiet day starts a new one."""

from __future__ import annotations

import sqlite3
import time

from hookyard.models import Claim, Outcome
from hookyard.store import queries
from hookyard.store.migrate import reference_schema
from hookyard.store.sqlite import connect


def _outcome(status: str) -> Outcome:
    claim = Claim("dlv_1", "evt_1", "app", 1, False, 0.0)
    return Outcome(
        claim,
        time.time(),
        1.0,
        500 if status != "succeeded" else 200,
        None,
        None,
        status,
        time.time(),
    )  # type: ignore[arg-type]


def _conn() -> sqlite3.Connection:
    conn = connect(":memory:")
    conn.executescript(reference_schema("sqlite"))
    return conn


def test_failures_continue_a_streak_and_success_ends_it() -> None:
    conn = _conn()
    (first,) = queries.finish(conn, [_outcome("retrying")])
    assert first is not None
    (still,) = queries.finish(conn, [_outcome("retrying")])
    assert still == first
    assert queries.finish(conn, [_outcome("succeeded")]) == [None]


def test_a_quiet_day_restarts_the_streak() -> None:
    conn = _conn()
    long_ago = time.time() - 10 * 86400
    conn.execute(
        "INSERT INTO destination_state VALUES ('app', 'active', NULL, 0, ?, ?)",
        (long_ago, time.time() - 2 * 86400),
    )
    (since,) = queries.finish(conn, [_outcome("retrying")])
    assert since is not None and since > time.time() - 60
