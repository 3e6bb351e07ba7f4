"""`plugwatch up` without --seed picks a scenario whose first user's vehicle plugs in at home: about one
user's story in 170 emits no event at all, and a newcomer (and the e2e tests) wait for that first event."""

from __future__ import annotations

from simulator.stories import build_scenario
from simulator.truth import expected_events
from simulator.up_cli import demo_seed

SILENT = [22, 281, 707]  # seeds whose first user emits nothing (checked below, not assumed)


def first_user_types(seed: int, users: int = 1) -> set[str]:
    return {e.type for e in expected_events(build_scenario(users, seed).events) if e.user_id.endswith("-000000")}


def test_the_silent_seeds_are_silent_whatever_the_user_count() -> None:
    for seed in SILENT:
        assert first_user_types(seed) == set()
        assert first_user_types(seed, users=3) == set()


def test_a_seed_whose_first_user_emits_nothing_is_drawn_again() -> None:
    draws = iter([*SILENT, 5])
    seed = demo_seed(lambda: next(draws))
    assert seed == 5
    assert "vehicle.plugged_in_at_home" in first_user_types(seed, users=3)


def test_a_random_draw_plugs_in_at_home() -> None:
    for _ in range(20):
        assert "vehicle.plugged_in_at_home" in first_user_types(demo_seed())
