"""Four worker processes over one shuffled log with duplicates end where one in-order run ends."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import redis
from rq import Worker

from plugwatch import ingest_arming
from tests.support.eventlog import batch, feed, generate, reference, with_duplicates
from tests.support.servers import wait_until
from tests.support.workers import drain_counts, drained, start_worker, stored_states

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


def test_four_workers_over_a_shuffled_log_with_duplicates_reach_the_in_order_state(
        redis_url: str, real_redis: redis.Redis, tmp_path: Path) -> None:
    """10,000 events cut into 1..100-event deliveries, 20% redelivered, all shuffled; compared by state facts
    (the newest fact per device field and who is at home), which do not depend on arrival order. Which events
    are emitted does depend on arrival order, so emitted events are compared in test_worker_crashes."""
    rng = random.Random(20251114)
    log = generate(11, users=100, events_per_user=100)[:10_000]
    deliveries = with_duplicates(batch(log, size=(1, 100), rng=rng), rng=rng, ratio=0.2)
    rng.shuffle(deliveries)
    expected, _ = reference(log)
    logs = [tmp_path / f"worker-{number}.log" for number in range(4)]
    workers = [start_worker(redis_url, path) for path in logs]
    try:
        wait_until(lambda: len(Worker.all(connection=real_redis)) == 4, timeout=30, message="workers not up")
        feed(real_redis, deliveries)
        ingest_arming.arm(real_redis, real_redis)  # as the receiver does after its XADD
        wait_until(lambda: drained(real_redis), timeout=50, interval=0.2, message="the workers did not drain")
    finally:
        for worker in workers:
            worker.stop()

    stored = stored_states(real_redis)
    assert {user: state.facts() for user, state in stored.items()} == {
        user: state.facts() for user, state in expected.items()}
    assert sum(1 for count in drain_counts(logs) if count) >= 2, "the backlog was not shared between workers"
