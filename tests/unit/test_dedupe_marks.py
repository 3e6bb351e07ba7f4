"""plugwatch.dedupe_marks and the dedupe part of INGEST_LUA: buckets, shards, digests, expiry, the previous
version's marks, and the listpack encoding at the designed load (on a real redis-server where it matters)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
import redis

from plugwatch import dedupe_marks, keys
from plugwatch import ingest_protocol as ingest
from plugwatch.dedupe_marks import Mark
from plugwatch.ingest_protocol import IngestResult
from tests.support.ingest_script import run_ingest, signature_of
from tests.support.servers import wait_until

VEHICLE = {"event": "user:vehicle:updated", "version": "2024-10-01", "createdAt": "2025-03-14T18:02:05Z",
           "user": {"id": "u1"}, "vehicle": {"id": "v1"}}
TEST_EVENT = orjson.dumps([{"event": "enode:webhook:test", "version": "2024-10-01", "createdAt": "x"}])
BODY = orjson.dumps([VEHICLE])
WINDOW, WIDTH = 3600, 600
COMPACT = {b"listpack", b"ziplist"}  # Redis 7's compact hash encoding, and Redis 6's name for it
T0 = 1_700_000_000.0  # a bucket boundary is at every multiple of WIDTH: 1_699_999_800, 1_700_000_400


def run(connection: redis.Redis, delivery_id: str, body: bytes = BODY, *, now: float = T0,
        window: int = WINDOW, width: int = WIDTH, cap: int = dedupe_marks.DEFAULT_CAP) -> IngestResult:
    return run_ingest(connection, delivery_id, body, now=now, dedupe_ttl_seconds=window, dedupe_bucket_seconds=width,
                      shard_cap=cap)


def mark_keys(connection: redis.Redis) -> list[bytes]:
    return sorted(connection.scan_iter(match=keys.DEDUPE_MARKS + ":*", count=1000))


# --- pure logic -------------------------------------------------------------------------------------

def test_a_mark_depends_on_the_id_and_the_signature_and_nothing_else() -> None:
    signature = signature_of(BODY)
    mark = dedupe_marks.mark_of("d1", signature)
    assert mark == dedupe_marks.mark_of("d1", signature_of(BODY))
    assert len(mark.field) == dedupe_marks.FIELD_BYTES
    assert 0 <= mark.hash < 2**32
    others = {dedupe_marks.mark_of("d2", signature), dedupe_marks.mark_of("d1", signature_of(BODY + b" ")),
              dedupe_marks.mark_of("d1", signature_of(BODY, "another-secret")),
              dedupe_marks.mark_of("d1x", signature)}
    assert dedupe_marks.mark_of("d1", b"x" + signature) != dedupe_marks.mark_of("d1x", signature)  # the id's length
    assert mark not in others
    assert len(others) == 4


def test_the_hash_and_the_field_are_independent_bits_of_the_digest() -> None:
    marks = [dedupe_marks.mark_of(f"d{i}", signature_of(BODY)) for i in range(4096)]
    assert len({m.field for m in marks}) == 4096
    low_bits = [sum(1 for m in marks if m.hash % 16 == shard) for shard in range(16)]
    assert min(low_bits) > 4096 / 16 * 0.7, low_bits  # the shards share the load


def test_buckets_cover_the_window_and_a_bucket_more() -> None:
    assert dedupe_marks.bucket_of(1_700_000_400.0, 600) == 2_833_334
    assert dedupe_marks.bucket_of(1_700_000_399.999, 600) == 2_833_333
    assert list(dedupe_marks.live_buckets(1_700_000_400.0, 3600, 600)) == list(range(2_833_328, 2_833_335))
    assert len(dedupe_marks.live_buckets(T0, 72 * 3600, 24 * 3600)) == 4


def test_a_bucket_expires_the_window_after_its_end() -> None:
    assert dedupe_marks.expires_in(1_700_000_400.0, 3600, 600) == 600 + 3600
    assert dedupe_marks.expires_in(1_700_000_999.5, 3600, 600) == 3601  # rounded up, never early


@pytest.mark.parametrize(("marks", "target", "bits"), [
    (0, 50, 0), (50, 50, 0), (51, 50, 1), (100, 50, 1), (101, 50, 2), (1_000_000, 50, 15),
    (10**12, 50, dedupe_marks.MAX_SHARD_BITS)])
def test_a_bucket_gets_the_fewest_shards_that_hold_its_marks_at_the_target(marks: int, target: int,
                                                                          bits: int) -> None:
    assert dedupe_marks.shard_bits_for(marks, target) == bits


def test_shard_keys_and_generations() -> None:
    assert dedupe_marks.shard_key("p:marks", 7, 4, 0x1234_5678) == "p:marks:7:4:8"
    assert dedupe_marks.shard_key("p:marks", 7, 0, 0x1234_5678) == "p:marks:7:0:0"
    assert dedupe_marks.generations(b"9 13") == [9, 13]
    assert dedupe_marks.generations(None) == []


@pytest.mark.parametrize(("config", "cap"), [
    ({}, 100), ({"hash-max-listpack-entries": "128"}, 100), ({"hash-max-listpack-entries": "512"}, 100),
    ({"hash-max-listpack-entries": "64"}, 51), ({"hash-max-ziplist-entries": "32"}, 25),
    ({"hash-max-listpack-entries": "0"}, 1)])
def test_the_shard_cap_stays_inside_the_listpack_limit(config: dict[str, str], cap: int) -> None:
    assert dedupe_marks.cap_from_config(config) == cap


# --- the script (fakeredis and a real redis-server) --------------------------------------------------

@pytest.fixture(params=["fake", "real"])
def connection(request: pytest.FixtureRequest) -> redis.Redis:
    return request.getfixturevalue("fake_redis" if request.param == "fake" else "real_redis")  # type: ignore[no-any-return]


def test_the_same_id_and_body_is_a_duplicate_across_a_bucket_boundary(connection: redis.Redis) -> None:
    before = 1_700_000_399.9  # the last tenth of a second of its bucket
    assert run(connection, "d1", now=before) is IngestResult.ARMED
    for later in (1_700_000_400.0, before + WIDTH, before + WINDOW - 1):
        assert run(connection, "d1", now=later) is IngestResult.DUPLICATE
        assert dedupe_marks.is_marked(connection, "d1", signature_of(BODY), now=later, window=WINDOW, width=WIDTH)
    assert connection.xlen(keys.INGEST_STREAM) == 1


def test_a_duplicate_in_the_current_bucket_writes_nothing(connection: redis.Redis) -> None:
    """The mark's own HSET finds a duplicate in the bucket being written: no count, no entry, no TTL change."""
    bucket = dedupe_marks.bucket_of(T0, WIDTH)
    assert run(connection, "d1", now=T0) is IngestResult.ARMED
    [key] = mark_keys(connection)
    ttl = connection.ttl(key)
    for later in (T0, T0 + 1):
        assert run(connection, "d1", now=later) is IngestResult.DUPLICATE
    assert connection.hget(keys.DEDUPE_MARKS, f"n{bucket}") == b"1"
    assert connection.xlen(keys.INGEST_STREAM) == 1
    assert run(connection, "d2", now=T0 + 100) is IngestResult.ACCEPTED
    assert connection.hget(keys.DEDUPE_MARKS, f"n{bucket}") == b"2"
    assert mark_keys(connection) == [key]  # one shard: the bucket's first generation has 0 bits
    assert ttl - 1 <= connection.ttl(key) <= ttl  # set by the first mark (d2's, 100 s later, would be 100 s less)
    assert ttl == dedupe_marks.expires_in(T0, WINDOW, WIDTH)


