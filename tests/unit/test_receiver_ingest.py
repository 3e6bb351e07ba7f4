"""plugwatch.ingest_protocol: classification of authentic bodies, the one-call ingest script.

The script runs against fakeredis and against a real redis-server (same assertions).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugwatch import ingest_protocol as ingest
from plugwatch import keys
from plugwatch.ingest_protocol import Batch, Heartbeat, IngestResult, QuarantineReason

VERSION = "2024-10-01"
VEHICLE = {"event": "user:vehicle:updated", "version": VERSION, "createdAt": "2025-03-14T18:02:05Z",
           "user": {"id": "u1"}, "vehicle": {"id": "v1"}}
HEARTBEAT = {"event": "system:heartbeat", "version": VERSION, "createdAt": "2025-03-14T18:30:00.000Z",
             "pendingEvents": 4}
TEST = {"event": "enode:webhook:test", "version": VERSION, "createdAt": "2025-03-14T18:31:07.221Z"}


def body_of(*events: Any) -> bytes:
    return orjson.dumps(list(events))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (body_of(VEHICLE, VEHICLE), Batch(events=2, enqueue=True)),
        (body_of(HEARTBEAT), Batch(events=1, heartbeat=Heartbeat(4, "2025-03-14T18:30:00.000Z"))),
        (body_of(TEST), Batch(events=1)),
        (body_of(VEHICLE, HEARTBEAT), Batch(events=2, enqueue=True, heartbeat=Heartbeat(4, HEARTBEAT["createdAt"]))),
        (b"not json", Batch(events=0, quarantine=QuarantineReason.INVALID_JSON)),
        (b"\xff\xfe[]", Batch(events=0, quarantine=QuarantineReason.INVALID_JSON)),
        (b"", Batch(events=0, quarantine=QuarantineReason.INVALID_JSON)),
        (b'{"event":"x"}', Batch(events=0, quarantine=QuarantineReason.NOT_AN_ARRAY)),
        (b"[]", Batch(events=0, quarantine=QuarantineReason.EMPTY_BATCH)),
        (body_of(VEHICLE, 3), Batch(events=2, quarantine=QuarantineReason.NOT_AN_OBJECT)),
        (body_of({"version": VERSION}), Batch(events=1, quarantine=QuarantineReason.MISSING_EVENT)),
        (body_of({**VEHICLE, "version": "2030-01-01"}), Batch(events=1, quarantine=QuarantineReason.UNKNOWN_VERSION)),
        (body_of({**VEHICLE, "version": None}), Batch(events=1, quarantine=QuarantineReason.UNKNOWN_VERSION)),
        (body_of({**VEHICLE, "version": []}), Batch(events=1, quarantine=QuarantineReason.UNKNOWN_VERSION)),
        (body_of({**HEARTBEAT, "pendingEvents": -1}), Batch(events=1, quarantine=QuarantineReason.INVALID_HEARTBEAT)),
        (body_of({**HEARTBEAT, "pendingEvents": "3"}),
         Batch(events=1, quarantine=QuarantineReason.INVALID_HEARTBEAT)),
        (body_of({**HEARTBEAT, "pendingEvents": True}),
         Batch(events=1, quarantine=QuarantineReason.INVALID_HEARTBEAT)),
        (body_of({**VEHICLE, "createdAt": None, "pendingEvents": "x"}), Batch(events=1, enqueue=True)),
    ],
)
def test_classify(body: bytes, expected: Batch) -> None:
    assert ingest.classify(body) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
names = st.sampled_from(["user:vehicle:updated", "system:heartbeat", "enode:webhook:test"])
events = st.fixed_dictionaries(
    {},
    optional={"event": names | json_values,
              "version": st.sampled_from([VERSION, "2023-08-01"]) | json_values,
              "pendingEvents": st.integers(-2, 10) | json_values, "createdAt": json_values},
)


@given(batch=st.lists(events | json_values, max_size=4) | json_values)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_fast_classification_agrees_with_the_thorough_one(batch: Any) -> None:
    """msgspec's fast path and the orjson path decide the same for any JSON."""
    body = orjson.dumps(batch)
    assert ingest.classify(body) == ingest._classify_slowly(body)


