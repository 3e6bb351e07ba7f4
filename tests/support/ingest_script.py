"""INGEST_LUA run as the receiver runs it, on a synchronous client (the receiver's own path is async)."""

from __future__ import annotations

import redis

from plugwatch import dedupe_marks
from plugwatch import ingest_protocol as ingest
from plugwatch.enode_signature import digest
from tests.conftest import TEST_SECRET


def signature_of(body: bytes, secret: str = TEST_SECRET) -> bytes:
    """The verified signature the receiver makes a delivery's mark of (the tests' Enode signs with TEST_SECRET)."""
    return digest(body, secret)


def run_ingest(connection: redis.Redis, delivery_id: str, body: bytes, *, now: float, dedupe_ttl_seconds: int,
               dedupe_bucket_seconds: int = ingest.DEFAULT_BUCKET_SECONDS,
               shard_cap: int = dedupe_marks.DEFAULT_CAP, secret: str = TEST_SECRET) -> ingest.IngestResult:
    """The script's result for one delivery; after LEGACY_MARK, called again with the body's digest."""
    script = connection.register_script(ingest.INGEST_LUA)
    batch = ingest.classify(body)
    for legacy_digest in (False, True):
        script_keys, args = ingest.script_call(delivery_id, body, batch, signature=signature_of(body, secret), now=now,
                                               dedupe_ttl_seconds=dedupe_ttl_seconds,
                                               dedupe_bucket_seconds=dedupe_bucket_seconds, shard_cap=shard_cap,
                                               legacy_digest=legacy_digest)
        result = ingest.result_of(script(keys=script_keys, args=args))
        if result is not ingest.IngestResult.LEGACY_MARK:
            return result
    raise AssertionError("LEGACY_MARK although the digest was given")
