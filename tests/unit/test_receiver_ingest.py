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

from plugwatch import dedupe_marks, keys
from plugwatch import ingest_protocol as ingest
from plugwatch.ingest_protocol import Batch, Heartbeat, IngestResult, QuarantineReason
from tests.support.ingest_script import run_ingest

VERSION = "2024-10-01"
VEHICLE = {"event": "user:vehicle:updated", "version": VERSION, "createdAt": "2025-03-14T18:02:05Z",
           "user": {"id": "u1"}, "vehicle": {"id": "v1"}}
HEARTBEAT = {"event": "system:heartbeat", "version": VERSION, "createdAt": "2025-03-14T18:30:00.000Z",
             "pendingEvents": 4}
TEST = {"event": "enode:webhook:test", "version": VERSION, "createdAt": "2025-03-14T18:31:07.221Z"}


def body_of(*events: Any) -> bytes:
    return orjson.dumps(list(events))


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def heartbeat_with(pending: bytes) -> bytes:
    return b'{"event":"system:heartbeat","version":"2024-10-01","createdAt":"x","pendingEvents":' + pending + b"}"


BAD_HEARTBEAT = {**HEARTBEAT, "pendingEvents": -1}
INVALID = QuarantineReason.INVALID_HEARTBEAT


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (body_of(VEHICLE, VEHICLE), Batch(events=2, enqueue=True)),
        (body_of(HEARTBEAT), Batch(events=1, heartbeat=Heartbeat("4", "2025-03-14T18:30:00.000Z"))),
        (body_of(TEST), Batch(events=1)),
        (body_of(VEHICLE, HEARTBEAT), Batch(events=2, enqueue=True, heartbeat=Heartbeat("4", HEARTBEAT["createdAt"]))),
        (b"not json", Batch(events=0, quarantine=QuarantineReason.INVALID_JSON)),
        (b"\xff\xfe[]", Batch(events=0, quarantine=QuarantineReason.INVALID_JSON)),
        (b"", Batch(events=0, quarantine=QuarantineReason.INVALID_JSON)),
        (b"[1,]", Batch(events=0, quarantine=QuarantineReason.INVALID_JSON)),
        (b'{"event":"x"}', Batch(events=0, quarantine=QuarantineReason.NOT_AN_ARRAY)),
        (b"[]", Batch(events=0, quarantine=QuarantineReason.EMPTY_BATCH)),
        # What the worker quarantines event by event goes to it: the delivery's other events go on.
        (body_of(VEHICLE, 3), Batch(events=2, enqueue=True)),
        (body_of({"version": VERSION}), Batch(events=1, enqueue=True)),
        (body_of({**VEHICLE, "version": "2030-01-01"}, VEHICLE), Batch(events=2, enqueue=True)),
        (body_of({**VEHICLE, "version": []}), Batch(events=1, enqueue=True)),
        (body_of({**VEHICLE, "createdAt": None, "pendingEvents": "x"}), Batch(events=1, enqueue=True)),
        # pendingEvents is a JSON number >= 0 (SystemHeartbeat in Enode's spec), kept as written.
        (b"[" + heartbeat_with(b"0.5") + b"]", Batch(events=1, heartbeat=Heartbeat("0.5", "x"))),
        (b"[" + heartbeat_with(b"1E3") + b"]", Batch(events=1, heartbeat=Heartbeat("1E3", "x"))),
        (b"[" + heartbeat_with(b"-0") + b"]", Batch(events=1, heartbeat=Heartbeat("-0", "x"))),
        (b"[" + heartbeat_with(b"1e400") + b"]", Batch(events=1, heartbeat=Heartbeat("1e400", "x"))),
        # An odd system event is quarantined alone, by its index.
        (body_of(BAD_HEARTBEAT), Batch(events=1, quarantined_events=((0, INVALID),))),
        (b"[" + heartbeat_with(b"-0.5") + b"]", Batch(events=1, quarantined_events=((0, INVALID),))),
        (body_of({**HEARTBEAT, "pendingEvents": "3"}), Batch(events=1, quarantined_events=((0, INVALID),))),
        (body_of({**HEARTBEAT, "pendingEvents": True}), Batch(events=1, quarantined_events=((0, INVALID),))),
        (body_of({**HEARTBEAT, "pendingEvents": None}), Batch(events=1, quarantined_events=((0, INVALID),))),
        (body_of({k: v for k, v in HEARTBEAT.items() if k != "pendingEvents"}),
         Batch(events=1, quarantined_events=((0, INVALID),))),
        (body_of({**HEARTBEAT, "version": "2030-01-01"}),
         Batch(events=1, quarantined_events=((0, QuarantineReason.UNKNOWN_VERSION),))),
        (body_of({**TEST, "version": None}),
         Batch(events=1, quarantined_events=((0, QuarantineReason.UNKNOWN_VERSION),))),
        (body_of(VEHICLE, BAD_HEARTBEAT), Batch(events=2, enqueue=True, quarantined_events=((1, INVALID),))),
        (body_of(BAD_HEARTBEAT, HEARTBEAT),
         Batch(events=2, heartbeat=Heartbeat("4", HEARTBEAT["createdAt"]), quarantined_events=((0, INVALID),))),
        # Nesting deeper than any parser goes is the worker's to quarantine, event by event.
        (b"[" + orjson.dumps(VEHICLE) + b"," + deep(5000) + b"]", Batch(events=2, enqueue=True)),
        (deep(100_000), Batch(events=1, enqueue=True)),
        (b"[" + heartbeat_with(b"0") + b"," + deep(1000) + b"]",
         Batch(events=2, enqueue=True, heartbeat=Heartbeat("0", "x"))),
        (b"{" * 5000, Batch(events=0, quarantine=QuarantineReason.INVALID_JSON)),
    ],
)
def test_classify(body: bytes, expected: Batch) -> None:
    assert ingest.classify(body) == expected


