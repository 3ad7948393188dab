"""The store and queue contract, run against both backends (see conftest.py's `backend`).

Where a promise concerns several processes, the PostgreSQL run uses two stores on the same
database (two processes' worth of connections and writer threads); SQLite, owned by one
process, runs the same claims through its one store.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import psycopg
import pytest

from hookyard.ids import new_id
from hookyard.models import NewEvent, NewRequest, Outcome, Pace, Rejected
from hookyard.store import Store, open_store, queries
from hookyard.store.db import PgConn
from hookyard.store.migrate import SCHEMA_VERSION, migrations, reference_schema
from hookyard.store.postgres import PostgresStore
from tests.conftest import DEADLINE, until_deadline

Opener = Callable[[], Store]


@pytest.fixture
async def open_stores(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Opener]:
    """Opens stores on one database: on PostgreSQL each call is another "process"; on SQLite
    every call returns the same store."""
    url = (
        request.getfixturevalue("postgres_url")
        if backend == "postgresql"
        else f"sqlite:///{tmp_path / 'contract.db'}"
    )
    opened: list[Store] = []

    def opener() -> Store:
        if opened and backend == "sqlite":
            return opened[0]
        opened.append(open_store(url, tmp_path))
        return opened[-1]

    yield opener
    for store in opened:
        store.close()


def _request(
    source: str, keys: list[str], destinations: list[tuple[str, str | None]]
) -> NewRequest:
    now = time.time()
    request_id = new_id("req")
    events = [
        NewEvent(
            id=new_id("evt"),
            source=source,
            origin="webhook",
            received_at=now,
            provider_event_id=key,
            event_type="thing.happened",
            dedup_keys=(key,),
            content_type="application/json",
            payload=b'{"n": 1}',
            destinations=tuple(destinations),
        )
        for key in keys
    ]
    return NewRequest(
        id=request_id,
        source=source,
        received_at=now,
        method="POST",
        path=f"/in/{source}",
        query="",
        headers=b"[]",
        peer="127.0.0.1",
        body=None,
        events=events,
    )


async def _queue(store: Store, count: int, key: str | None = None, dest: str = "app") -> None:
    for _ in range(count):
        await store.ingest(_request("src", [new_id("k")], [(dest, key)]))


def _done(claim, status: str = "succeeded") -> Outcome:  # type: ignore[no-untyped-def]
    return Outcome(
        claim=claim,
        started_at=time.time(),
        duration_ms=1.0,
        status_code=200 if status == "succeeded" else 500,
        response_excerpt=None,
        error=None,
        status=status,  # type: ignore[arg-type]
        next_attempt_at=time.time() + (0 if status == "succeeded" else 3600),
    )


async def test_duplicates_are_one_event_across_processes(open_stores: Opener) -> None:
    first, second = open_stores(), open_stores()
    [original] = await first.ingest(_request("src", ["dup-1"], [("app", None)]))
    [again] = await second.ingest(_request("src", ["dup-1"], [("app", None)]))
    assert not original.duplicate
    assert again.duplicate and again.event_id == original.event_id
    [other_source] = await second.ingest(_request("other", ["dup-1"], [("app", None)]))
    assert not other_source.duplicate  # keys are per source
    assert len(await first.list_deliveries(destination="app")) == 2


async def test_concurrency_holds_across_processes(open_stores: Opener) -> None:
    first, second = open_stores(), open_stores()
    await _queue(first, 10)
    pace = {"app": Pace(free=10, concurrency=3, rate=None)}
    a = await first.claim(pace, 100, lease=30)
    b = await second.claim(pace, 100, lease=30)
    assert len(a.claims) + len(b.claims) == 3
    assert "app" in b.blocked
    await first.finish([_done(c) for c in a.claims])
    c = await second.claim(pace, 100, lease=30)
    assert len(c.claims) == len(a.claims)  # the finished ones' slots are free again


async def test_answered_deliveries_free_their_slots_before_their_records_commit(
    open_stores: Opener,
) -> None:
    """A worker's deliveries whose answers are in (Pace.answered) take no slot, but only while
    they still hold that worker's lease; read when the claim runs, not when it was queued."""
    first, second = open_stores(), open_stores()
    await _queue(first, 10)
    full = await first.claim({"app": Pace(free=10, concurrency=3, rate=None)}, 100, lease=30)
    assert len(full.claims) == 3
    answered: set[tuple[str, float]] = set()

    def pace(answered_by_first: bool) -> dict[str, Pace]:
        callable_ = answered.copy if answered_by_first else None
        return {"app": Pace(free=10, concurrency=3, rate=None, answered=callable_)}

    one, two, _ = full.claims
    answered.add((one.delivery_id, one.lease_until))
    answered.add((two.delivery_id, two.lease_until + 1))  # not its lease: still counted
    answered.add(("dlv_not_leased", one.lease_until))  # not leased at all: frees nothing
    more = await first.claim(pace(True), 100, lease=30)
    assert len(more.claims) == 1
    assert (await second.claim(pace(False), 100, lease=30)).claims == []  # another worker's

    # Once the answered one's record is in, its slot is not freed a second time.
    await first.finish([_done(one)])
    assert (await first.claim(pace(True), 100, lease=30)).claims == []

    # The answers are read when the claim runs: one that comes in while it waits counts.
    holding, gate = threading.Event(), threading.Event()

    def hold(conn) -> None:  # type: ignore[no-untyped-def]
        if not gate.is_set():
            holding.set()
            gate.wait(DEADLINE)

    first.writer.commit_hook = hold
    held = asyncio.create_task(_queue(first, 1))
    for _ in until_deadline():
        if holding.is_set():
            break
        await asyncio.sleep(0.01)
    waiting = asyncio.create_task(first.claim(pace(True), 100, lease=30))
    await asyncio.sleep(0.05)
    answered.add((two.delivery_id, two.lease_until))
    gate.set()
    await held
    assert len((await waiting).claims) == 1