def test_the_same_id_with_another_body_is_accepted(connection: redis.Redis) -> None:
    run(connection, "d1")
    other = orjson.dumps([{**VEHICLE, "vehicle": {"id": "v2"}}])
    assert run(connection, "d1", other, now=T0 + WIDTH) is IngestResult.ACCEPTED
    assert run(connection, "d1", other, now=T0 + WIDTH + 1) is IngestResult.DUPLICATE
    assert [f[b"b"] for _, f in connection.xrange(keys.INGEST_STREAM)] == [BODY, other]


def test_a_mark_is_forgotten_once_the_window_has_passed(connection: redis.Redis) -> None:
    """In receipt time: past the window + a bucket no look-up reads the mark's bucket, and its entries in the
    marks hash are dropped when a new bucket starts."""
    run(connection, "d1")
    assert run(connection, "d1", now=T0 + WINDOW) is IngestResult.DUPLICATE  # its bucket is still live
    later = T0 + WINDOW + WIDTH
    assert not dedupe_marks.is_marked(connection, "d1", signature_of(BODY), now=later, window=WINDOW, width=WIDTH)
    assert run(connection, "d1", now=later) is IngestResult.ACCEPTED
    oldest = dedupe_marks.live_buckets(later, WINDOW, WIDTH)[0]
    fields = connection.hkeys(keys.DEDUPE_MARKS)
    assert all(int(f.decode().lstrip("nf")) >= oldest for f in fields), fields


