"""Which tracked devices count as deleted: absent from the listing and not updated since it started."""

from __future__ import annotations

from worker.core import Charger, Fact, UserState, Vehicle
from worker.enode.prune import vanished

START_MS = 1_700_000_000_000


def state() -> UserState:
    return UserState(
        vehicles={"v-old": Vehicle(plug=Fact(START_MS - 5000, "c-old")),
                  "v-new": Vehicle(location=Fact(START_MS + 10, "L1")),  # updated during the listing
                  "v-listed": Vehicle(plug=Fact(START_MS - 5000, None))},
        chargers={"c-old": Charger(location=Fact(START_MS - 9000, "L1")), "c-bare": Charger()},
    )


def test_unlisted_devices_with_facts_older_than_the_listing_are_gone_chargers_first() -> None:
    """c-bare has no facts (just discovered, perhaps after the listing): it is kept, it cannot be at home."""
    seen = {"vehicle": {"v-listed"}, "charger": set[str]()}
    assert vanished(state(), seen, START_MS) == [("charger", "c-old"), ("vehicle", "v-old")]


def test_everything_listed_means_nothing_is_gone() -> None:
    seen = {"vehicle": {"v-old", "v-new", "v-listed"}, "charger": {"c-old", "c-bare"}}
    assert vanished(state(), seen, START_MS) == []
