"""plugwatch.quarantine: add, list, get, replay (atomic, arms a drain), purge."""

from __future__ import annotations

import orjson
import pytest
import redis
from rq import Queue

from plugwatch import keys, quarantine
from plugwatch.quarantine import Entry, ReplayOutcome

GOOD_EVENT = {"event": "user:vehicle:updated", "version": "2024-10-01", "vehicle": {"id": "v1"}}
BAD_EVENT = {"event": "user:vehicle:updated", "version": "2024-10-01", "vehicle": "garbled"}
NOW = 1_700_000_000.0


@pytest.fixture(params=["fake", "real"])
def connection(request: pytest.FixtureRequest) -> redis.Redis:
    return request.getfixturevalue("fake_redis" if request.param == "fake" else "real_redis")  # type: ignore[no-any-return]


def test_added_entries_are_listed_oldest_first_with_their_fields(connection: redis.Redis) -> None:
    first = quarantine.add(connection, "d1", b"<html>", "invalid_json", now=NOW)
    second = quarantine.add(connection, "d2", b"[1, 2]", "event rejected", now=NOW + 1, event_index=1)
    assert [e.id for e in quarantine.entries(connection)] == [first, second]
    assert quarantine.get(connection, second) == Entry(second, "d2", b"[2]", "event rejected",
                                                       "2023-11-14T22:13:21.000Z", 1, alone=True)
    assert quarantine.get(connection, first) == Entry(first, "d1", b"<html>", "invalid_json",
                                                      "2023-11-14T22:13:20.000Z")
    assert quarantine.count(connection) == 2


def test_an_event_entry_keeps_the_event_alone_byte_for_byte(connection: redis.Redis) -> None:
    """A delivery of a hundred odd events costs its own size in the quarantine, not a hundred copies."""
    body = b'[{"a": 1E3}, {"b" :\t"\\u00e9"}]'
    entry_id = quarantine.add(connection, "d1", body, "event rejected", now=NOW, event_index=1)
    entry = quarantine.get(connection, entry_id)
    assert entry is not None
    assert (entry.body, entry.event_index, entry.alone, entry.replay_body()) == (
        b'[{"b" :\t"\\u00e9"}]', 1, True, b'[{"b" :\t"\\u00e9"}]')


def test_an_old_event_entry_holding_the_whole_body_replays_its_event(connection: redis.Redis) -> None:
    connection.xadd(keys.QUARANTINE_STREAM, {"d": "d1", "b": b"[1, 2]", "reason": "r", "at": "t", "event_index": 1})
    [entry] = quarantine.entries(connection)
    assert (entry.body, entry.alone, entry.replay_body()) == (b"[1, 2]", False, b"[2]")


def test_listing_pages_after_an_entry_id(connection: redis.Redis) -> None:
    ids = [quarantine.add(connection, f"d{i}", b"x", "invalid_json", now=NOW) for i in range(5)]
    page = quarantine.entries(connection, limit=2)
    assert [e.id for e in page] == ids[:2]
    assert [e.id for e in quarantine.entries(connection, after=page[-1].id, limit=10)] == ids[2:]


def test_get_of_an_unknown_id_is_none(connection: redis.Redis) -> None:
    assert quarantine.get(connection, "1-0") is None


def test_replay_moves_the_entry_to_the_ingest_stream_and_arms_a_drain(real_redis: redis.Redis) -> None:
    body = orjson.dumps([GOOD_EVENT])
    entry_id = quarantine.add(real_redis, "d1", body, "worker crashed", now=NOW)
    assert quarantine.replay(real_redis, entry_id, queues=real_redis, now=NOW) is ReplayOutcome.REPLAYED
    [(_, fields)] = real_redis.xrange(keys.INGEST_STREAM)
    assert (fields[b"d"], fields[b"b"]) == (b"d1", body)
    assert quarantine.count(real_redis) == 0
    assert real_redis.exists(keys.INGEST_ARMED)
    assert Queue(keys.INGEST_QUEUE, connection=real_redis).count == 1


