"""Export for audit, and import into another instance, byte for byte."""

from __future__ import annotations

import base64

import orjson

from tests.conftest import basic_config, run_hookyard, write_config
from tests.integration.test_ingest import github_headers


async def test_export_then_import_round_trips_byte_for_byte(tmp_path, receiver, fresh_database):
    bodies = [b'{"a": 1}', b"\xff\x00 not utf-8", b"", b"a=1&b=2", b'{"n": "\\u00e9"}' * 500]
    first_dir, second_dir = tmp_path / "one", tmp_path / "two"
    first_dir.mkdir()
    second_dir.mkdir()
    async with run_hookyard(write_config(first_dir, basic_config(receiver.url))) as one:
        for body in bodies:
            await one.client.post("/in/open", content=body, headers={"content-type": "x/y"})
        async with one.api() as api:
            exported = (await api.get("/api/v1/events/export", params={"source": "open"})).content
            partial = await api.get(
                "/api/v1/events/export", params={"source": "open", "field.a": "1"}
            )
    lines = exported.splitlines()
    assert len(lines) == len(bodies)
    assert len(partial.content.splitlines()) == 1
    assert [base64.b64decode(orjson.loads(line)["payload_base64"]) for line in lines] == bodies

    second = write_config(second_dir, basic_config(receiver.url))
    fresh_database()
    async with run_hookyard(second) as two, two.api() as api:
        loaded = await api.post("/api/v1/events/import", content=exported)
        assert loaded.json() == {"imported": len(bodies), "skipped": 0}
        again = await api.post("/api/v1/events/import", content=exported)
        assert again.json() == {"imported": 0, "skipped": len(bodies)}
        reexported = (await api.get("/api/v1/events/export")).content
        first_id = orjson.loads(lines[1])["id"]
        raw = await api.get(f"/api/v1/events/{first_id}/raw")
        broken = await api.post("/api/v1/events/import", content=b'{"id": "evt_x"}\n')
        # Valid shapes that would break the log: an id from the far future (it would top every
        # list and never expire), a time overflowing a date, a NUL PostgreSQL refuses.
        first = orjson.loads(lines[0])
        odd = [
            await api.post("/api/v1/events/import", content=orjson.dumps({**first, **change}))
            for change in (
                {"id": "evt_7ZZZZZZZZZZZZZZZZZZZZZZZZZ"},
                {"received_at": 1e20},
                {"event_type": "a\u0000b"},
            )
        ]
        later_bad = lines[0].replace(b'"origin":"webhook"', b'"origin":"mars"')
        mixed = await api.post("/api/v1/events/import", content=b"\n".join([*lines[:2], later_bad]))
    assert reexported == exported  # the same ids, times, types and bytes
    assert raw.content == bodies[1] and raw.headers["content-type"] == "x/y"
    assert broken.status_code == 422
    assert [answer.status_code for answer in odd] == [422, 422, 422]
    assert "line 1" in broken.json()["message"]
    assert mixed.status_code == 422  # line 3 is bad; lines 1 and 2 were already here
    assert "line 3" in mixed.json()["message"]
    assert "0 events before it" in mixed.json()["message"]


async def test_an_imported_event_s_provider_retry_is_a_duplicate(
    tmp_path, receiver, fresh_database
):
    """Moving to another database (SQLite to PostgreSQL) while providers still retry: the
    imported event's dedup key comes along, so the retry is not a second event."""
    body = b'{"ref": "refs/heads/main"}'
    headers = github_headers(body)
    first_dir, second_dir = tmp_path / "one", tmp_path / "two"
    first_dir.mkdir()
    second_dir.mkdir()
    async with run_hookyard(write_config(first_dir, basic_config(receiver.url))) as one:
        original = (await one.client.post("/in/github", content=body, headers=headers)).json()
        async with one.api() as api:
            exported = (await api.get("/api/v1/events/export", params={"source": "github"})).content
    fresh_database()
    async with run_hookyard(write_config(second_dir, basic_config(receiver.url))) as two:
        async with two.api() as api:
            loaded = await api.post("/api/v1/events/import", content=exported)
            assert loaded.json() == {"imported": 1, "skipped": 0}
        retried = await two.client.post("/in/github", content=body, headers=headers)
    assert retried.json() == {"id": original["id"], "duplicate": True}


async def test_an_export_ends_at_what_was_there_when_it_began(hookyard_factory, receiver):
    """Events arriving while it streams are left for the next export: under steady ingest, an
    export without an end never finished."""
    async with hookyard_factory(basic_config(receiver.url)) as hy, hy.api() as api:
        first = (await hy.client.post("/in/open", content=b"before")).json()["id"]
        store = hy.service.state.store
        export_events = store.export_events

        async def arriving_meanwhile(filters, *, cursor, limit):
            rows = await export_events(filters, cursor=cursor, limit=limit)
            if cursor is None:  # between two pages, a new event arrives
                assert (await hy.client.post("/in/open", content=b"during")).status_code == 200
            return rows

        store.export_events = arriving_meanwhile
        exported = (await api.get("/api/v1/events/export")).content
    assert [orjson.loads(line)["id"] for line in exported.splitlines()] == [first]
