"""The simulator's ground truth: the scenario covers every situation and its expected events are sane."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from functools import cache

from simulator.clock import BASE_MS, iso, parse_iso
from simulator.devices import Charger, Place, Vehicle
from simulator.stories import build_scenario
from simulator.truth import FAILED, PLUGGED, STREAK, UNPLUGGED, Expected, expected_events, from_emitted
from simulator.world import UserWorld


@cache
def _truth() -> tuple[Expected, ...]:
    return tuple(expected_events(build_scenario(150, seed=11).events))


def test_scenario_covers_every_reason_and_a_failure_streak() -> None:
    truth = _truth()
    assert Counter(e.reason for e in truth if e.type == UNPLUGGED).keys() == {
        "unplugged", "location_changed", "charger_location_changed", "vehicle_deleted", "charger_deleted"}
    assert {e.state for e in truth if e.type == FAILED} == {"FAILED", "CANCELLED"}
    assert any(e.type == STREAK for e in truth)


def test_plugged_and_unplugged_alternate_per_vehicle_starting_with_plugged() -> None:
    last: dict[str, str] = {}
    for e in _truth():
        if e.type in (PLUGGED, UNPLUGGED) and e.vehicle_id is not None:
            assert last.get(e.vehicle_id, UNPLUGGED) != e.type, e
            last[e.vehicle_id] = e.type


def test_sequence_counts_every_event_of_a_vehicle_from_one() -> None:
    seen: dict[str, list[int]] = defaultdict(list)
    for e in _truth():
        assert e.vehicle_id is not None, "the scenario never fails an action it cannot tie to a vehicle"
        seen[e.vehicle_id].append(e.sequence or 0)
    assert all(s == list(range(1, len(s) + 1)) for s in seen.values())


def test_a_streak_follows_exactly_the_tenth_consecutive_failure() -> None:
    truth = _truth()
    for i, e in enumerate(truth):
        if e.type == STREAK:
            previous = truth[i - 1]
            assert previous.type == FAILED
            assert previous.consecutive_failures == 10
            assert previous.vehicle_id == e.vehicle_id
            assert previous.occurred_ms == e.occurred_ms
    assert all(e.consecutive_failures != 10 or truth[i + 1].type == STREAK
               for i, e in enumerate(truth) if e.type == FAILED)


def test_occurred_at_never_goes_back_per_vehicle() -> None:
    last: dict[str, int] = {}
    for e in _truth():
        assert e.vehicle_id is not None
        assert e.occurred_ms >= last.get(e.vehicle_id, 0)
        last[e.vehicle_id] = e.occurred_ms


def _world() -> tuple[UserWorld, Place]:
    world = UserWorld(random.Random(5), "usr-1", BASE_MS)
    return world, world.new_place()


def test_plug_in_at_home_uses_the_vehicles_charge_state_timestamp() -> None:
    world, home = _world()
    charger = world.add_charger(home)
    vehicle = world.add_vehicle(has_gps=False)
    world.plug(vehicle, charger)
    [event] = expected_events(world.events)
    assert (event.type, event.vehicle_id, event.charger_id, event.location_id, event.sequence) == (
        PLUGGED, vehicle.id, charger.id, home.id, 1)
    assert event.occurred_ms == vehicle.charge_ms


def test_direct_move_between_home_chargers_emits_unplugged_then_plugged() -> None:
    world, home = _world()
    first, second = world.add_charger(home), world.add_charger(home)
    vehicle = world.add_vehicle(has_gps=True)
    world.drive_to(vehicle, home)
    world.plug(vehicle, first)
    world.switch(vehicle, second)
    events = expected_events(world.events)
    assert [(e.type, e.charger_id, e.reason) for e in events] == [
        (PLUGGED, first.id, None), (UNPLUGGED, first.id, "unplugged"), (PLUGGED, second.id, None)]
    assert events[1].occurred_ms == events[2].occurred_ms == vehicle.charge_ms


def test_charger_without_location_and_public_charging_emit_nothing() -> None:
    world, home = _world()
    garage = world.add_charger(None)
    vehicle = world.add_vehicle(has_gps=True)
    world.drive_to(vehicle, home)
    world.plug(vehicle, garage)
    world.unplug(vehicle)
    world.plug(vehicle, None)
    assert expected_events(world.events) == []


def test_from_emitted_reads_an_emitted_event_in_truth_terms() -> None:
    emitted = {"id": "evt_1", "type": UNPLUGGED, "occurredAt": iso(BASE_MS), "userId": "u", "vehicleId": "v",
               "chargerId": "c", "locationId": "l", "sequence": 2, "data": {"reason": "charger_deleted"}}
    assert from_emitted(emitted) == Expected(UNPLUGGED, "u", "v", "c", "l", BASE_MS, 2, reason="charger_deleted")


def test_scenario_has_every_situation_the_issue_lists() -> None:
    """Public charging, unlocated chargers, GPS-less vehicles, moved chargers and every action ending."""
    events = build_scenario(150, seed=11).events
    vehicles = [e["vehicle"] for e in events if e["event"] == "user:vehicle:updated"]
    chargers = [e["charger"] for e in events if e["event"] == "user:charger:updated"]
    assert any(v["chargeState"]["isPluggedIn"] and v["chargeState"]["pluggedInChargerId"] is None for v in vehicles)
    assert any(v["location"]["latitude"] is None for v in vehicles)  # no GPS
    assert any(c["location"]["id"] is None and c["chargeState"]["pluggedInVehicleId"] for c in chargers)
    homes: dict[str, set[str]] = defaultdict(set)
    for c in chargers:
        if c["location"]["id"]:
            homes[c["id"]].add(c["location"]["id"])
    assert any(len(locations) > 1 for locations in homes.values())  # a charger moved
    endings = {(a["state"], (a["failureReason"] or {}).get("type")) for a in
               (e["vendorAction"] for e in events if e["event"] == "user:vendor-action:updated")}
    assert endings >= {("CONFIRMED", None), ("FAILED", "NO_RESPONSE"), ("CANCELLED", "FAILED_PRECONDITION"),
                       ("CANCELLED", "NOT_FOUND"), ("CANCELLED", "CONFLICT"),
                       ("CANCELLED", "REQUESTED_CANCELLATION"), ("CANCELLED", "UNNECESSARY")}
    assert {e["event"] for e in events} >= {"user:vehicle:deleted", "user:charger:deleted"}


def _taken_over(second_has_gps: bool) -> tuple[UserWorld, Charger, Vehicle, Vehicle]:
    """Car 1 plugged in at home, then car 2 (parked at home if it has GPS) takes its charger."""
    world, home = _world()
    charger = world.add_charger(home)
    first, second = world.add_vehicle(has_gps=False), world.add_vehicle(has_gps=second_has_gps)
    if second_has_gps:
        world.drive_to(second, home)
    world.plug(first, charger)
    world.take_over(charger, second)
    return world, charger, first, second


def test_a_second_car_taking_the_charger_is_known_from_the_chargers_report() -> None:
    """The charger names car 2 before either car reports: car 1 leaves home and car 2 (GPS, at home) arrives."""
    world, charger, first, second = _taken_over(second_has_gps=True)
    events = expected_events(world.events)
    assert [(e.type, e.vehicle_id, e.charger_id, e.reason) for e in events] == [
        (PLUGGED, first.id, charger.id, None), (UNPLUGGED, first.id, charger.id, "unplugged"),
        (PLUGGED, second.id, charger.id, None)]
    charger_report = next(e for e in world.events if e["event"] == "user:charger:updated"
                          and e["charger"]["chargeState"]["pluggedInVehicleId"] == second.id)
    assert events[1].occurred_ms == events[2].occurred_ms == parse_iso(
        charger_report["charger"]["chargeState"]["lastUpdated"])


def test_a_second_car_without_gps_is_at_home_from_its_own_report() -> None:
    """Without GPS its `location.id` comes with its own report: the charger's report only ends car 1's."""
    world, _, first, second = _taken_over(second_has_gps=False)
    events = expected_events(world.events)
    assert [(e.type, e.vehicle_id) for e in events] == [(PLUGGED, first.id), (UNPLUGGED, first.id),
                                                        (PLUGGED, second.id)]
    assert events[2].occurred_ms == second.charge_ms > events[1].occurred_ms


def test_scenario_has_a_car_taking_over_a_charger_through_the_chargers_report() -> None:
    """Some at-home ends at the moment a charger reported another vehicle (the vehicle's own report came later)."""
    reports = {(e["charger"]["id"], parse_iso(e["charger"]["chargeState"]["lastUpdated"]))
               for e in build_scenario(150, seed=11).events
               if e["event"] == "user:charger:updated" and e["charger"]["chargeState"]["pluggedInVehicleId"]}
    assert any((e.charger_id, e.occurred_ms) in reports for e in _truth() if e.reason == "unplugged")
