"""End to end: simulated Enode traffic through the real receiver, real worker processes and Redis.

Each test plays a seeded scenario and compares what plugwatch emitted (the `plugwatch:events` stream and,
where said, the HTTP sink) and stored with the simulator's ground truth (DESIGN.md §2).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from plugwatch import signing
from simulator.stories import build_scenario
from simulator.truth import Expected, expected_events
from tests.conftest import TEST_DOWNSTREAM_SECRET
from tests.e2e.harness import (
    System,
    assert_invariants,
    assert_nothing_lost,
    at_home,
    comparable,
    comparable_in,
    emitted,
    in_order,
    per_user,
    reference_facts,
    send,
    send_in_background,
    stored_facts,
    wait_for_events,
    wait_until_idle,
)
from tests.support.servers import RedisServer
from tests.support.sinks import Sink

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]



@pytest.fixture
def system(redis_url: str, sink: tuple[Sink, str], tmp_path: Path) -> Iterator[System]:
    running = System(redis_url, sink[1], tmp_path)
    yield running
    running.stop()




def test_thousand_users_in_order_emit_exactly_the_ground_truth(system: System, real_redis: redis.Redis) -> None:
    scenario = build_scenario(1000, seed=1)
    truth = expected_events(scenario.events)
    deliveries = in_order(scenario)
    report = send(system.url, deliveries, concurrency=1)
    assert_nothing_lost(real_redis, report, deliveries)
    got = wait_for_events(real_redis, len(truth), timeout=120)
    assert per_user(map(comparable_in(real_redis), got)) == per_user(truth)


def _order(e: Expected) -> tuple[str, str, int]:
    return (e.user_id, e.vehicle_id or "", e.sequence or 0)


def test_sink_receives_each_ground_truth_event_once_signed(
    system: System, real_redis: redis.Redis, sink: tuple[Sink, str]
) -> None:
    recorder, _url = sink
    scenario = build_scenario(60, seed=4)
    truth = expected_events(scenario.events)
    assert send(system.url, in_order(scenario), concurrency=1).ok
    received = recorder.wait_for(len(truth), timeout=120, accepted=True)
    for request in received:
        signing.verify(TEST_DOWNSTREAM_SECRET, request.headers, request.body)
    by_id = {r.webhook_id: r.event for r in received}
    assert len(by_id) == len(truth)
    assert sorted(map(comparable_in(real_redis), by_id.values()), key=_order) == sorted(truth, key=_order)


def _shuffled_run(system: System, client: redis.Redis, users: int, seed: int) -> list[dict[str, object]]:
    scenario = build_scenario(users, seed=seed)
    deliveries = in_order(scenario, shuffle=True, duplicate_same_id=0.2, duplicate_new_id=0.2, seed=seed)
    assert_nothing_lost(client, send(system.url, deliveries, concurrency=4), deliveries)
    time.sleep(0.5)
    return emitted(client)


def test_shuffled_duplicated_traffic_keeps_the_invariants_and_ends_in_the_in_order_state(
    system: System, real_redis: redis.Redis
) -> None:
    scenario = build_scenario(300, seed=2)
    got = _shuffled_run(system, real_redis, 300, 2)
    assert_invariants(got)
    assert at_home(map(comparable, got)) == at_home(expected_events(scenario.events))
    assert stored_facts(real_redis) == reference_facts(scenario)


def _assert_exactly_the_ground_truth(client: redis.Redis, scenario_users: int, seed: int) -> None:
    """Fed in order, a crash or an outage in between must not change a single emitted event or stored fact."""
    scenario = build_scenario(scenario_users, seed=seed)
    truth = expected_events(scenario.events)
    got = wait_for_events(client, len(truth), timeout=120)
    assert_invariants(got)
    assert per_user(map(comparable_in(client), got)) == per_user(truth)
    assert stored_facts(client) == reference_facts(scenario)


def test_workers_killed_during_the_run_lose_and_duplicate_nothing(
    system: System, real_redis: redis.Redis
) -> None:
    scenario = build_scenario(300, seed=3)
    deliveries = in_order(scenario)
    join = send_in_background(system.url, deliveries, delay=0.01)
    kills = 0
    while join.alive() or kills < 2:  # type: ignore[attr-defined]
        time.sleep(1.0)
        victim = system.workers[kills % len(system.workers)]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        kills += 1
        system.restart_dead_workers()
    assert_nothing_lost(real_redis, join(), deliveries)
    _assert_exactly_the_ground_truth(real_redis, 300, 3)


def test_redis_restart_during_the_run_loses_nothing(
    private_redis: RedisServer, sink: tuple[Sink, str], tmp_path: Path
) -> None:
    """While Redis is down the receiver answers 503 and the simulator resends, as Enode would."""
    running = System(private_redis.url, sink[1], tmp_path)
    try:
        scenario = build_scenario(200, seed=5)
        deliveries = in_order(scenario)
        join = send_in_background(running.url, deliveries, delay=0.02)
        time.sleep(1.0)
        private_redis.stop()
        time.sleep(2.0)
        private_redis.start()
        report = join()
        running.restart_dead_workers()
        assert report.resends > 0, "the outage was not observed; the test proved nothing"
        client = private_redis.client()
        assert_nothing_lost(client, report, deliveries)
        wait_until_idle(client)
        _assert_exactly_the_ground_truth(client, 200, 5)
    finally:
        running.stop()