def test_a_mark_of_the_previous_version_still_dedupes(connection: redis.Redis) -> None:
    connection.set(keys.dedupe_key("d1"), ingest.body_digest(BODY), ex=WINDOW)
    connection.set(keys.dedupe_key("d2"), "1", ex=WINDOW)
    assert run(connection, "d1") is IngestResult.DUPLICATE
    assert run(connection, "d2") is IngestResult.DUPLICATE
    other = orjson.dumps([{**VEHICLE, "vehicle": {"id": "v2"}}])
    assert run(connection, "d1", other) is IngestResult.ARMED  # another body under an old id is new input
    assert connection.xlen(keys.INGEST_STREAM) == 1


def test_the_body_digest_is_computed_only_when_a_mark_of_the_previous_version_exists(
        connection: redis.Redis) -> None:
    """The receiver sends no digest (a hash of the body saved per delivery); the script asks for it, writing
    nothing, only where an old mark exists."""
    script = connection.register_script(ingest.INGEST_LUA)

    def first_try(delivery_id: str) -> IngestResult:
        script_keys, args = ingest.script_call(delivery_id, BODY, ingest.classify(BODY), signature=signature_of(BODY),
                                               now=T0, dedupe_ttl_seconds=WINDOW, dedupe_bucket_seconds=WIDTH)
        return ingest.result_of(script(keys=script_keys, args=args))

    connection.set(keys.dedupe_key("old"), ingest.body_digest(BODY), ex=WINDOW)
    assert first_try("old") is IngestResult.LEGACY_MARK
    assert not connection.exists(keys.INGEST_STREAM)
    assert mark_keys(connection) == []
    assert first_try("new") is IngestResult.ARMED


def test_a_new_bucket_is_sized_from_the_previous_one(connection: redis.Redis) -> None:
    for i in range(120):  # 120 marks at a cap of 20 (target 10 per shard)
        assert run(connection, f"d{i}", TEST_EVENT, now=T0 + i, cap=20) is IngestResult.RECORDED
    bucket = dedupe_marks.bucket_of(T0, WIDTH)
    assert int(connection.hget(keys.DEDUPE_MARKS, f"n{bucket}") or 0) == 120
    run(connection, "next", TEST_EVENT, now=T0 + WIDTH, cap=20)
    assert dedupe_marks.generations(connection.hget(keys.DEDUPE_MARKS, str(bucket + 1))) == [4]  # 120/16 < 10


def test_a_burst_opens_a_new_generation_and_every_mark_stays_found(connection: redis.Redis) -> None:
    ids = [f"d{i}" for i in range(300)]
    for i, delivery in enumerate(ids):
        assert run(connection, delivery, TEST_EVENT, now=T0 + i / 100, cap=8) is IngestResult.RECORDED
    bucket = dedupe_marks.bucket_of(T0, WIDTH)
    gens = dedupe_marks.generations(connection.hget(keys.DEDUPE_MARKS, str(bucket)))
    assert gens[0] == 0, gens  # the first bucket after a start: no previous count
    assert len(gens) >= 2, gens
    assert gens == sorted(set(gens)), gens
    assert all(connection.hlen(key) <= 8 for key in mark_keys(connection))  # no shard beyond its cap
    assert all(connection.ttl(key) > 0 for key in mark_keys(connection))  # each new generation's keys too
    for delivery in ids:
        assert run(connection, delivery, TEST_EVENT, now=T0 + WIDTH, cap=8) is IngestResult.DUPLICATE