def test_replay_ignores_the_dedupe_mark_of_the_original_delivery(real_redis: redis.Redis) -> None:
    real_redis.set(keys.dedupe_key("d1"), "1")
    entry_id = quarantine.add(real_redis, "d1", orjson.dumps([GOOD_EVENT]), "x", now=NOW)
    assert quarantine.replay(real_redis, entry_id, queues=real_redis, now=NOW) is ReplayOutcome.REPLAYED
    assert real_redis.xlen(keys.INGEST_STREAM) == 1


def test_replay_of_one_event_sends_only_that_event(real_redis: redis.Redis) -> None:
    body = orjson.dumps([GOOD_EVENT, BAD_EVENT])
    entry_id = quarantine.add(real_redis, "d1", body, "event rejected", now=NOW, event_index=1)
    assert quarantine.replay(real_redis, entry_id, queues=real_redis, now=NOW) is ReplayOutcome.REPLAYED
    [(_, fields)] = real_redis.xrange(keys.INGEST_STREAM)
    assert orjson.loads(fields[b"b"]) == [BAD_EVENT]


def test_an_entry_that_still_cannot_be_ingested_is_kept_unless_forced(real_redis: redis.Redis) -> None:
    entry_id = quarantine.add(real_redis, "d1", b"<html>", "invalid_json", now=NOW)
    assert quarantine.replay(real_redis, entry_id, queues=real_redis, now=NOW) is ReplayOutcome.STILL_INVALID
    assert quarantine.count(real_redis) == 1
    assert not real_redis.exists(keys.INGEST_STREAM)
    assert quarantine.replay(real_redis, entry_id, queues=real_redis, now=NOW, force=True) is ReplayOutcome.REPLAYED
    assert real_redis.xlen(keys.INGEST_STREAM) == 1


def test_a_replay_names_its_entry_in_the_ingest_stream(real_redis: redis.Redis) -> None:
    """So that the worker, if it quarantines the replay again, points the new entry at this one."""
    entry_id = quarantine.add(real_redis, "d1", orjson.dumps([GOOD_EVENT]), "worker crashed", now=NOW)
    quarantine.replay(real_redis, entry_id, queues=real_redis, now=NOW)
    [(_, fields)] = real_redis.xrange(keys.INGEST_STREAM)
    assert fields[b"q"] == entry_id.encode()


BAD_HEARTBEAT = {"event": "system:heartbeat", "version": "2024-10-01", "createdAt": "x", "pendingEvents": -1}


@pytest.mark.parametrize(
    "event",
    [7, {"version": "2024-10-01"}, {**GOOD_EVENT, "version": "2030-01-01"}, {**GOOD_EVENT, "version": None},
     BAD_HEARTBEAT, {"event": "enode:webhook:test", "version": "1999-01-01"}],
)
def test_an_event_nothing_would_process_is_kept_unless_forced(real_redis: redis.Redis, event: object) -> None:
    """The worker would quarantine it again at once (no object, no name, unknown version, odd system event)."""
    body = orjson.dumps([GOOD_EVENT, event])
    entry_id = quarantine.add(real_redis, "d1", body, "event rejected", now=NOW, event_index=1)
    assert quarantine.replay(real_redis, entry_id, queues=real_redis, now=NOW) is ReplayOutcome.STILL_INVALID
    assert [entry.id for entry in quarantine.entries(real_redis)] == [entry_id]
    assert quarantine.replay(real_redis, entry_id, queues=real_redis, now=NOW, force=True) is ReplayOutcome.REPLAYED
    assert quarantine.count(real_redis) == 0


def test_an_event_nested_deeper_than_any_parser_goes_is_kept_unless_forced(real_redis: redis.Redis) -> None:
    body = b"[" + orjson.dumps(GOOD_EVENT) + b"," + b"[" * 5000 + b"]" * 5000 + b"]"
    entry_id = quarantine.add(real_redis, "d1", body, "event cannot be parsed", now=NOW, event_index=1)
    assert quarantine.replay(real_redis, entry_id, queues=real_redis, now=NOW) is ReplayOutcome.STILL_INVALID


