"""SIGTERM is a warm shutdown: the running drain finishes its batch within its budget, nothing is lost."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import orjson
import pytest
import redis

from plugwatch import ingest_arming, keys
from tests.support.eventlog import batch, epoch_config, feed, generate, reference
from tests.support.servers import wait_until
from tests.support.workers import drained, emitted_ids, start_worker

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


def test_sigterm_stops_the_worker_within_the_drain_budget_and_a_successor_finishes(
        redis_url: str, real_redis: redis.Redis, tmp_path: Path) -> None:
    log = generate(3, users=200, events_per_user=100)
    _, expected_events = reference(log, epoch_config(real_redis))
    total = feed(real_redis, batch(log, size=20, rng=random.Random(3)))
    ingest_arming.arm(real_redis, real_redis)
    worker = start_worker(redis_url, tmp_path / "first.log", PLUGWATCH_INGEST_BUDGET_SECONDS="1")
    try:
        wait_until(lambda: real_redis.xlen(keys.INGEST_STREAM) < total, timeout=20, message="no drain started")
        assert real_redis.xlen(keys.INGEST_STREAM) > 0, "the log was too small to interrupt"
        stopping = time.monotonic()
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
        assert time.monotonic() - stopping < 10
    finally:
        worker.stop()
    assert "worker.stopped" in worker.output()

    successor = start_worker(redis_url, tmp_path / "second.log")
    try:
        wait_until(lambda: drained(real_redis), timeout=40, interval=0.2, message="the successor did not drain")
    finally:
        successor.stop()
    assert sorted(emitted_ids(real_redis)) == sorted(orjson.loads(event)["id"] for event in expected_events)