def test_a_burst_is_sized_by_the_rate_since_the_buckets_first_mark(connection: redis.Redis) -> None:
    """The first mark comes 500 s into a 600 s bucket, then 100 marks a second fill a shard of the first
    generation (cap 8) within a second. Since that first mark, the rate fills the 100 s left with ~10,000
    marks: more shards than a step may add (2 bits). Measured from the bucket's start it would look like 8
    marks in 500 s, and the bucket would grow by 1 bit, then again and again."""
    late = dedupe_marks.bucket_of(T0, WIDTH) * WIDTH + 500
    for i in range(12):
        assert run(connection, f"d{i}", TEST_EVENT, now=late + i / 100, cap=8) is IngestResult.RECORDED
    bucket = dedupe_marks.bucket_of(late, WIDTH)
    assert dedupe_marks.generations(connection.hget(keys.DEDUPE_MARKS, str(bucket))) == [0, 2]
    assert connection.hget(keys.DEDUPE_MARKS, f"f{bucket}") == str(int(late * 1000)).encode()


def test_a_mark_key_expires_after_the_window(real_redis: redis.Redis) -> None:
    """Real expiry with a 1 s window and bucket: every key the script wrote is gone within ~2 s."""
    now = time.time()
    run(real_redis, "d1", TEST_EVENT, now=now, window=1, width=1)
    assert mark_keys(real_redis)
    assert real_redis.ttl(keys.DEDUPE_MARKS) <= 2
    assert all(0 < real_redis.pttl(key) <= 2000 for key in mark_keys(real_redis))
    wait_until(lambda: not mark_keys(real_redis) and not real_redis.exists(keys.DEDUPE_MARKS), timeout=10)
    assert run(real_redis, "d1", TEST_EVENT, now=time.time(), window=1, width=1) is IngestResult.RECORDED


@pytest.fixture
def low_listpack_limit(real_redis: redis.Redis) -> Iterator[int]:
    name = next(iter(real_redis.config_get("hash-max-*-entries")))  # listpack (Redis 7) or ziplist (6)
    before = real_redis.config_get(name)[name]
    real_redis.config_set(name, 16)
    yield 16
    real_redis.config_set(name, before)


def test_the_mark_hashes_stay_listpack_at_the_designed_load(real_redis: redis.Redis) -> None:
    """5,000 marks in one bucket, then 20,000 in the next (sized from the first, then a burst): every hash in
    listpack encoding, no shard beyond the cap, and every mark found."""
    for start, count in ((0, 5000), (5000, 20_000)):
        pipe = real_redis.pipeline(transaction=False)
        script = real_redis.register_script(ingest.INGEST_LUA)
        at = T0 if start == 0 else T0 + WIDTH
        for i in range(start, start + count):
            script_keys, args = ingest.script_call(f"d{i}", TEST_EVENT, ingest.classify(TEST_EVENT),
                                                   signature=signature_of(TEST_EVENT), now=at + i / 10_000,
                                                   dedupe_ttl_seconds=WINDOW, dedupe_bucket_seconds=WIDTH)
            script(keys=script_keys, args=args, client=pipe)
        assert set(pipe.execute()) == {b"recorded"}
    hashes = mark_keys(real_redis)
    assert {real_redis.object("encoding", key) for key in hashes} <= COMPACT
    sizes = [real_redis.hlen(key) for key in hashes]
    assert max(sizes) <= dedupe_marks.DEFAULT_CAP
    assert sum(sizes) == 25_000
    assert sum(sizes) / len(sizes) > 25, "shards not mostly empty either"
    found = [dedupe_marks.is_marked(real_redis, f"d{i}", signature_of(TEST_EVENT), now=T0 + WIDTH + 5, window=WINDOW,
                                    width=WIDTH)
             for i in range(0, 25_000, 97)]
    assert all(found)


def test_a_lower_listpack_limit_is_read_and_kept_inside(real_redis: redis.Redis, low_listpack_limit: int) -> None:
    cap = dedupe_marks.cap_from_config(real_redis.config_get("hash-max-*-entries"))
    assert cap == 12
    for i in range(400):
        run(real_redis, f"d{i}", TEST_EVENT, now=T0 + i, cap=cap)
    assert {real_redis.object("encoding", key) for key in mark_keys(real_redis)} <= COMPACT


def test_marks_use_the_digest_given_to_them() -> None:
    """The script's arguments carry the mark of (id, signature): a test of what the receiver hands to Lua."""
    _, args = ingest.script_call("d1", BODY, ingest.classify(BODY), signature=signature_of(BODY), now=T0,
                                 dedupe_ttl_seconds=WINDOW)
    mark = dedupe_marks.mark_of("d1", signature_of(BODY))
    assert Mark(int(args[12]), bytes(args[13])) == mark  # type: ignore[call-overload]