async def test_a_lease_run_out_frees_nothing_twice_and_open_requests_still_count(
    open_stores: Opener,
) -> None:
    """An answered lease that has run out is not subtracted again (the database no longer
    counts it), and the worker's own open requests cap its claim even when their leases ran
    out mid-request."""
    store = open_stores()
    await _queue(store, 3)
    [expired] = (
        await store.claim({"app": Pace(free=1, concurrency=1, rate=None)}, 100, lease=-1)
    ).claims
    run_out = {(expired.delivery_id, expired.lease_until)}
    answered = {"app": Pace(free=5, concurrency=1, rate=None, answered=lambda: run_out)}
    assert len((await store.claim(answered, 100, lease=30)).claims) == 1
    opened = {"app": Pace(free=5, concurrency=2, rate=None, sending=lambda: 2)}
    nothing = await store.claim(opened, 100, lease=30)
    assert nothing.claims == [] and "app" in nothing.blocked


async def test_claims_carry_what_to_send(open_stores: Opener) -> None:
    store = open_stores()
    await _queue(store, 2)
    claimed = await store.claim({"app": Pace(free=10, concurrency=10, rate=None)}, 100, lease=30)
    assert len(claimed.claims) == 2
    for claim in claimed.claims:
        event = claimed.events[claim.event_id]
        assert (event.id, event.source, event.payload) == (claim.event_id, "src", b'{"n": 1}')


async def test_rate_limit_is_shared_and_says_when_to_come_back(open_stores: Opener) -> None:
    first, second = open_stores(), open_stores()
    await _queue(first, 10)
    pace = {"app": Pace(free=10, concurrency=10, rate=2.0)}
    a = await first.claim(pace, 100, lease=30)
    b = await second.claim(pace, 100, lease=30)
    assert len(a.claims) + len(b.claims) == 2  # a bucket of one second's worth
    assert b.retry_in is not None and 0 < b.retry_in <= 0.5
    time.sleep(0.6)
    c = await second.claim(pace, 100, lease=30)
    assert len(c.claims) == 1


async def test_a_paused_destination_is_not_claimed_anywhere(open_stores: Opener) -> None:
    first, second = open_stores(), open_stores()
    await _queue(first, 3)
    assert await first.set_destination_state("app", "paused", "maintenance")
    pace = {"app": Pace(free=10, concurrency=10, rate=None)}
    held = await second.claim(pace, 100, lease=30)
    assert held.claims == [] and held.blocked == {"app"}
    assert [d["status"] for d in await second.list_deliveries()] == ["held"] * 3
    assert await second.set_destination_state("app", "active", None)
    assert len((await first.claim(pace, 100, lease=30)).claims) == 3