@pytest.mark.parametrize("levels", [1000, 5000, 100_000])
def test_classify_survives_any_depth_in_a_deep_call_stack(levels: int) -> None:
    """msgspec's recursion limit is Python's, shared with the caller's stack: classify deep inside one."""
    def nested(calls: int) -> Batch:
        return ingest.classify(deep(levels)) if calls == 0 else nested(calls - 1)

    assert nested(900) == Batch(events=1, enqueue=True)


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
              "pendingEvents": st.integers(-2, 10) | st.floats(allow_nan=False, allow_infinity=False) | json_values,
              "createdAt": json_values},
)


@given(batch=st.lists(events | json_values, max_size=4) | json_values)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_fast_classification_agrees_with_the_thorough_one(batch: Any) -> None:
    """msgspec's fast path and the orjson path decide the same for any JSON."""
    body = orjson.dumps(batch)
    assert ingest.classify(body) == ingest.classify_slowly(body)


@given(body=st.binary(max_size=300))
def test_classify_never_raises(body: bytes) -> None:
    assert isinstance(ingest.classify(body), Batch)


@given(field=st.sampled_from(["event", "version", "createdAt", "pendingEvents", "other"]),
       raw=st.binary(max_size=8).filter(lambda b: b'"' not in b and b"\\" not in b), quoted=st.booleans())
def test_any_bytes_in_an_envelope_field_never_raise(field: str, raw: bytes, quoted: bool) -> None:
    """Invalid UTF-8 in a string (msgspec raises UnicodeDecodeError, not DecodeError) or garbage in a value:
    the receiver answers, and the delivery's other events are not held up."""
    value = b'"' + raw + b'"' if quoted else raw
    odd = b'{"event":"user:vehicle:updated","version":"2024-10-01","' + field.encode() + b'":' + value + b"}"
    batch = ingest.classify(b"[" + orjson.dumps(VEHICLE) + b"," + odd + b"]")
    assert batch.quarantine in (None, QuarantineReason.INVALID_JSON)
    if batch.quarantine is None:
        assert batch.enqueue


def test_invalid_utf8_in_one_event_does_not_hold_up_the_others() -> None:
    odd = b'{"event":"user:vehicle:updated","version":"2024-10-01","createdAt":"\xff"}'
    assert ingest.classify(b"[" + orjson.dumps(VEHICLE) + b"," + odd + b"]") == Batch(events=2, enqueue=True)


@given(batch=st.lists(events | json_values, min_size=1, max_size=4), levels=st.integers(1, 3000),
       at=st.integers(0, 4))
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_a_deep_element_changes_nothing_for_its_neighbours(batch: list[Any], levels: int, at: int) -> None:
    """Splicing an element nested `levels` deep anywhere leaves every other event's verdict as it was."""
    position = min(at, len(batch))
    raw = [orjson.dumps(event) for event in batch]
    spliced = ingest.classify(b"[" + b",".join([*raw[:position], deep(levels), *raw[position:]]) + b"]")
    alone = ingest.classify(orjson.dumps(batch))
    shifted = tuple((i + (i >= position), reason) for i, reason in alone.quarantined_events)
    assert (spliced.events, spliced.enqueue, spliced.heartbeat, spliced.quarantined_events) == (
        len(batch) + 1, True, alone.heartbeat if alone.quarantine is None else None, shifted)


@pytest.fixture(params=["fake", "real"])
def connection(request: pytest.FixtureRequest) -> redis.Redis:
    return request.getfixturevalue("fake_redis" if request.param == "fake" else "real_redis")  # type: ignore[no-any-return]


def run(connection: redis.Redis, delivery_id: str, body: bytes, now: float = 1_700_000_000.0) -> IngestResult:
    return run_ingest(connection, delivery_id, body, now=now, dedupe_ttl_seconds=3600)


