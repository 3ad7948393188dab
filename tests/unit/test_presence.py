"""Relay clients seen by this process: connected while a lease call waits and for the window
after their last call; counted per destination; bounded in memory."""

from __future__ import annotations

from hookyard.relay.presence import Presence, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_stays_connected_for_the_window_after_its_last_call() -> None:
    clock = Clock()
    presence = Presence(window=30, clock=clock)
    presence.seen("laptop", "a")
    presence.seen("laptop", "a")  # the same client again: still one
    presence.seen("laptop", "b")
    presence.seen("other", "a")
    assert presence.connected("laptop") == 2
    assert presence.connected("other") == 1
    assert presence.connected("nobody") == 0
    clock.now += 20
    presence.seen("laptop", "b")
    clock.now += 15  # a: 35 s ago, b: 15 s ago
    assert presence.connected("laptop") == 1
    clock.now += 16
    assert presence.connected("laptop") == 0


def test_a_waiting_lease_call_keeps_its_client_connected() -> None:
    clock = Clock()
    presence = Presence(window=30, clock=clock)
    with presence.waiting("laptop", "a"):
        clock.now += 100  # longer than the window: still waiting, still connected
        assert presence.connected("laptop") == 1
        with presence.waiting("laptop", "a"):  # a second call of the same client
            assert presence.connected("laptop") == 1
        clock.now += 100
        assert presence.connected("laptop") == 1
    clock.now += 29  # the window runs from the end of the call
    assert presence.connected("laptop") == 1
    clock.now += 2
    assert presence.connected("laptop") == 0


def test_memory_is_bounded() -> None:
    presence = Presence(window=30, limit=100, clock=Clock())
    for n in range(1000):
        presence.seen("laptop", str(n))
    assert presence.connected("laptop") == 100


def test_clients_are_told_apart_by_token_address_and_agent() -> None:
    key = client_key("tok_1", "10.0.0.1", "hookyard-listen/1.0")
    assert key == client_key("tok_1", "10.0.0.1", "hookyard-listen/1.0")
    others = {
        client_key("tok_2", "10.0.0.1", "hookyard-listen/1.0"),
        client_key("tok_1", "10.0.0.2", "hookyard-listen/1.0"),
        client_key("tok_1", "10.0.0.1", "curl/8"),
        client_key("tok_1", None, None),
    }
    assert key not in others and len(others) == 4
    assert "10.0.0.1" not in key and len(key) == 24
