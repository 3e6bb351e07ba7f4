"""plugwatch.jsonarray: a top-level JSON array split into its elements' bytes, at any depth, without recursion."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugwatch import jsonarray

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=8) | st.sampled_from(['"', "\\", ",", "]", "[{", "}"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


@given(st.lists(json_values, max_size=6), st.sampled_from([None, 0, 2]), st.booleans())
def test_each_element_is_exactly_its_own_json(events: list[Any], indent: int | None, ascii_only: bool) -> None:
    """However the array is laid out, each element's bytes parse to that element; msgspec and the scan agree."""
    body = json.dumps(events, indent=indent, ensure_ascii=ascii_only).encode()
    found = jsonarray.elements(body)
    assert found is not None
    assert [json.loads(raw) for raw in found] == events
    assert jsonarray.scan(body) == found


@given(json_values)
def test_a_value_that_is_no_array_is_none(value: Any) -> None:
    if not isinstance(value, list):
        assert jsonarray.elements(json.dumps(value).encode()) is None
        assert jsonarray.scan(json.dumps(value).encode()) is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b"[]", []), (b" \n[ ]\t", []), (b'[1, "a,]b\\"", {"c":[1,2]} ]', [b"1", b'"a,]b\\""', b'{"c":[1,2]}']),
     (b"[1,]", None), (b"[,]", None), (b"[1]]", None), (b"[1] x", None), (b"[1", None), (b"", None),
     (b"{}", None), (b'["]', None), (b"[1 2]", None), (b'["\xff", 1e400]', [b'"\xff"', b"1e400"])],
)
def test_elements(body: bytes, expected: list[bytes] | None) -> None:
    """A body whose structure is no JSON array is None; values are not checked (their parsers do that)."""
    assert jsonarray.elements(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b"[]", []), (b"[1,]", None), (b"[1]]", None), (b"[1] x", None), (b"[1", None), (b"{}", None),
     (b'["]', [b'"']), (b"[1 2]", [b"1 2"])],  # the scan does not validate elements: their parser does that
)
def test_scan(body: bytes, expected: list[bytes] | None) -> None:
    assert jsonarray.scan(body) == expected


@pytest.mark.parametrize("levels", [1000, 5000, 500_000])
def test_deep_elements_are_split_beside_their_neighbours(levels: int) -> None:
    deep = b"[" * levels + b"]" * levels
    assert jsonarray.elements(b'[{"a":"]]"},' + deep + b",2]") == [b'{"a":"]]"}', deep, b"2"]


def test_alone_cuts_events_out_byte_for_byte_or_keeps_the_body() -> None:
    body = b'[ {"a" : 1E3} ,\n"x" ]'
    assert jsonarray.alone(body, [1, 0, 2]) == [(b'["x"]', True), (b'[{"a" : 1E3}]', True), (body, False)]
    assert jsonarray.alone(b"not json", [0]) == [(b"not json", False)]