def test_first_delivery_is_stored_and_arms_the_drain(connection: redis.Redis) -> None:
    body = body_of(VEHICLE)
    assert run(connection, "d1", body) is IngestResult.ARMED
    [(_, fields)] = connection.xrange(keys.INGEST_STREAM)
    assert fields == {b"d": b"d1", b"b": body, b"t": b"1700000000000"}
    assert connection.pttl(keys.INGEST_ARMED) > 50_000
    [mark_key] = connection.keys(keys.DEDUPE_MARKS + ":*")
    assert mark_key == dedupe_marks.shard_key(keys.DEDUPE_MARKS, 1_700_000_000 // 3600, 0, 0).encode()
    assert 3600 < connection.ttl(mark_key) <= 7200  # the window after the end of its one-hour bucket
    assert not connection.exists(keys.dedupe_key("d1"))  # the previous version's mark is never written


def test_a_second_delivery_while_armed_is_stored_without_arming(connection: redis.Redis) -> None:
    run(connection, "d1", body_of(VEHICLE))
    assert run(connection, "d2", body_of(VEHICLE)) is IngestResult.ACCEPTED
    assert connection.xlen(keys.INGEST_STREAM) == 2


def test_a_repeated_delivery_writes_nothing(connection: redis.Redis) -> None:
    run(connection, "d1", body_of(VEHICLE))
    connection.delete(keys.INGEST_ARMED)
    assert run(connection, "d1", body_of(VEHICLE)) is IngestResult.DUPLICATE
    assert connection.xlen(keys.INGEST_STREAM) == 1
    assert not connection.exists(keys.INGEST_ARMED)


def test_a_delivery_id_reused_for_another_body_is_stored(connection: redis.Redis) -> None:
    """Enode does not promise an id is never reused: a different body under a seen id is new input."""
    run(connection, "d1", body_of(VEHICLE))
    other = body_of({**VEHICLE, "vehicle": {"id": "v2"}})
    assert run(connection, "d1", other) is IngestResult.ACCEPTED
    assert [fields[b"b"] for _, fields in connection.xrange(keys.INGEST_STREAM)] == [body_of(VEHICLE), other]
    assert run(connection, "d1", other) is IngestResult.DUPLICATE


def test_a_dedupe_mark_from_before_digests_still_counts_as_seen(connection: redis.Redis) -> None:
    connection.set(keys.dedupe_key("d1"), "1")
    assert run(connection, "d1", body_of(VEHICLE)) is IngestResult.DUPLICATE
    assert not connection.exists(keys.INGEST_STREAM)


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


def test_a_fractional_pending_events_is_stored_as_written(connection: redis.Redis) -> None:
    body = b"[" + orjson.dumps(VEHICLE) + b"," + heartbeat_with(b"0.5") + b"]"
    assert run(connection, "m1", body) is IngestResult.ARMED
    assert connection.hget(keys.HEARTBEAT, "pending_events") == b"0.5"
    assert connection.xlen(keys.INGEST_STREAM) == 1
    assert not connection.exists(keys.QUARANTINE_STREAM)


def test_a_bad_heartbeat_is_quarantined_alone_and_its_delivery_goes_on(connection: redis.Redis) -> None:
    body = body_of(VEHICLE, BAD_HEARTBEAT, VEHICLE)
    assert run(connection, "m1", body) is IngestResult.ARMED
    [(_, stored)] = connection.xrange(keys.INGEST_STREAM)
    assert stored[b"b"] == body
    [(_, entry)] = connection.xrange(keys.QUARANTINE_STREAM)
    assert entry == {b"d": b"m1", b"b": body_of(BAD_HEARTBEAT), b"reason": b"invalid_heartbeat",
                     b"at": b"2023-11-14T22:13:20.000Z", b"event_index": b"1", b"alone": b"1"}
    assert not connection.exists(keys.HEARTBEAT)


def test_a_delivery_of_odd_system_events_only_is_quarantined_event_by_event(connection: redis.Redis) -> None:
    body = body_of(BAD_HEARTBEAT, {**TEST, "version": "2030-01-01"})
    assert run(connection, "s1", body) is IngestResult.RECORDED
    assert [(f[b"event_index"], f[b"reason"]) for _, f in connection.xrange(keys.QUARANTINE_STREAM)] == [
        (b"0", b"invalid_heartbeat"), (b"1", b"unknown_version")]
    assert not connection.exists(keys.INGEST_STREAM, keys.INGEST_ARMED, keys.HEARTBEAT)
    assert run(connection, "s1", body) is IngestResult.DUPLICATE
    assert connection.xlen(keys.QUARANTINE_STREAM) == 2


def test_iso_time_is_utc_with_milliseconds() -> None:
    assert ingest.iso_time(0.5) == "1970-01-01T00:00:00.500Z"
    assert ingest.iso_time(time.time()).endswith("Z")
