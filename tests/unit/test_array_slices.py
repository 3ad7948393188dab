"""Batch bodies are split into the exact bytes of each element."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from hookyard.verify._common import array_slices, batch_items

scalars = st.none() | st.booleans() | st.integers() | st.text(alphabet=st.characters(), max_size=8)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.lists(values, max_size=6), st.sampled_from([(",", ":"), (", ", ": ")]), st.booleans())
def test_slices_are_the_elements_bytes(elements, separators, indent) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps(elements, separators=separators, indent=2 if indent else None).encode()
    slices = array_slices(body)
    assert slices is not None
    assert [json.loads(s) for s in slices] == elements  # orjson turns huge ints to floats
    for piece in slices:
        assert piece in body  # a slice of what was sent, not a re-encoding


def test_anything_but_an_array_has_no_slices() -> None:
    for body in (b"{}", b'"[1,2]"', b"[1,2", b"", b"nul"):
        assert array_slices(body) is None


def test_elements_orjson_refuses_still_make_a_batch_and_never_raise() -> None:
    """Valid JSON that orjson refuses: a lone surrogate escape (what JavaScript emits when it
    cuts an emoji in half); and nesting too deep for either parser."""
    body = b'[{"id": "a", "type": "t\\ud800"}, {"id": "b", "type": "u"}]'
    first, second = batch_items(body, "id", "type")
    assert (first.event_id, first.event_type) == ("a", None)  # not storable as text
    assert (second.event_id, second.event_type) == ("b", "u")
    assert array_slices(b"[" * 5000 + b"]" * 5000) is None
    assert batch_items(b"[" * 5000 + b"]" * 5000, "id", "type") == ()
