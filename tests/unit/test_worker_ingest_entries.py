"""worker.ingest.entries: one odd element, anywhere in a delivery, costs only itself (a quarantine entry of its own)."""

from __future__ import annotations

from collections import Counter

import fakeredis
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from plugwatch import quarantine
from tests.support.eventlog import generate
from worker.core import DEFAULT_CONFIG
from worker.ingest.entries import decode_delivery

EVENTS = [orjson.dumps(event) for event in generate(5, users=5, events_per_user=8)]
ODD = st.one_of(
    st.integers(1, 3000).map(lambda levels: b"[" * levels + b"]" * levels),
    st.integers(1, 3000).map(lambda levels: b'{"event":"user:vehicle:updated","x":' + b"[" * levels + b"]" * levels
                             + b"}"),
    st.just(b"7"), st.just(b'"text"'), st.just(b"null"), st.just(b'{"version":"2024-10-01"}'),
    st.just(b'{"event":"user:vehicle:updated","version":"2030-01-01","createdAt":"2025-03-14T18:00:00Z"}'),
    st.just(b'{"event":"user:vehicle:updated","version":"2024-10-01","createdAt":1e400}'),
    st.just(b'{"event":"user:vehicle:updated","version":"2024-10-01","createdAt":"\xff\xfe"}'),
)


def decode(body: bytes) -> tuple[list[object], list[quarantine.Entry]]:
    connection = fakeredis.FakeRedis()
    entry = (b"1-0", {b"d": b"d1", b"b": body, b"t": b"1741932679512"})
    observations = decode_delivery(connection, entry, Counter(), DEFAULT_CONFIG)
    return list(observations), quarantine.entries(connection)


@settings(max_examples=150, deadline=None)
@given(start=st.integers(0, len(EVENTS) - 1), size=st.integers(0, 6), at=st.integers(0, 6), odd=ODD)
def test_an_odd_element_anywhere_costs_only_itself(start: int, size: int, at: int, odd: bytes) -> None:
    events = EVENTS[start:start + size]
    position = min(at, len(events))
    spliced = b"[" + b",".join([*events[:position], odd, *events[position:]]) + b"]"
    alone, _ = decode(b"[" + b",".join(events) + b"]")

    observations, entries = decode(spliced)

    assert observations == alone
    [entry] = entries
    assert (entry.delivery_id, entry.event_index, entry.body, entry.replay_body()) == (
        "d1", position, b"[" + odd + b"]", b"[" + odd + b"]")