def test_a_replayed_delivery_requarantines_its_odd_system_events_at_once(real_redis: redis.Redis) -> None:
    """The worker ignores system events: the replay itself keeps the odd ones, each alone, naming the entry."""
    body = orjson.dumps([GOOD_EVENT, BAD_HEARTBEAT])
    entry_id = quarantine.add(real_redis, "d1", body, "poison: delivered 6 times without completing", now=NOW)
    assert quarantine.replay(real_redis, entry_id, queues=real_redis, now=NOW + 1) is ReplayOutcome.REPLAYED
    [again] = quarantine.entries(real_redis)
    assert (again.delivery_id, again.body, again.reason, again.event_index, again.replay_of) == (
        "d1", orjson.dumps([BAD_HEARTBEAT]), "invalid_heartbeat", 1, entry_id)
    [(_, fields)] = real_redis.xrange(keys.INGEST_STREAM)
    assert fields[b"b"] == body


def test_replay_of_an_unknown_id_is_not_found(real_redis: redis.Redis) -> None:
    assert quarantine.replay(real_redis, "1-0", queues=real_redis, now=NOW) is ReplayOutcome.NOT_FOUND


def test_purge_by_id_by_age_and_all(connection: redis.Redis) -> None:
    old = connection.xadd(keys.QUARANTINE_STREAM, {"d": "old", "b": "x", "reason": "r", "at": "t"}, id="1000-0")
    ids = [quarantine.add(connection, f"d{i}", b"x", "r", now=NOW) for i in range(3)]
    assert quarantine.purge(connection, [ids[0], "5-0"]) == 1
    assert quarantine.purge_before(connection, 2.0) == 1  # the entry from t=1 s
    assert quarantine.get(connection, old.decode()) is None
    assert quarantine.purge_all(connection) == 2
    assert quarantine.count(connection) == 0


@pytest.mark.parametrize(
    ("body", "index", "expected"),
    [(b"[1,2,3]", 1, b"[2]"), (b'{"a":1}', 0, b'[{"a":1}]'), (b"[1]", 5, b"[1]"), (b"nope", 0, b"nope"),
     (b"[1,2]", None, b"[1,2]"), (b'[1, {"n": 1E3,  "x": "\\u00e9"} ]', 1, b'[{"n": 1E3,  "x": "\\u00e9"}]'),
     (b"[1," + b"[" * 5000 + b"]" * 5000 + b"]", 1, b"[" * 5001 + b"]" * 5001)],
)
def test_replay_body(body: bytes, index: int | None, expected: bytes) -> None:
    assert Entry("1-0", "d", body, "r", "t", index).replay_body() == expected


@pytest.mark.parametrize("backend", ["fake_redis", "real_redis"])
def test_an_ingest_entry_is_quarantined_once_however_often_it_is_decoded(
        backend: str, request: pytest.FixtureRequest) -> None:
    """The worker may decode an ingest entry again (a crash, a failed batch): one entry, not two. A replay is
    a new ingest entry of the same delivery and body: quarantined again, or it would vanish."""
    connection = request.getfixturevalue(backend)
    first = quarantine.add(connection, "d1", b"[1]", "event rejected", now=NOW, event_index=0, source="5-0")
    again = quarantine.add(connection, "d1", b"[1]", "event rejected", now=NOW + 1, event_index=0, source="5-0")
    other = quarantine.add(connection, "d1", b"[1]", "event rejected", now=NOW + 1, event_index=1, source="5-0")
    replayed = quarantine.add(connection, "d1", b"[1]", "event rejected", now=NOW + 2, event_index=0, source="9-0",
                              replay_of=first)
    assert first is not None
    assert again is None
    assert other is not None
    assert replayed is not None
    assert quarantine.count(connection) == 3
    assert quarantine.get(connection, replayed) == Entry(replayed, "d1", b"[1]", "event rejected",
                                                         "2023-11-14T22:13:22.000Z", 0, replay_of=first, alone=True)