@given(body=st.binary(max_size=300))
def test_classify_never_raises(body: bytes) -> None:
    assert isinstance(ingest.classify(body), Batch)


@pytest.fixture(params=["fake", "real"])
def connection(request: pytest.FixtureRequest) -> redis.Redis:
    return request.getfixturevalue("fake_redis" if request.param == "fake" else "real_redis")  # type: ignore[no-any-return]


def run(connection: redis.Redis, delivery_id: str, body: bytes, now: float = 1_700_000_000.0) -> IngestResult:
    script_keys, args = ingest.script_call(delivery_id, body, ingest.classify(body), now=now,
                                           dedupe_ttl_seconds=3600)
    return ingest.result_of(connection.register_script(ingest.INGEST_LUA)(keys=script_keys, args=args))


def test_first_delivery_is_stored_and_arms_the_drain(connection: redis.Redis) -> None:
    body = body_of(VEHICLE)
    assert run(connection, "d1", body) is IngestResult.ARMED
    [(_, fields)] = connection.xrange(keys.INGEST_STREAM)
    assert fields == {b"d": b"d1", b"b": body, b"t": b"1700000000000"}
    assert connection.pttl(keys.INGEST_ARMED) > 50_000
    assert 3500 < connection.ttl(keys.dedupe_key("d1")) <= 3600


def test_a_second_delivery_while_armed_is_stored_without_arming(connection: redis.Redis) -> None:
    run(connection, "d1", body_of(VEHICLE))
    assert run(connection, "d2", body_of(VEHICLE)) is IngestResult.ACCEPTED
    assert connection.xlen(keys.INGEST_STREAM) == 2


def test_a_repeated_delivery_id_writes_nothing(connection: redis.Redis) -> None:
    run(connection, "d1", body_of(VEHICLE))
    connection.delete(keys.INGEST_ARMED)
    assert run(connection, "d1", body_of(VEHICLE, VEHICLE)) is IngestResult.DUPLICATE
    assert connection.xlen(keys.INGEST_STREAM) == 1
    assert not connection.exists(keys.INGEST_ARMED)


def test_unusable_content_goes_to_the_quarantine_only(connection: redis.Redis) -> None:
    assert run(connection, "d1", b"<html>") is IngestResult.QUARANTINED
    [(_, fields)] = connection.xrange(keys.QUARANTINE_STREAM)
    assert fields == {b"d": b"d1", b"b": b"<html>", b"reason": b"invalid_json", b"at": b"2023-11-14T22:13:20.000Z"}
    assert not connection.exists(keys.INGEST_STREAM, keys.INGEST_ARMED)
    assert run(connection, "d1", b"<html>") is IngestResult.DUPLICATE


def test_a_heartbeat_is_recorded_and_not_enqueued(connection: redis.Redis) -> None:
    assert run(connection, "h1", body_of(HEARTBEAT), now=1_700_000_000.25) is IngestResult.RECORDED
    assert connection.hgetall(keys.HEARTBEAT) == {
        b"at": b"1700000000.250", b"pending_events": b"4", b"created_at": b"2025-03-14T18:30:00.000Z"}
    assert not connection.exists(keys.INGEST_STREAM, keys.INGEST_ARMED)


def test_a_test_event_is_recorded_as_seen_only(connection: redis.Redis) -> None:
    assert run(connection, "t1", body_of(TEST)) is IngestResult.RECORDED
    assert not connection.exists(keys.INGEST_STREAM, keys.HEARTBEAT, keys.QUARANTINE_STREAM)


def test_a_batch_with_a_heartbeat_and_updates_does_both(connection: redis.Redis) -> None:
    assert run(connection, "m1", body_of(VEHICLE, HEARTBEAT)) is IngestResult.ARMED
    assert connection.xlen(keys.INGEST_STREAM) == 1
    assert connection.hget(keys.HEARTBEAT, "pending_events") == b"4"


def test_iso_time_is_utc_with_milliseconds() -> None:
    assert ingest.iso_time(0.5) == "1970-01-01T00:00:00.500Z"
    assert ingest.iso_time(time.time()).endswith("Z")
