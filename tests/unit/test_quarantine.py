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
    second = quarantine.add(connection, "d2", b"[1]", "event rejected", now=NOW + 1, event_index=0)
    assert [e.id for e in quarantine.entries(connection)] == [first, second]
    assert quarantine.get(connection, second) == Entry(second, "d2", b"[1]", "event rejected",
                                                       "2023-11-14T22:13:21.000Z", 0)
    assert quarantine.count(connection) == 2


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
    assert quarantine.replay(real_redis, entry_id, now=NOW) is ReplayOutcome.REPLAYED
    [(_, fields)] = real_redis.xrange(keys.INGEST_STREAM)
    assert (fields[b"d"], fields[b"b"]) == (b"d1", body)
    assert quarantine.count(real_redis) == 0
    assert real_redis.exists(keys.INGEST_ARMED)
    assert Queue(keys.INGEST_QUEUE, connection=real_redis).count == 1


def test_replay_ignores_the_dedupe_mark_of_the_original_delivery(real_redis: redis.Redis) -> None:
    real_redis.set(keys.dedupe_key("d1"), "1")
    entry_id = quarantine.add(real_redis, "d1", orjson.dumps([GOOD_EVENT]), "x", now=NOW)
    assert quarantine.replay(real_redis, entry_id, now=NOW) is ReplayOutcome.REPLAYED
    assert real_redis.xlen(keys.INGEST_STREAM) == 1


def test_replay_of_one_event_sends_only_that_event(real_redis: redis.Redis) -> None:
    body = orjson.dumps([GOOD_EVENT, BAD_EVENT])
    entry_id = quarantine.add(real_redis, "d1", body, "event rejected", now=NOW, event_index=1)
    assert quarantine.replay(real_redis, entry_id, now=NOW) is ReplayOutcome.REPLAYED
    [(_, fields)] = real_redis.xrange(keys.INGEST_STREAM)
    assert orjson.loads(fields[b"b"]) == [BAD_EVENT]


def test_an_entry_that_still_cannot_be_ingested_is_kept_unless_forced(real_redis: redis.Redis) -> None:
    entry_id = quarantine.add(real_redis, "d1", b"<html>", "invalid_json", now=NOW)
    assert quarantine.replay(real_redis, entry_id, now=NOW) is ReplayOutcome.STILL_INVALID
    assert quarantine.count(real_redis) == 1
    assert not real_redis.exists(keys.INGEST_STREAM)
    assert quarantine.replay(real_redis, entry_id, now=NOW, force=True) is ReplayOutcome.REPLAYED
    assert real_redis.xlen(keys.INGEST_STREAM) == 1


def test_replay_of_an_unknown_id_is_not_found(real_redis: redis.Redis) -> None:
    assert quarantine.replay(real_redis, "1-0", now=NOW) is ReplayOutcome.NOT_FOUND


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
     (b"[1,2]", None, b"[1,2]")],
)
def test_replay_body(body: bytes, index: int | None, expected: bytes) -> None:
    assert Entry("1-0", "d", body, "r", "t", index).replay_body() == expected


@pytest.mark.parametrize("backend", ["fake_redis", "real_redis"])
def test_once_quarantines_an_event_a_single_time(backend: str, request: pytest.FixtureRequest) -> None:
    """The worker may decode a delivery again (a crash, a failed batch): one entry, not two."""
    connection = request.getfixturevalue(backend)
    first = quarantine.add(connection, "d1", b"[1]", "event rejected", now=NOW, event_index=0, once=True)
    again = quarantine.add(connection, "d1", b"[1]", "event rejected", now=NOW + 1, event_index=0, once=True)
    other = quarantine.add(connection, "d1", b"[1]", "event rejected", now=NOW + 1, event_index=1, once=True)
    assert first is not None
    assert again is None
    assert other is not None
    assert quarantine.count(connection) == 2
