"""Scenarios with long failure streaks: every vehicle ends its story with 12-16 counted failures in a row."""

from __future__ import annotations

from collections import defaultdict

from simulator.stories import build_scenario, user_story
from simulator.truth import FAILED, STREAK, expected_events, failing_actions


def test_every_user_ends_with_a_long_streak_and_the_story_before_it_is_unchanged() -> None:
    for index in range(20):
        plain, long = user_story(5, index), user_story(5, index, long_streaks=True)
        assert long[: len(plain)] == plain
        endings = [e["vendorAction"] for e in long[len(plain):] if e["event"] == "user:vendor-action:updated"]
        counted = [a for a in endings if a["state"] in ("FAILED", "CANCELLED")]
        assert len(counted) >= 12
        assert all(a["state"] == "FAILED" or a["failureReason"]["type"] in ("FAILED_PRECONDITION", "NOT_FOUND")
                   for a in counted), "no neutral cancellation breaks the run"


def test_long_streaks_reach_twelve_counted_failures_per_vehicle_in_the_ground_truth() -> None:
    scenario = build_scenario(60, seed=9, long_streaks=True)
    truth = expected_events(scenario.events)
    longest: dict[tuple[str, str], int] = defaultdict(int)
    for e in truth:
        if e.type == FAILED and e.vehicle_id is not None:
            longest[(e.user_id, e.vehicle_id)] = max(longest[(e.user_id, e.vehicle_id)], e.consecutive_failures or 0)
    users = {e["user"]["id"] for e in scenario.events if "user" in e}
    assert {user for (user, _), run in longest.items() if run >= 12} == users
    assert sum(run >= 12 for run in longest.values()) > len(users), "second vehicles get their streak too"
    assert sum(e.type == STREAK for e in truth) >= sum(run >= 12 for run in longest.values())


def test_failing_actions_are_the_ground_truths_control_failed_one_each() -> None:
    scenario = build_scenario(60, seed=9, long_streaks=True)
    truth = [e for e in expected_events(scenario.events) if e.type == FAILED]
    failing = failing_actions(scenario.events)
    assert len(failing) == len(truth)
    assert {user for user, _ in failing} == {e.user_id for e in truth}
