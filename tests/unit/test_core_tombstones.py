"""Deleted devices (`worker/core/tombstones.py`): a deletion drops what was reported up to it, nothing newer.

Payloads as in `test_core_rules.py`; times are minutes after its T0.
"""

from __future__ import annotations

import itertools

from tests.unit.test_core_rules import HOME, PLUGGED, C, V, action, decode, deleted, kinds, run, vehicle
from tests.unit.test_core_rules import charger as charger_payload
from worker.core import Outcome, UserState, apply
from worker.core.tombstones import MAX_TOMBSTONES, TOMBSTONE_MEMORY_MS


def test_a_vehicle_linked_again_under_its_id_is_followed_again() -> None:
    """Updates newer than the deletion are authentic: the vehicle is plugged in at home again, numbered on."""
    state, events = run(charger_payload(HOME, 0), vehicle(C, HOME, 10), deleted("vehicle", V, 40),
                        vehicle(C, HOME, 50), charger_payload(HOME, 51, plugged=V))
    assert kinds(events) == [PLUGGED, ("vehicle.unplugged_from_home", "vehicle_deleted"), PLUGGED]
    assert [e.sequence for e in events] == [1, 2, 3]
    assert events[-1].to_dict()["occurredAt"] == vehicle(C, HOME, 50)["vehicle"]["chargeState"]["lastUpdated"]
    assert state.vehicles[V].home is not None


def test_a_deletion_arriving_after_the_relink_keeps_what_came_after_it() -> None:
    """Any order of the same reports ends in the same facts; the update from before the deletion stays out."""
    log = [charger_payload(HOME, 0), vehicle(C, HOME, 10), deleted("vehicle", V, 40), vehicle(None, HOME, 30),
           vehicle(C, HOME, 50)]
    finals = {repr(run(*order)[0].facts()) for order in itertools.permutations(log)}
    assert len(finals) == 1
    state, _ = run(*log)
    plug = state.vehicles[V].plug
    assert plug is not None
    assert plug.value == C


def test_a_late_deletion_leaves_a_relinked_charger_and_its_vehicle_at_home() -> None:
    state, events = run(vehicle(C, HOME, 10), charger_payload(HOME, 50, plugged=V))
    assert kinds(events) == [PLUGGED]
    result = apply(state, decode(deleted("charger", C, 40)))
    assert (result.outcome, result.events) == (Outcome.APPLIED, ())
    assert C in result.state.chargers


def test_a_charger_deleted_with_no_newer_fact_is_forgotten_and_its_vehicle_unplugged() -> None:
    state, _ = run(charger_payload(HOME, 0), vehicle(C, HOME, 10))
    state, events = run(deleted("charger", C, 40), state=state)
    assert kinds(events) == [("vehicle.unplugged_from_home", "charger_deleted")]
    assert C not in state.chargers
    assert state.unknown_chargers() == frozenset(), "the vehicle's report is older than the deletion"
    state, _ = run(vehicle(C, HOME, 45), state=state)
    assert state.unknown_chargers() == {C}, "named after its deletion: linked again, worth a look-up"


def test_a_redelivered_deletion_is_a_duplicate_and_an_older_one_stale() -> None:
    state, _ = run(vehicle(C, HOME, 10), deleted("vehicle", V, 40))
    for at, outcome in ((40, Outcome.DUPLICATE), (20, Outcome.STALE)):
        result = apply(state, decode(deleted("vehicle", V, at)))
        assert (result.outcome, result.events, result.state) == (outcome, (), state)


def test_a_report_without_facts_about_a_deleted_device_is_stale() -> None:
    state, _ = run(vehicle(C, HOME, 10), deleted("vehicle", V, 40))
    bare = vehicle(C, HOME, 50)
    del bare["vehicle"]["chargeState"], bare["vehicle"]["location"]
    result = apply(state, decode(bare))
    assert (result.outcome, result.state) == (Outcome.STALE, state)


def test_an_action_on_a_deleted_vehicle_names_it_without_counting_it() -> None:
    state, _ = run(charger_payload(HOME, 0), vehicle(C, HOME, 10), deleted("vehicle", V, 40))
    _, events = run(action("a1", "FAILED", 45), state=state)
    assert [(e.vehicle_id, e.sequence, e.data["consecutiveFailures"]) for e in events] == [(V, None, None)]


def test_a_user_left_with_deleted_devices_only_is_empty() -> None:
    """The store then keeps its memory for a while only (the retired vehicle's sequence, the tombstones)."""
    state, _ = run(charger_payload(HOME, 0), vehicle(C, HOME, 10), deleted("vehicle", V, 40),
                   deleted("charger", C, 41))
    assert state.retired(V)
    assert state.is_empty()


def test_tombstones_are_kept_for_the_memory_window_of_enode_time() -> None:
    assert TOMBSTONE_MEMORY_MS >= 26 * 3600 * 1000, "longer than Enode retries a delivery"
    window = TOMBSTONE_MEMORY_MS // 60_000
    state, _ = run(deleted("vehicle", V, 1), vehicle(None, HOME, 1 + window, vid="veh-x"))
    assert V in state.tombstones, "exactly the window old: still kept"
    state, _ = run(vehicle(None, HOME, window + 2, vid="veh-x"), state=state)
    assert V not in state.tombstones


def test_at_most_max_tombstones_are_kept_the_newest() -> None:
    deletions = [deleted("vehicle", f"veh-{i}", i) for i in range(MAX_TOMBSTONES + 5)]
    state, _ = run(*reversed(deletions), state=UserState())
    assert sorted(state.tombstones, key=state.tombstones.__getitem__) == [
        f"veh-{i}" for i in range(5, MAX_TOMBSTONES + 5)]
    assert len(state.tombstones) == MAX_TOMBSTONES
