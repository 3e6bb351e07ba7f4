"""Workers SIGKILLed at random moments lose no emitted event and duplicate none."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from rq import Worker

from plugwatch import ingest_arming
from tests.support.eventlog import Delivery, epoch_config, feed, generate, reference
from tests.support.servers import Process, wait_until
from tests.support.workers import PATIENT, drained, emitted_ids, kill_hard, start_worker, stored_states

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

KILLS = 20


def per_user_deliveries(log: list[dict[str, Any]], rng: random.Random) -> list[Delivery]:
    """One delivery per user holding that user's whole history in order, deliveries in random order.

    Which events are emitted depends only on each user's order, so any interleaving of these deliveries
    over any number of workers must emit exactly the events of one in-order run.
    """
    histories: dict[str, list[dict[str, Any]]] = {}
    for event in log:
        histories.setdefault(event["user"]["id"], []).append(event)
    deliveries = [Delivery(f"dlv-{user}", orjson.dumps(events)) for user, events in histories.items()]
    rng.shuffle(deliveries)
    return deliveries


def feed_slowly(connection: redis.Redis, deliveries: list[Delivery], seconds: float) -> None:
    """XADD the deliveries over `seconds` in small groups, arming a drain after each as the receiver does."""
    groups = [deliveries[start:start + 10] for start in range(0, len(deliveries), 10)]
    for group in groups:
        feed(connection, group)
        ingest_arming.arm(connection, connection)
        time.sleep(seconds / len(groups))


def pick_victim(connection: redis.Redis, workers: list[Process], rng: random.Random, within: float) -> int:
    """After a random pause, preferably a worker that is running a job right now (RQ says it is busy:
    somewhere between reading entries and committing them), else any worker."""
    time.sleep(rng.uniform(0, within))
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        busy = {worker.pid for worker in Worker.all(connection=connection) if worker.get_state() == "busy"}
        caught = [index for index, process in enumerate(workers) if process.pid in busy]
        if caught:
            return rng.choice(caught)
        time.sleep(0.005)
    return rng.randrange(len(workers))


def test_sigkilled_workers_lose_and_duplicate_no_event(redis_url: str, real_redis: redis.Redis,
                                                       tmp_path: Path) -> None:
    """20 SIGKILLs of random workers (and their RQ scheduler) while 10,000 events arrive; every killed
    worker is replaced. The events stream must then hold exactly the ids of an undisturbed in-order run."""
    rng = random.Random(7)
    log = generate(5, users=500, events_per_user=20)
    expected_states, expected_events = reference(log, epoch_config(real_redis))
    expected_ids = [orjson.loads(event)["id"] for event in expected_events]
    assert len(expected_ids) == len(set(expected_ids))
    deliveries = per_user_deliveries(log, rng)

    spawned = 0

    def spawn() -> Process:
        nonlocal spawned
        spawned += 1
        return start_worker(redis_url, tmp_path / f"worker-{spawned}.log", **PATIENT)

    workers = [spawn() for _ in range(4)]
    feeder = threading.Thread(target=feed_slowly, args=(real_redis, deliveries, 15.0))
    feeder.start()
    try:
        time.sleep(1.5)  # let the first workers start
        for _ in range(KILLS):
            victim = pick_victim(real_redis, workers, rng, within=0.5)
            kill_hard(workers[victim])
            workers[victim] = spawn()
        feeder.join()
        wait_until(lambda: drained(real_redis), timeout=40, interval=0.2, message="the workers did not drain")
    finally:
        feeder.join()
        for worker in workers:
            worker.stop()

    claims = sum(path.read_text().count('"ingest.claimed"') for path in tmp_path.glob("worker-*.log"))
    assert claims > 0, "no kill interrupted a batch: the test did not exercise recovery"
    ids = emitted_ids(real_redis)
    assert len(ids) == len(set(ids)), "an event id was emitted twice"
    assert sorted(ids) == sorted(expected_ids)
    assert {user: state.facts() for user, state in stored_states(real_redis).items()} == {
        user: state.facts() for user, state in expected_states.items()}