async def test_ordering_key_lets_one_through_at_a_time(open_stores: Opener) -> None:
    first, second = open_stores(), open_stores()
    await _queue(first, 3, key="customer-1")
    await _queue(first, 1, key="customer-2")
    pace = {"app": Pace(free=10, concurrency=10, rate=None)}
    a = await first.claim(pace, 100, lease=30)
    b = await second.claim(pace, 100, lease=30)
    assert len(a.claims) == 2 and b.claims == []  # the head of each key
    customer_1 = min(a.claims, key=lambda c: c.delivery_id)
    await first.finish([_done(customer_1)])
    c = await second.claim(pace, 100, lease=30)
    assert len(c.claims) == 1 and c.claims[0].delivery_id > customer_1.delivery_id


async def test_an_expired_lease_returns_to_the_queue(open_stores: Opener) -> None:
    first, second = open_stores(), open_stores()
    await _queue(first, 1)
    pace = {"app": Pace(free=10, concurrency=10, rate=None)}
    [lost] = (await first.claim(pace, 100, lease=0.2)).claims
    assert (await second.claim(pace, 100, lease=30)).claims == []
    time.sleep(0.3)
    [again] = (await second.claim(pace, 100, lease=30)).claims
    assert again.delivery_id == lost.delivery_id and again.attempt == 2
    await first.finish([_done(lost, "retrying")])  # the dead worker's late answer is ignored
    [delivery] = await second.list_deliveries()
    assert delivery["status"] == "in_flight"
    await second.finish([_done(again)])
    [delivery] = await first.list_deliveries()
    assert delivery["status"] == "succeeded"


async def test_a_scheduled_job_runs_once_per_interval_across_processes(
    open_stores: Opener,
) -> None:
    first, second = open_stores(), open_stores()
    assert await first.take_job("maintenance", 600, "a")
    assert not await second.take_job("maintenance", 600, "b")
    assert not await first.take_job("maintenance", 600, "a")
    assert await second.take_job("other", 600, "b")


async def test_replay_and_retry_dead(open_stores: Opener) -> None:
    store = open_stores()
    await _queue(store, 1)
    pace = {"app": Pace(free=10, concurrency=10, rate=None)}
    [claim] = (await store.claim(pace, 100, lease=30)).claims
    await store.finish([_done(claim, "dead")])
    assert await store.retry_dead("app") == 1
    assert await store.replay([claim.event_id], None, {"app": None}) == 1
    statuses = sorted(d["status"] for d in await store.list_deliveries())
    assert statuses == ["pending", "pending"]


async def test_a_replay_of_what_died_run_twice_sends_nothing_twice(open_stores: Opener) -> None:
    """Also while the first replay's deliveries still wait (a paused or slow destination, a
    double click): the second made as many again."""
    store = open_stores()
    await _queue(store, 1)
    pace = {"app": Pace(free=10, concurrency=10, rate=None)}
    [claim] = (await store.claim(pace, 100, lease=30)).claims
    await store.finish([_done(claim, "dead")])
    assert await store.replay([claim.event_id], None, {"app": None}, "dead") == 1
    assert await store.replay([claim.event_id], None, {"app": None}, "dead") == 0
    [again] = (await store.claim(pace, 100, lease=30)).claims
    await store.finish([_done(again, "dead")])  # the replay died too: it may go again, once
    assert await store.replay([claim.event_id], None, {"app": None}, "dead") == 1
    assert await store.replay([claim.event_id], None, {"app": None}, "dead") == 0


