"""Reading a REST API's pages: items, ids, versions, the next page, and clear errors for pages
that are not what the configuration describes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from hookyard.config import ApiConfig
from hookyard.pollers.api import EMPTY_PAGES, Page, PageError, PassGuard, RestApi, parse_time
from hookyard.pollers.client import MAX_RESET_WAIT, reset_wait


def api(**settings: object) -> RestApi:
    config = ApiConfig.model_validate({"url": "https://x/o", **settings})
    return RestApi.build("orders", config, Path("."))


def body(items: list[dict[str, object]], **extra: object) -> bytes:
    return orjson.dumps({"data": items, **extra})


ITEM = {"id": "o1", "updated_at": "2026-11-27T10:00:00Z", "version": 3, "total": 5}


def test_items_ids_versions_and_exact_content() -> None:
    page = api(version_field="version").parse("https://x/", body([ITEM]), {})
    [item] = page.items
    assert (item.id, item.version, item.updated) == ("o1", "3", 1795773600.0)
    assert orjson.loads(item.payload) == ITEM
    assert page.next_url is None  # pagination "none": one page


def test_an_update_time_is_the_version_when_there_is_no_version_field() -> None:
    [item] = api().parse("https://x/", body([ITEM]), {}).items
    assert item.version == "2026-11-27T10:00:00Z"
    [hashed] = api(updated_field=None).parse("https://x/", body([ITEM]), {}).items
    assert hashed.version.startswith("sha256:") and hashed.updated is None


@pytest.mark.parametrize(
    ("settings", "url", "document", "links", "expected"),
    [
        ({"pagination": "cursor"}, "https://x/o?limit=2", {"data": [ITEM], "next_cursor": "c2"},
         {}, "https://x/o?limit=2&cursor=c2"),
        ({"pagination": "cursor"}, "https://x/o", {"data": [ITEM], "next_cursor": None}, {}, None),
        ({"pagination": "next_url", "items": "results"}, "https://x/o?page=1",
         {"results": [ITEM], "next": "/o?page=2"}, {}, "https://x/o?page=2"),
        ({"pagination": "link"}, "https://x/o", {"data": [ITEM]},
         {"next": "https://x/o?page=2"}, "https://x/o?page=2"),
        ({"pagination": "link"}, "https://x/o", {"data": [ITEM]}, {}, None),
        ({"pagination": "page", "page_size": 1}, "https://x/o?page=4", {"data": [ITEM]}, {},
         "https://x/o?page=5"),
        ({"pagination": "page", "page_size": 2}, "https://x/o?page=4", {"data": [ITEM]}, {},
         None),  # a short page is the last
        ({"pagination": "offset", "page_size": 1}, "https://x/o?offset=10", {"data": [ITEM]},
         {}, "https://x/o?offset=11"),
        # An explicit next is followed from an empty page (APIs that filter after paging);
        # page and offset styles have none: an empty page is the last.
        ({"pagination": "cursor"}, "https://x/o", {"data": [], "next_cursor": "c"}, {},
         "https://x/o?cursor=c"),
        ({"pagination": "next_url", "items": "results"}, "https://x/o",
         {"results": [], "next": "/o?page=2"}, {}, "https://x/o?page=2"),
        ({"pagination": "link"}, "https://x/o", {"data": []}, {"next": "https://x/o?page=2"},
         "https://x/o?page=2"),
        ({"pagination": "page", "page_size": 1}, "https://x/o?page=4", {"data": []}, {}, None),
        ({"pagination": "offset", "page_size": 1}, "https://x/o", {"data": []}, {}, None),
        # An empty page naming itself as the next is the end (the cursor does not move when
        # nothing is newer): it failed every pass as "led back to a page fetched already".
        ({"pagination": "cursor"}, "https://x/o?cursor=c1", {"data": [], "next_cursor": "c1"},
         {}, None),
        ({"pagination": "link"}, "https://x/o?page=2", {"data": []},
         {"next": "https://x/o?page=2"}, None),
    ],
)  # fmt: skip
def test_next_page_of_each_style(
    settings: dict[str, object],
    url: str,
    document: dict[str, object],
    links: dict[str, str],
    expected: str | None,
) -> None:
    assert api(**settings).parse(url, orjson.dumps(document), links).next_url == expected


def test_the_first_url_carries_the_window_and_page_size() -> None:
    first = api(pagination="page", limit_param="per_page", params={"status": "all"}).first_url(
        since=1795773600.0, until=1795777200.0
    )
    assert first == (
        "https://x/o?status=all&updated_since=2026-11-27T10:00:00Z"
        "&updated_until=2026-11-27T11:00:00Z&per_page=100&page=1"
    )
    unix = api(time_format="unix_ms", since_param="since").first_url(since=1.5)
    assert unix == "https://x/o?since=1500"


@pytest.mark.parametrize(
    "target", ["https://evil.example/o?page=2", "http://x/o?page=2", "https://x:8443/o?page=2"]
)
def test_a_next_page_on_another_origin_is_refused(target: str) -> None:
    """The API's credentials go with every call: never to a host a response names."""
    with pytest.raises(PageError, match="another origin"):
        api(pagination="link").parse("https://x/o", body([ITEM]), {"next": target})


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"<html>maintenance</html>", "not JSON"),
        (b'{"results": [{"id": 1}]}', "at 'data', found none; the body has lists at 'results'"),
        (b'{"data": {"id": 1}}', "found dict"),
        (b'{"data": "none"}', "found str"),
        (b'{"data": [1, 2]}', "an item is a int"),
        (b'{"data": [{"name": "x", "updated_at": 1}]}', "no usable 'id'"),
        (b'{"data": [{"id": "a"}]}', "has no 'updated_at'"),
        (b'{"data": [{"id": "a", "updated_at": "yesterday"}]}', "not an ISO 8601 time"),
    ],
)
def test_a_page_that_is_not_as_described_is_a_clear_error(raw: bytes, problem: str) -> None:
    with pytest.raises(PageError) as caught:
        api().parse("https://x/", raw, {})
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2026-11-27T10:00:00Z", 1795773600.0),
        ("2026-11-27T11:00:00+01:00", 1795773600.0),
        ("2026-11-27T10:00:00.250Z", 1795773600.25),
        ("2026-11-27T10:00:00", 1795773600.0),  # no offset: UTC
        (1795773600, 1795773600.0),
        ("1795773600", 1795773600.0),
        (1795773600250, 1795773600.25),  # milliseconds
    ],
)
def test_times(value: object, seconds: float) -> None:
    assert parse_time(value) == seconds


