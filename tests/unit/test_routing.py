from __future__ import annotations

from hookyard.routing import Route, destinations_for


def _doc(value):
    return lambda: value


def test_type_globs() -> None:
    route = Route.build("s", ["a"], ["push", "pull_request.*"], {})
    assert route.matches("push", _doc(None))
    assert route.matches("pull_request.opened", _doc(None))
    assert not route.matches("pull_request", _doc(None))
    assert not route.matches(None, _doc(None))
    assert Route.build("s", ["a"], None, {}).matches(None, _doc(None))


def test_conditions_equals_in_exists() -> None:
    route = Route.build(
        "s",
        ["a"],
        None,
        {"data.status": "paid", "data.amount": {"in": [1, 2]}, "data.note": {"exists": False}},
    )
    assert route.matches(None, _doc({"data": {"status": "paid", "amount": 2}}))
    assert not route.matches(None, _doc({"data": {"status": "paid", "amount": 3}}))
    assert not route.matches(None, _doc({"data": {"status": "paid", "amount": 1, "note": "x"}}))
    assert not route.matches(None, _doc(None))  # not JSON: conditions cannot hold
    flag = Route.build("s", ["a"], None, {"live": True})
    assert not flag.matches(None, _doc({"live": 1}))  # JSON true is not 1
    indexed = Route.build("s", ["a"], None, {"items.0.id": "x"})
    assert indexed.matches(None, _doc({"items": [{"id": "x"}]}))


def test_payload_parsed_only_when_needed_and_destinations_once() -> None:
    calls = []

    def document():
        calls.append(1)
        return {}

    routes = (Route.build("s", ["a", "b"], None, {}), Route.build("s", ["b", "c"], ["x"], {}))
    assert destinations_for(routes, "x", document) == ["a", "b", "c"]
    assert calls == []