async def test_retrying_the_dead_moves_each_event_s_latest_delivery_only(
    open_stores: Opener,
) -> None:
    """An event whose replay succeeded stays as it is; of one that died twice (its replay
    too), one delivery goes: every dead row moved, and events went out again or twice."""
    store = open_stores()
    await _queue(store, 2)
    pace = {"app": Pace(free=10, concurrency=10, rate=None)}
    first = (await store.claim(pace, 100, lease=30)).claims
    await store.finish([_done(claim, "dead") for claim in first])
    events = sorted(claim.event_id for claim in first)
    assert await store.replay(events, None, {"app": None}, "dead") == 2
    replays = sorted((await store.claim(pace, 100, lease=30)).claims, key=lambda c: c.event_id)
    await store.finish([_done(replays[0], "succeeded"), _done(replays[1], "dead")])
    assert await store.retry_dead("app") == 1
    [due] = (await store.claim(pace, 100, lease=30)).claims
    assert due.event_id == events[1]


async def test_a_late_claim_does_not_wind_the_rate_bucket_back(open_stores: Opener) -> None:
    """A claim whose `now` is older than the bucket's stamp (it waited for the writer, or its
    host's clock is behind) must not credit the same time twice."""
    store = open_stores()
    await _queue(store, 40)
    start = time.time()

    def claim_at(at: float, most: int) -> int:
        pace = {"app": Pace(free=most, concurrency=40, rate=10.0)}
        request = (at, 30.0, pace, most)
        return len(store.writer.call(lambda conn: queries.claim(conn, [request]))[0].claims)

    # 10, then 2 of the 5 refilled (3 left, stamped +0.5), then the late claim takes those 3
    # (stamping +0.1 before the fix), then +1.0: 5 refilled since +0.5, not 9 since +0.1.
    taken = [claim_at(start + at, most) for at, most in ((0, 40), (0.5, 2), (0.1, 40), (1, 40))]
    assert taken == [10, 2, 3, 5]  # a bucket of 10 and one second's refill: 20


async def test_an_older_process_keeps_writing_after_a_migration_added_columns(
    open_stores: Opener,
) -> None:
    """During a rolling upgrade, processes of the previous release write to tables that a
    migration has just given new columns: every INSERT names its columns."""
    store = open_stores()

    def add_a_column_everywhere(conn) -> None:  # type: ignore[no-untyped-def]
        tables = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            if conn.dialect.name == "sqlite"
            else "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            " UNION SELECT relname FROM pg_class WHERE relkind = 'p'"
            " AND relnamespace = current_schema()::regnamespace"
        ).fetchall()
        for (table,) in tables:
            if not table.startswith("events_"):  # partitions follow their parent
                conn.execute(f"ALTER TABLE {table} ADD COLUMN added_later TEXT")

    store.writer.call(add_a_column_everywhere)
    await _queue(store, 2)
    pace = {"app": Pace(free=10, concurrency=10, rate=None)}
    claims = (await store.claim(pace, 100, lease=30)).claims
    await store.finish([_done(claim) for claim in claims])
    now = time.time()
    rejected = Rejected(new_id("rej"), "src", now, 401, "bad_signature", "no", "POST", "/in/src",
                        "", b"[]", None, b"x", 1)  # fmt: skip
    await store.record_rejected([rejected], keep=100)
    await store.record_audit((now, None, "admin", "retry", "app", None))
    assert [d["status"] for d in await store.list_deliveries()] == ["succeeded"] * 2
    assert len(await store.list_rejected()) == 1 and len(await store.list_audit()) == 1


def _catalog(url: str, schema: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_schema = %s ORDER BY 1, 2",
            (schema,),
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1",
            (schema,),
        ).fetchall()
    return [*columns, *((name, definition.replace(schema, "S")) for name, definition in indexes)]


@pytest.mark.postgres_only  # the SQLite twin is tests/unit/test_schema.py
def test_every_postgres_migration_gives_the_reference_schema() -> None:
    from tests.conftest import POSTGRES_URL

    stepwise, reference = (
        "hy_steps_" + new_id("s")[-8:].lower(),
        "hy_ref_" + new_id("s")[-8:].lower(),
    )
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for schema, scripts in (
            (stepwise, [script for _, script in migrations("postgresql")]),
            (reference, [reference_schema("postgresql")]),
        ):
            conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(f"SET search_path = {schema}")
            for script in scripts:
                conn.execute(script)
            conn.execute("RESET search_path")
    try:
        assert _catalog(POSTGRES_URL, stepwise) == _catalog(POSTGRES_URL, reference)
        assert max(n for n, _ in migrations("postgresql")) == SCHEMA_VERSION
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {stepwise} CASCADE")
            conn.execute(f"DROP SCHEMA {reference} CASCADE")