def test_a_boolean_is_no_time() -> None:
    with pytest.raises(PageError):
        parse_time(True)


def test_object_urls_escape_the_id() -> None:
    assert api(object_url="https://x/o/{id}").object_url("a/b c") == "https://x/o/a%2Fb%20c"


def test_errors_and_excerpts_are_redacted_of_every_secret() -> None:
    from collections import Counter

    from hookyard.pollers.client import RestClient

    def no_session() -> Any:
        raise AssertionError("no call in this test")

    query = RestClient(api(auth={"query": "api_key", "key": "SUPERSECRET"}), no_session, Counter())
    leaked = "ClientResponseError: 400, url='https://x/o?api_key=SUPERSECRET&page=2'"
    assert "SUPERSECRET" not in query.redact(leaked)
    basic = RestClient(api(auth={"basic": "me:pa55word"}), no_session, Counter())
    assert basic.redact("https://me:pa55word@x/o said pa55word") == "https://***@x/o said ***"
    assert basic.redact("see https://u:other@y/") == "see https://u:***@y/"  # any userinfo
    assert query.shown("https://x/o?api_key=SUPERSECRET&page=2") == "https://x/o?page=2"
    # As they went out: percent-encoded in a query string, base64 in a Basic header.
    encoded = RestClient(api(auth={"query": "k", "key": "Zm9v+/9xQ=="}), no_session, Counter())
    assert "Zm9v" not in encoded.redact("400: bad key in ?k=Zm9v%2B%2F9xQ%3D%3D")
    assert "bWU6" not in basic.redact("echo: Authorization: Basic bWU6cGE1NXdvcmQ=")
    # As yarl sends it ("/" left as is), and however else an error repeats the URL.
    slashed = RestClient(
        api(auth={"query": "api_key", "key": "sk_live/AbC+dEf=="}), no_session, Counter()
    )
    said = slashed.redact("bad request: GET /objects?api_key=sk_live/AbC%2BdEf%3D%3D&page=2")
    assert said == "bad request: GET /objects?api_key=***&page=2"
    assert "AbC" not in slashed.redact("url='https://x/o?page=1&api_key=sk_live%2fAbC%2bdEf%3d'")


