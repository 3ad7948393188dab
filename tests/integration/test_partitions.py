"""PostgreSQL's time partitions of events: retention drops a span whole only where every event
in it is past its age and none waits for delivery, and goes row by row elsewhere; partitions
are made ahead; a version 11 database keeps its events (in events_default)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import psycopg
import pytest

from hookyard.ids import id_time
from hookyard.store.migrate import migrations
from hookyard.store.partitions import span_of
from tests.conftest import (
    Running,
    basic_config,
    query_database,
    run_hookyard,
    until_deadline,
    write_config,
)
from tests.integration.test_ingest import github_headers
from tests.integration.test_retention import all_ids, retention, sweep

pytestmark = pytest.mark.postgres_only

SPAN = 3.0

HELD = """
[sources.held]
verify = "none"

[destinations.parked]
url = "{url}"

[[routes]]
source = "held"
destination = "parked"

[sources.github.retention]
events = "forever"
"""


def partition_names(hy: Running) -> set[str]:
    rows = query_database(
        hy.service.gateway.base_dir,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'events'::regclass",
    )
    return {row[0] for row in rows}


def span_name(event_id: str) -> str:
    return span_of(id_time(event_id), SPAN).name


async def next_span() -> None:
    await asyncio.sleep(SPAN - time.time() % SPAN + 0.05)


async def test_whole_spans_go_where_all_is_past_its_age_and_nothing_waits(
    hookyard_factory, receiver
):
    extra = retention(events="1s", interval="1h", partition_span=f"{SPAN:g}s")
    config = basic_config(receiver.url, extra=extra + HELD.format(url=receiver.url))
    async with hookyard_factory(config) as hy, hy.api() as api:
        assert (await api.post("/api/v1/destinations/parked/pause")).status_code == 200
        await next_span()
        await sweep(hy)  # partitions for the spans ahead
        await next_span()

        async def post(source: str, count: int) -> list[str]:
            ids = []
            for n in range(count):
                body = b'{"n": %d}' % n
                headers = github_headers(body) if source == "github" else {}
                answer = await hy.client.post(f"/in/{source}", content=body, headers=headers)
                assert answer.status_code == 200, answer.text
                ids.append(answer.json()["id"])
            return ids

        whole = await post("open", 5)  # all delivered and past their age: dropped whole
        await next_span()
        beside_waiting = await post("open", 2)
        waiting = await post("held", 1)  # its destination is paused: the span stays
        await next_span()
        beside_forever = await post("open", 2)
        forever = await post("github", 1)  # kept forever: the span stays
        made = partition_names(hy)
        opened = whole + beside_waiting + beside_forever
        spans = {span_name(i) for i in opened + waiting + forever}
        assert spans <= made  # made ahead by the sweep
        # A span goes whole unless it holds an event that must stay. (On a slow machine a
        # group may reach into the next span: the expectations follow where events landed.)
        staying = {span_name(waiting[0]), span_name(forever[0])}
        assert span_name(whole[0]) not in staying
        await receiver.wait_for(len(opened))
        await asyncio.sleep(max(0.0, max(id_time(i) for i in opened) - time.time()))
        await asyncio.sleep(SPAN - time.time() % SPAN + 1.2)  # every span above is past 1 s

        removed: dict[str, int] = {}
        for _ in until_deadline():  # a drop waits 100 ms at most for its lock, then the next sweep
            for kind, count in (await sweep(hy))["last_sweep"]["removed"].items():
                removed[kind] = removed.get(kind, 0) + count
            if not (spans - staying) & partition_names(hy):
                break
        left = partition_names(hy)
        assert not (spans - staying) & left and staying <= left
        assert removed["partitions"] >= len(spans - staying)  # and spans ahead left empty
        gone = len(opened)
        assert removed["events"] == removed["deliveries"] == removed["attempts"] == gone
        assert removed["requests"] == gone
        assert set(await all_ids(api)) == set(waiting) | set(forever)

        base = hy.service.gateway.base_dir
        for orphans in (
            "SELECT count(*) FROM deliveries d WHERE NOT EXISTS"
            " (SELECT 1 FROM events e WHERE e.id = d.event_id)",
            "SELECT count(*) FROM attempts a WHERE NOT EXISTS"
            " (SELECT 1 FROM deliveries d WHERE d.id = a.delivery_id)",
            "SELECT count(*) FROM requests r WHERE NOT EXISTS"
            " (SELECT 1 FROM events e WHERE e.request_id = r.id)",
        ):
            assert query_database(base, orphans) == [(0,)], orphans
        # The tables rows were deleted from were vacuumed, so their space is reused even
        # where autovacuum is off (as on this machine's server).
        vacuumed = query_database(
            base,
            "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema()"
            " AND last_vacuum IS NOT NULL",
        )
        assert {"deliveries", "attempts", "requests"} <= {row[0] for row in vacuumed}

        # Once delivered, the waiting event's span goes too: the next sweep drops it whole.
        assert (await api.post("/api/v1/destinations/parked/resume")).status_code == 200
        await receiver.wait_for(gone + 2)
        held_span = span_name(waiting[0])
        for _ in until_deadline():
            record = (await sweep(hy))["last_sweep"]["removed"]
            if held_span not in partition_names(hy):
                break
            await asyncio.sleep(0.1)
        assert held_span not in partition_names(hy)
        assert record["events"] == 1
        assert await all_ids(api) == forever


async def test_a_drop_is_postponed_while_the_table_is_busy(hookyard_factory, receiver):
    extra = retention(events="1s", interval="1h", partition_span=f"{SPAN:g}s")
    async with hookyard_factory(basic_config(receiver.url, extra=extra)) as hy:
        await next_span()
        await sweep(hy)
        await next_span()  # one with a partition
        old = (await hy.client.post("/in/open", content=b"old")).json()["id"]
        await receiver.wait_for(1)
        await asyncio.sleep(SPAN - time.time() % SPAN + 1.2)
        url = os.environ["HOOKYARD_SERVER__DATABASE"]
        with psycopg.connect(url) as reader:  # a long read holds `events` (an export, say)
            reader.execute("SELECT count(*) FROM events").fetchone()
            started = time.monotonic()
            status = await sweep(hy)
            posted = await hy.client.post("/in/open", content=b"during")
            assert posted.status_code == 200
            assert span_name(old) in partition_names(hy)  # postponed, not waited for
            assert status["last_sweep"]["removed"].get("partitions", 0) == 0
            assert status["last_sweep"]["removed"]["events"] == 1  # row by row instead
            assert time.monotonic() - started < 30  # bounds a hang; not a timing threshold
        for _ in until_deadline():
            await sweep(hy)
            if span_name(old) not in partition_names(hy):
                break
        assert span_name(old) not in partition_names(hy)


async def test_a_version_11_database_keeps_its_events_and_gains_partitions(
    tmp_path: Path, receiver, postgres_url: str, monkeypatch: pytest.MonkeyPatch
):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for number, script in migrations("postgresql"):
            if number <= 11:
                conn.execute(script)
        conn.execute(
            "INSERT INTO events (id, source, origin, received_at, payload, payload_size)"
            " VALUES ('evt_01H000000000000000000000', 'open', 'webhook', 1.0, %s, 3)",
            (b'{"a": "b"}',),
        )
        # Field indexes as an older Hookyard made them: "a" stays configured, "b" does not.
        for field in ("a", "b"):
            name = "events_field_" + hashlib.sha256(field.encode()).hexdigest()[:12]
            conn.execute(
                f"CREATE INDEX {name} ON events ((hookyard_json(payload) #>> '{{{field}}}'))"
            )
    monkeypatch.setenv("HOOKYARD_SERVER__DATABASE", postgres_url)
    extra = retention(events="forever", payloads="forever")  # the sweep at start keeps all
    config = write_config(tmp_path, basic_config(receiver.url, extra=extra))
    config.write_text(config.read_text().replace("[server]", '[server]\nindexed_fields = ["a"]'))
    async with run_hookyard(config) as hy, hy.api() as api:
        assert await all_ids(api) == ["evt_01H000000000000000000000"]
        fresh = (await hy.client.post("/in/open", content=b'{"a": "c"}')).json()["id"]
        assert set(await all_ids(api)) == {"evt_01H000000000000000000000", fresh}
        assert await all_ids(api, **{"field.a": "b"}) == ["evt_01H000000000000000000000"]
        await sweep(hy)  # after the one at start, which makes the partitions ahead
        names = partition_names(hy)
        assert "events_default" in names and len(names) >= 1 + 3  # and the spans ahead
        rows = query_database(
            hy.service.gateway.base_dir,
            "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = current_schema()"
            " AND indexname LIKE 'events%field%' AND tablename IN ('events', 'events_default')",
        )
        # The index of "a" on the old rows was adopted, not built again (a new one would be
        # named events_default_hookyard_json_idx); that of "b", no longer configured, is gone.
        assert sorted(rows) == [
            ("events", "events_field_ca978112ca1b"),
            ("events_default", "events_default_field_ca978112ca1b"),
        ]


async def test_a_span_partly_past_its_age_waits_to_go_whole(hookyard_factory, receiver):
    extra = retention(events="2s", interval="1h", partition_span=f"{SPAN:g}s")
    async with hookyard_factory(basic_config(receiver.url, extra=extra)) as hy:
        await next_span()
        await sweep(hy)
        await next_span()  # one with a partition
        ids = [(await hy.client.post("/in/open", content=b"%d" % n)).json()["id"] for n in range(3)]
        await receiver.wait_for(3)
        span = span_of(id_time(ids[0]), SPAN)
        await asyncio.sleep(max(0.0, span.end + 0.2 - time.time()))
        # The cutoff (2 s ago) is inside the span, past these events: they wait for the rest.
        early = (await sweep(hy))["last_sweep"]["removed"]
        assert early.get("events", 0) == 0 and span.name in partition_names(hy)
        assert early.get("payloads") == 3  # their payloads, though, are past their age
        await asyncio.sleep(max(0.0, span.end + 2.2 - time.time()))
        for _ in until_deadline():
            late = (await sweep(hy))["last_sweep"]["removed"]
            if span.name not in partition_names(hy):
                break
        assert span.name not in partition_names(hy)
        assert late["events"] == 3 and late["partitions"] >= 1


def test_a_span_whose_rows_are_already_in_events_default_stays_there(postgres_url: str):
    from hookyard.ids import id_floor
    from hookyard.store.db import PgConn
    from hookyard.store.migrate import reference_schema
    from hookyard.store.partitions import create_ahead, existing

    now = time.time()
    early = span_of(now + 120, 60)  # a process whose clock runs ahead wrote into it already
    with psycopg.connect(postgres_url, autocommit=True) as raw:
        raw.execute(reference_schema("postgresql"))
        conn = PgConn(raw)
        conn.execute(
            "INSERT INTO events (id, source, origin, received_at, payload_size)"
            " VALUES (?, 'open', 'webhook', ?, 0)",
            (id_floor("evt", early.start + 1), early.start + 1),
        )
        # What a creation cut short by a crash leaves behind is removed first.
        cut = span_of(now - 600, 60)
        conn.execute(f"CREATE TABLE {cut.name} (LIKE events)")
        conn.execute(
            f"ALTER TABLE events_default ADD CONSTRAINT {cut.name}_absent"
            f" CHECK (id < '{cut.low}' OR id >= '{cut.high}') NOT VALID"
        )
        created = create_ahead(conn, now, 60, 60)
        assert conn.execute("SELECT to_regclass(?)", (cut.name,)).fetchone() == (None,)
        assert early.name not in created and created  # the other spans ahead are made
        assert early.name not in {p.name for p in existing(conn)}
        left = conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'events_default'::regclass"
            " AND contype = 'c'"
        ).fetchone()
        assert left == (0,)  # neither the leftover nor the constraint that checked it stays
        assert conn.execute("SELECT to_regclass(?)", (early.name,)).fetchone() == (None,)
        assert conn.execute("SELECT tableoid::regclass::text FROM events").fetchone() == (
            "events_default",
        )


def test_a_step_that_would_run_into_its_span_is_cancelled(postgres_url: str):
    """Creating a partition holds a constraint on events_default that refuses the span's rows:
    the steps that follow are cancelled at a deadline before the span begins (then undone)."""
    from hookyard.store.db import PgConn
    from hookyard.store.partitions import _Postponed, _transaction

    with psycopg.connect(postgres_url, autocommit=True) as raw:
        conn = PgConn(raw)
        started = time.monotonic()
        with pytest.raises(_Postponed), _transaction(conn, "a long step", until=time.time() + 0.2):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 25  # cancelled, not waited out; bounds a hang
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)  # LOCAL to it