def _hold_connect(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> tuple[threading.Event, threading.Event, list[psycopg.Connection]]:
    """Make `store.connect` wait for `release` (`entered` says it has begun); what it then
    makes is kept in the list, for the test to see whether anyone closed it."""
    entered, release = threading.Event(), threading.Event()
    made: list[psycopg.Connection] = []
    connect = store.connect

    def held() -> PgConn:
        entered.set()
        release.wait(DEADLINE)
        conn = connect()
        made.append(conn.raw)
        return conn

    monkeypatch.setattr(store, "connect", held)
    return entered, release, made


@pytest.mark.postgres_only
async def test_a_lock_wait_cancelled_while_connecting_closes_its_connection(
    open_stores: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutdown cancels housekeeping wherever it is; a connection made for a cancelled wait
    must be closed, not left to the garbage collector."""
    store = open_stores()
    assert isinstance(store, PostgresStore)
    entered, release, made = _hold_connect(store, monkeypatch)

    async def hold() -> None:
        async with store.exclusively("cancelled"):
            raise AssertionError("the lock was never meant to be reached")

    task = asyncio.create_task(hold())
    assert await asyncio.to_thread(entered.wait, DEADLINE)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    for _ in until_deadline():
        if made and made[0].closed:
            break
        await asyncio.sleep(0.05)
    assert made and made[0].closed


async def test_leases_wait_for_no_flush_and_what_shares_their_commit_does(
    open_stores: Opener,
) -> None:
    """A claim commits without waiting for the disk (a lease lost to a power cut only sends
    an event again); ingest, finishes and give-backs wait, and so does a claim that shares
    their transaction."""
    store = open_stores()
    flushes: list[bool] = []
    holding, gate = threading.Event(), threading.Event()

    def record(conn) -> None:  # type: ignore[no-untyped-def]
        if conn.dialect.name == "sqlite":
            flushes.append(conn.execute("PRAGMA synchronous").fetchone()[0] == 2)  # FULL
        else:
            flushes.append(conn.execute("SHOW synchronous_commit").fetchone()[0] == "on")
        if gate.is_set() or not holding.is_set():
            return
        gate.wait(DEADLINE)  # the writer holds this commit; what arrives meanwhile groups

    store.writer.commit_hook = record
    await _queue(store, 2)
    pace = {"app": Pace(free=1, concurrency=10, rate=None)}
    claimed = await store.claim(pace, 1, lease=30)
    await store.release(claimed.claims)
    claimed = await store.claim(pace, 1, lease=30)
    await store.finish([_done(c) for c in claimed.claims])
    assert flushes == [True, True, False, True, False, True]

    flushes.clear()
    holding.set()
    held = asyncio.create_task(_queue(store, 1))
    for _ in until_deadline():
        if flushes:
            break
        await asyncio.sleep(0.01)
    lease = asyncio.create_task(store.claim(pace, 1, lease=30))
    ingest = asyncio.create_task(_queue(store, 1))
    for _ in until_deadline():
        if store.writer.pending >= 2:
            break
        await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(held, lease, ingest)
    assert flushes == [True, True]  # the claim went out with the ingest's flushed commit
    assert len(lease.result().claims) == 1


@pytest.mark.postgres_only
def test_a_connection_made_after_its_event_loop_ended_is_closed(
    backend: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PostgresStore(postgres_url)
    entered, release, made = _hold_connect(store, monkeypatch)

    async def main() -> None:  # ends, and asyncio.run cancels the wait, while it connects
        asyncio.get_running_loop().create_task(store.connect_async())
        assert await asyncio.to_thread(entered.wait, DEADLINE)

    asyncio.run(main())
    release.set()
    for _ in until_deadline():
        if made and made[0].closed:
            break
        time.sleep(0.05)
    assert made and made[0].closed


def test_only_psycopg_s_own_nul_refusal_is_retried_with_the_nul_replaced(
    postgres_url: str,
) -> None:
    """PostgreSQL text refuses NUL (SQLite stores it): runs on PostgreSQL whatever the backend."""
    conn = PgConn(psycopg.connect(postgres_url, autocommit=True))
    try:
        assert conn.execute("SELECT ?::text", ("a\x00b",)).fetchone() == ("a\ufffdb",)
        conn.execute("BEGIN")
        # A server error that mentions NULL is the server's: raised as it is, not retried.
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            conn.execute("SELECT CAST(? AS int)", ("NULL",))
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def test_what_ingest_stores_reads_back_exactly(open_stores: Opener) -> None:
    """Every byte and character of a request comes back as it went in, including those an
    escaping layer could mangle (backslash, tab, CR, newline, quotes, a lone \\N, "")."""
    store = open_stores()
    odd = "tab\tnewline\ncr\rbackslash\\ \\N quote' \" é ✓"
    request = _request("src", ["odd-1"], [("app", odd)])
    request.path = "/in/src/" + odd
    request.query = "q=" + odd
    request.headers = orjson.dumps([["x-odd", odd], ["x-empty", ""], ["x-null", "\\N"]])
    request.peer = None
    [event] = request.events
    event.event_type = odd
    event.content_type = "\\N"
    event.provider_event_id = ""
    event.payload = bytes(range(256)) + b"\\N\\\\x00"
    [accepted] = await store.ingest(request)
    stored = await store.get_event(accepted.event_id)
    assert stored is not None
    assert (stored["event_type"], stored["content_type"]) == (odd, "\\N")
    assert stored["provider_event_id"] == ""
    assert stored["request"] == {
        "method": "POST",
        "path": "/in/src/" + odd,
        "query": "q=" + odd,
        "headers": [["x-odd", odd], ["x-empty", ""], ["x-null", "\\N"]],
        "peer": None,
    }
    key = await store.read(  # type: ignore[attr-defined]
        lambda conn: conn.execute(
            "SELECT ordering_key FROM deliveries WHERE event_id = ?", (accepted.event_id,)
        ).fetchone()[0]
    )
    assert key == odd
    assert await store.get_raw(accepted.event_id) == (event.payload, "\\N")


async def test_a_batch_with_a_duplicate_looks_its_keys_up_by_primary_key(
    backend: str, open_stores: Opener
) -> None:
    """A batch whose keys are not all new takes back the keys it added. On SQLite a row-value
    IN list made that a scan of the whole dedup table per batch: 745 events/s instead of
    7,600 when duplicates kept coming."""
    from hookyard.store import queries

    store = open_stores()
    first = await store.ingest(_request("src", ["key:known"], []))
    seen: list[str] = []

    def batch(conn):  # type: ignore[no-untyped-def]
        if backend == "sqlite":
            conn.set_trace_callback(seen.append)
        try:
            return queries.ingest(
                conn,
                [
                    queries.ingest_rows(_request("src", ["key:new"], [])),
                    queries.ingest_rows(_request("src", ["key:known"], [])),
                ],
            )
        finally:
            if backend == "sqlite":
                conn.set_trace_callback(None)

    fresh, again = await asyncio.to_thread(store.writer.call, batch)
    assert not fresh[0].duplicate
    assert again[0].duplicate and again[0].event_id == first[0].event_id
    if backend == "sqlite":
        removals = [sql for sql in seen if sql.startswith("DELETE FROM dedup")]
        assert removals
        for sql in removals:
            rows = await store.read(
                lambda conn, sql=sql: conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            )
            plan = " ".join(row[3] for row in rows)
            assert "PRIMARY KEY" in plan and "SCAN dedup" not in plan, plan


async def test_statements_with_a_percent_sign_and_many_placeholders_run_as_written(
    open_stores: Opener,
) -> None:
    """PostgreSQL statements go as written, with numbered placeholders: a `%` is no escape,
    and a statement with thousands of parameters (a multi-row insert) needs no parsing."""
    store = open_stores()
    values = [f"v{n}%" for n in range(3000)]

    def run(conn):  # type: ignore[no-untyped-def]
        placeholders = ",".join("?" * len(values))
        return conn.execute(
            "SELECT count(*) FROM (SELECT 'a%b' AS x) AS t"
            f" WHERE x LIKE 'a%' AND ? IN ({placeholders})",
            ["v2999%", *values],
        ).fetchone()[0]

    assert await asyncio.to_thread(store.writer.call, run) == 1
