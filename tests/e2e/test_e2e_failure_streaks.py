"""End to end: long failure streaks, shuffled across deliveries and duplicated, through the real receiver,
real `python -m worker` processes and Redis, give exactly the in-order run's `control.failed` ids (issue 11).

Before actions were remembered by receipt time, a terminal update older than the user's 12 newest was
dropped as stale: here every user has more than 12 failing actions, arriving in any order.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from simulator.clock import parse_iso
from simulator.stories import Scenario, build_scenario
from simulator.truth import FAILED, expected_events, failing_actions
from tests.e2e.harness import (
    System,
    assert_invariants,
    assert_nothing_lost,
    at_home,
    comparable,
    emitted,
    in_order,
    reference_facts,
    send,
    stored_facts,
)
from tests.support.sinks import Sink, SinkServer
from worker.core import Ignored, UserState, apply, decode_event

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


@pytest.fixture
def system(redis_url: str, tmp_path: Path) -> Iterator[System]:
    with SinkServer(Sink()) as sink:
        running = System(redis_url, sink.url + "/hook", tmp_path)
        yield running
        running.stop()


def in_order_control_failed(scenario: Scenario) -> dict[str, tuple[str, str]]:
    """The `control.failed` ids of the scenario applied in order by the core in this process, each with
    its (user id, action id)."""
    states: dict[str, UserState] = {}
    ids: dict[str, tuple[str, str]] = {}
    for event in scenario.events:
        observation = decode_event(event, parse_iso(event["createdAt"]) + 1000)
        if isinstance(observation, Ignored):
            continue
        applied = apply(states.get(observation.user_id, UserState()), observation)
        states[observation.user_id] = applied.state
        for emitted_event in applied.events:
            if emitted_event.type.value == FAILED:
                assert emitted_event.id not in ids, "in order, each failure is emitted once"
                ids[emitted_event.id] = (emitted_event.user_id, emitted_event.data["actionId"])
    return ids


def test_shuffled_duplicated_long_failure_streaks_give_the_in_order_control_failed_ids(
        system: System, real_redis: redis.Redis) -> None:
    scenario = build_scenario(150, seed=12, long_streaks=True)
    expected = in_order_control_failed(scenario)
    assert set(expected.values()) == failing_actions(scenario.events), "in order: one per failed action"
    per_user = Counter(user for user, _ in expected.values())
    assert min(per_user.values()) >= 12, "every user fails more often than the 12 actions once remembered"

    deliveries = in_order(scenario, shuffle=True, duplicate_same_id=0.2, duplicate_new_id=0.3, seed=12)
    assert_nothing_lost(real_redis, send(system.url, deliveries, concurrency=4), deliveries)
    time.sleep(0.5)
    got = emitted(real_redis)

    assert_invariants(got)  # no id twice; per vehicle, sequence increases and at-home alternates
    failed = [event for event in got if event["type"] == FAILED]
    assert {event["id"] for event in failed} == set(expected)
    assert len(failed) == len(expected)
    assert {(event["userId"], event["data"]["actionId"]) for event in failed} == failing_actions(scenario.events)
    assert stored_facts(real_redis) == reference_facts(scenario)
    assert at_home(map(comparable, got)) == at_home(expected_events(scenario.events))
