"""`ingest_protocol.PackedCalls`: the receiver's EVALSHA, packed without hiredis for the common case, is byte
for byte what hiredis packs from `script_call`, for every kind of delivery and every partition layout; and
Redis runs it as the script it names."""

from __future__ import annotations

import hashlib

import hiredis
import orjson
import redis
from hypothesis import given
from hypothesis import strategies as st

from plugwatch import ingest_protocol as ingest
from plugwatch import partitions
from plugwatch.enode_signature import digest

SHA = hashlib.sha1(ingest.INGEST_LUA.encode()).hexdigest()
EVENT = {"event": "user:vehicle:updated", "version": "2024-10-01", "createdAt": "2025-03-14T18:02:05.000Z",
         "user": {"id": "u1"}, "vehicle": {"id": "v1", "userId": "u1"}}
HEARTBEAT = {"event": "enode:webhook:heartbeat", "version": "2024-10-01", "createdAt": "2025-03-14T18:02:05.000Z",
             "pendingEvents": 3}
BODIES = [orjson.dumps([EVENT]), orjson.dumps([EVENT] * 7), orjson.dumps([HEARTBEAT]),
          orjson.dumps([EVENT, HEARTBEAT]), orjson.dumps([EVENT, {"event": "system:heartbeat"}]), b"[]",
          b"{}", b"not json", orjson.dumps([{"event": "user:vehicle:updated", "version": "1999-01-01"}])]


def _reference(delivery_id: str, body: bytes, into: partitions.Layout, *, now: float, shard_cap: int,
               legacy: bool, ttl: int, bucket: int) -> bytes:
    batch = ingest.classify_quickly(body) or ingest.classify_slowly(body)
    script_keys, args = ingest.script_call(delivery_id, body, batch, signature=digest(body, "s"), now=now,
                                           dedupe_ttl_seconds=ttl, dedupe_bucket_seconds=bucket,
                                           shard_cap=shard_cap, legacy_digest=legacy, into=into)
    return hiredis.pack_command(("EVALSHA", SHA, len(script_keys), *script_keys, *args))  # type: ignore[arg-type]


@given(delivery_id=st.text(min_size=1, max_size=60), body=st.sampled_from(BODIES),
       partition_count=st.sampled_from([1, 2, 16]), now=st.floats(1e9, 4e9), shard_cap=st.integers(1, 10_000),
       legacy=st.booleans(), ttl=st.integers(1, 10**6), bucket=st.integers(1, 10**6))
def test_a_packed_call_is_what_hiredis_packs_from_script_call(
        delivery_id: str, body: bytes, partition_count: int, now: float, shard_cap: int, legacy: bool, ttl: int,
        bucket: int) -> None:
    into = partitions.layouts(partition_count)[-1]
    packer = ingest.PackedCalls(SHA, into, dedupe_ttl_seconds=ttl, dedupe_bucket_seconds=bucket)
    batch = ingest.classify_quickly(body) or ingest.classify_slowly(body)
    packed = packer.pack(delivery_id, body, batch, signature=digest(body, "s"), now=now, shard_cap=shard_cap,
                         legacy_digest=legacy)
    assert packed == _reference(delivery_id, body, into, now=now, shard_cap=shard_cap, legacy=legacy, ttl=ttl,
                                bucket=bucket)


def test_redis_runs_a_packed_call_and_dedupes_its_retry(real_redis: redis.Redis) -> None:
    """The packed bytes sent as they are: stored once, the same call again is a duplicate."""
    real_redis.script_load(ingest.INGEST_LUA)
    into = partitions.layouts(1)[0]
    packer = ingest.PackedCalls(SHA, into, dedupe_ttl_seconds=3600)
    body = BODIES[1]
    packed = packer.pack("d-1", body, ingest.classify_quickly(body), signature=digest(body, "s"), now=1.75e9)
    connection = real_redis.connection_pool.get_connection()
    try:
        replies = []
        for _ in range(2):
            connection.send_packed_command([packed])
            replies.append(connection.read_response())
    finally:
        real_redis.connection_pool.release(connection)
    assert [ingest.result_of(reply) for reply in replies] == [ingest.IngestResult.ARMED, ingest.IngestResult.DUPLICATE]
    assert real_redis.xlen(into.ingest_stream) == 1
