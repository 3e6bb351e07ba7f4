"""The fast body decoder hands `decode_event` the same view as a full JSON parse, or falls back to one."""

from __future__ import annotations

import random
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.eventlog import generate
from worker.core import DecodeError, decode_body, decode_event

RECEIVED_AT = 1_741_975_200_000  # 2025-03-14T18:00:00Z


def outcome(raw: Any) -> object:
    try:
        return decode_event(raw, RECEIVED_AT)
    except DecodeError as error:
        return ("DecodeError", error.reason)


def assert_same_view(body: bytes) -> None:
    full = orjson.loads(body) if body.strip().startswith(b"[") else None
    fast = decode_body(body)
    if not isinstance(full, list):
        assert fast is None
        return
    assert fast is not None
    assert [outcome(e) for e in fast] == [outcome(e) for e in full]


def test_generated_enode_deliveries_decode_the_same_through_both_paths() -> None:
    events = generate(3, users=30, events_per_user=20)
    for start in range(0, len(events), 37):
        assert_same_view(orjson.dumps(events[start:start + 37]))


def test_fast_path_keeps_only_what_the_core_reads() -> None:
    (event,) = decode_body(orjson.dumps(generate(1, users=1, events_per_user=1)[:1])) or [None]
    assert set(event) <= {"event", "createdAt", "version", "user", "vehicle", "charger", "vendorAction"}


def test_not_an_array_or_not_json_is_none() -> None:
    assert decode_body(b"{}") is None
    assert decode_body(b"not json") is None
    assert decode_body(b"") is None


json_leaf = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5)
             | st.just("2025-03-14T18:02:05Z"))
json_values = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
fields = st.sampled_from(["id", "userId", "chargeState", "location", "pluggedInChargerId", "pluggedInVehicleId",
                          "lastUpdated", "event", "createdAt", "user", "vehicle", "charger", "vendorAction"])
shaped = st.recursive(json_leaf, lambda inner: st.dictionaries(fields, inner, max_size=5), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(shaped | json_values, max_size=4), st.randoms(use_true_random=False))
def test_odd_shapes_decode_the_same_through_both_paths(events: list[Any], rng: random.Random) -> None:
    names = ["user:vehicle:updated", "user:charger:updated", "user:vendor-action:updated", "user:vehicle:deleted"]
    for event in events:
        if isinstance(event, dict) and rng.random() < 0.7:
            event["event"] = rng.choice(names)
    assert_same_view(orjson.dumps(events))


def test_a_body_nested_deeper_than_the_parsers_go_is_none_not_an_error() -> None:
    """msgspec raises RecursionError near 1000 levels (fewer deep in a call stack), orjson stops at 1024."""
    def nested(calls: int, body: bytes) -> list[Any] | None:
        return decode_body(body) if calls == 0 else nested(calls - 1, body)

    for levels in (1000, 5000, 100_000):
        body = b'[{"event":"user:vehicle:updated","x":' + b"[" * levels + b"]" * levels + b"}]"
        decoded = nested(900, body)
        assert decoded is None or decoded[0]["event"] == "user:vehicle:updated"
    assert nested(900, b"[" + b"[" * 5000 + b"]" * 5000 + b"]") is None