def test_malformed_items_among_good_ones_are_skipped_and_named() -> None:
    raw = body([ITEM, {"id": "o2"}, {"name": "no id"}, 7, {**ITEM, "id": "o3"}])
    page = api(pagination="offset", page_size=5).parse("https://x/o", raw, {})
    assert [item.id for item in page.items] == ["o1", "o3"]
    assert [(skip.item_id, str(skip)) for skip in page.skipped] == [
        ("o2", "item o2 has no 'updated_at'"),
        (None, "an item has no usable 'id'"),
        (None, "an item is a int, not an object"),
    ]
    assert page.next_url == "https://x/o?offset=5"  # skipped items count: the page was full


def test_with_no_usable_item_a_page_is_an_error_only_when_strict() -> None:
    raw = body([{"name": "no id"}, {"id": "o2"}])
    with pytest.raises(PageError, match="no usable 'id'"):
        api().parse("https://x/", raw, {})
    page = api().parse("https://x/", raw, {}, strict=False)
    assert page.items == [] and len(page.skipped) == 2


@pytest.mark.parametrize(
    "value",
    [
        float("inf"),
        float("nan"),
        "Infinity",
        "nan",
        "1e400",
        9e15,
        "9999-12-31T23:59:59Z",
        253402300799,
        "253402300799",  # 9999-12-31 in seconds, not 1978 in milliseconds
    ],
)
def test_a_time_that_would_stall_a_cursor_is_refused(value: object) -> None:
    with pytest.raises(PageError, match="up to a day from now"):
        parse_time(value)


def test_an_item_with_a_far_future_update_time_is_skipped() -> None:
    ahead = {**ITEM, "id": "o9", "updated_at": "9999-12-31T23:59:59Z"}
    page = api().parse("https://x/", body([ITEM, ahead]), {})
    assert [item.id for item in page.items] == ["o1"]
    assert [skip.item_id for skip in page.skipped] == ["o9"]


@pytest.mark.parametrize("raw", [b"{}", b'{"data": null}', b'{"data": null, "more": [1]}'])
def test_a_missing_or_null_items_array_is_an_empty_page(raw: bytes) -> None:
    """APIs leave an empty array out (proto3 JSON) or send null (a nil slice)."""
    page = api(pagination="cursor").parse("https://x/o", raw, {})
    assert page.items == [] and page.next_url is None
    # Once the job has run, a missing path is an empty page even beside other lists.
    assert api().parse("https://x/", b'{"results": [{"id": 1}]}', {}, strict=False).items == []


def test_a_pass_of_endless_empty_pages_ends() -> None:
    """An API that links a next page past the end, a new URL each time, is stopped."""
    guard = PassGuard()
    listed = 0
    with pytest.raises(PageError, match="as were the 100 pages before it"):
        for number in range(1, EMPTY_PAGES + 3):
            guard.fetching(f"https://x/o?page={number}", "page")
            guard.listed(Page([], f"https://x/o?page={number + 1}"), "page")
            listed += 1
    assert listed == EMPTY_PAGES


@pytest.mark.parametrize(
    ("reset", "wait"),
    [
        ("30", 30.0),  # seconds from now
        ("1700000060", 60.0),  # a unix time in seconds (GitHub)
        ("1700000060000", 60.0),  # in milliseconds: it read as 54,000 years
        ("1699999990", 0.0),  # passed already
        ("99999999999", MAX_RESET_WAIT),  # centuries away: a day at most
        ("soon", 1.0),
        ("nan", 1.0),
        (None, 1.0),
    ],
)
def test_a_rate_limit_reset_is_read_in_each_form_apis_send(reset: str | None, wait: float) -> None:
    assert reset_wait(reset, now=1_700_000_000.0) == wait
