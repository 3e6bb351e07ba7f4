"""End to end with RQ on a Redis of its own (`RQ_REDIS_URL`): the data on one `redis-server`, RQ's queues,
jobs, workers and dead letters on another; the real receiver, real worker processes, the real CLI.

Each Redis must hold only its own keys (a call site that reached RQ through the data client, or the data through
RQ's, shows up as a stray key), the emitted events must be exactly the simulator's ground truth, and losing RQ's
Redis's content mid-run must lose nothing: a drain job is only a nudge, and the pump re-arms what vanished.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest
import redis

from plugwatch import keys
from simulator.stories import build_scenario
from simulator.truth import expected_events
from tests.e2e.harness import (
    System,
    assert_nothing_lost,
    comparable_in,
    in_order,
    per_user,
    send,
    send_in_background,
    wait_for_events,
)
from tests.support.servers import RedisServer, wait_until
from tests.support.sinks import Reply, Sink

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

PLUGWATCH = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "plugwatch")



def _names(client: redis.Redis) -> set[str]:
    return {key.decode() for key in client.scan_iter(count=1000)}


def test_two_redises_each_hold_only_their_own_keys_and_the_events_are_the_ground_truth(
    redis_url: str, real_redis: redis.Redis, rq_server: RedisServer, sink: tuple[Sink, str], tmp_path: Path,
) -> None:
    recorder, hook = sink
    scenario = build_scenario(150, seed=11)
    truth = expected_events(scenario.events)
    recorder.push(Reply(410))  # the URL is gone: disabled, and every event dead-lettered, in RQ's Redis
    system = System(redis_url, hook, tmp_path, RQ_REDIS_URL=rq_server.url)
    rq_client = rq_server.client()
    dead_letters = f"rq:failed:{keys.DEAD_LETTER_QUEUE}"
    try:
        deliveries = in_order(scenario)
        report = send(system.url, deliveries, concurrency=1)
        assert_nothing_lost(real_redis, report, deliveries)
        got = wait_for_events(real_redis, len(truth), timeout=120)
        assert per_user(map(comparable_in(real_redis), got)) == per_user(truth)
        # Events already in flight beside the one answered 410 were taken; every other one is a dead letter.
        wait_until(lambda: rq_client.zcard(dead_letters) + len(recorder.accepted()) == len(truth), timeout=60,
                   message="every event not taken a dead letter in RQ's Redis")
        letters = rq_client.zcard(dead_letters)
        assert letters > len(truth) / 2

        data_keys, rq_keys = _names(real_redis), _names(rq_client)
        assert not {name for name in data_keys if name.startswith("rq:")}, "RQ wrote to the data Redis"
        assert not {name for name in rq_keys if name.startswith("plugwatch:")}, "data written to RQ's Redis"
        assert any(name.startswith("rq:worker:") for name in rq_keys)  # the workers registered there
        assert any(name.startswith(keys.USER_STATE_PREFIX) for name in data_keys)

        enabled = subprocess.run([PLUGWATCH, "dead-letters", "enable", hook, "--replay"], env=system.env,
                                 capture_output=True, text=True, timeout=60, check=False)
        assert enabled.returncode == 0, enabled.stderr
        assert enabled.stdout.count("\treplayed\t") == letters
        received = recorder.wait_for(len(truth), timeout=60, accepted=True)
        assert len(received) == len(truth)
        assert {request.webhook_id for request in received} == {event["id"] for event in got}
        assert rq_client.zcard(dead_letters) == 0

        status = subprocess.run([PLUGWATCH, "status", "--json"], env=system.env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert status.returncode == 0, status.stderr
        assert '"workers": 2' in status.stdout  # read from RQ's Redis, not the data Redis (which has none)
    finally:
        system.stop()
        rq_client.close()


def test_rq_redis_emptied_mid_run_loses_no_delivery(
    redis_url: str, real_redis: redis.Redis, rq_server: RedisServer, sink: tuple[Sink, str], tmp_path: Path,
) -> None:
    recorder, hook = sink
    scenario = build_scenario(600, seed=12)
    truth = expected_events(scenario.events)
    system = System(redis_url, hook, tmp_path, RQ_REDIS_URL=rq_server.url)
    rq_client = rq_server.client()
    stop = threading.Event()
    flushes = 0

    def flush_now_and_then() -> None:  # every job, registration and registry of RQ vanishes, again and again
        nonlocal flushes
        while not stop.wait(0.1):
            rq_client.flushall()
            flushes += 1

    flusher = threading.Thread(target=flush_now_and_then, daemon=True)
    try:
        deliveries = in_order(scenario)
        join = send_in_background(system.url, deliveries)
        flusher.start()
        report = join()
        stop.set()
        flusher.join()
        assert flushes >= 3
        assert_nothing_lost(real_redis, report, deliveries)
        got = wait_for_events(real_redis, len(truth), timeout=120)
        assert per_user(map(comparable_in(real_redis), got)) == per_user(truth)
        received = recorder.wait_for(len(truth), timeout=60, accepted=True)  # delivery rode through it too
        assert {request.webhook_id for request in received} == {event["id"] for event in got}
        assert all(process.alive() for process in [system.receiver, *system.workers])
        assert not {name for name in _names(real_redis) if name.startswith("rq:")}, "RQ wrote to the data Redis"
        assert not {name for name in _names(rq_client) if name.startswith("plugwatch:")}, "data in RQ's Redis"
    finally:
        stop.set()
        system.stop()
        rq_client.close()
