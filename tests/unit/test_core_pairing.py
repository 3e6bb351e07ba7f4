"""Both sides of the pairing: the charger's `pluggedInVehicleId` counts like the vehicle's `pluggedInChargerId`.

Each device keeps the newest report about it from either side, and the two are paired when each one's names
the other (`worker/core/pairing.py`): a charger holds at most one vehicle, a vehicle is plugged into at most
one charger, a newer charger report naming another vehicle, or none, ends the previous vehicle's at-home,
and an older report never brings a pairing back. Payloads as in `test_core_rules.py`.
"""

from __future__ import annotations

import itertools

from tests.unit.test_core_rules import C2, HOME, PLUGGED, V2, C, V, action, charger, decode, kinds, run, ts, vehicle
from worker.core import EmittedEvent, EventType, UserState, apply
from worker.core.pairing import charger_of, vehicle_of

UNPLUGGED = ("vehicle.unplugged_from_home", "unplugged")


def at_home_by_charger(events: list[EmittedEvent]) -> dict[str, set[str]]:
    """Which vehicles are at home on each charger after these events, in emission order."""
    home: dict[str, str] = {}
    for e in events:
        assert e.vehicle_id is not None
        assert e.charger_id is not None
        if e.type is EventType.PLUGGED_IN_AT_HOME:
            home[e.vehicle_id] = e.charger_id
        elif e.type is EventType.UNPLUGGED_FROM_HOME:
            assert home.pop(e.vehicle_id) == e.charger_id
    out: dict[str, set[str]] = {}
    for vid, cid in home.items():
        out.setdefault(cid, set()).add(vid)
    return out


def car_1_at_home() -> UserState:
    state, events = run(charger(HOME, 0), vehicle(C, HOME, 10), charger(HOME, 11, plugged=V))
    assert kinds(events) == [PLUGGED]
    return state


def test_car_2_displaces_car_1_through_the_chargers_report() -> None:
    """Car 1's own unplug report is late: the charger naming car 2 ends car 1's at-home, and car 2's begins."""
    state = car_1_at_home()
    state, events = run(vehicle(None, HOME, 5, vid=V2), charger(HOME, 20, plugged=V2), state=state)
    assert [(e.type.value, e.vehicle_id, e.charger_id, e.data.get("reason")) for e in events] == [
        ("vehicle.unplugged_from_home", V, C, "unplugged"), ("vehicle.plugged_in_at_home", V2, C, None)]
    assert [e.to_dict()["occurredAt"] for e in events] == [ts(20), ts(20)]
    _, late = run(vehicle(None, HOME, 15), vehicle(C, HOME, 18, vid=V2), state=state)
    assert late == [], "the cars' own reports, older than the charger's, change nothing"


def test_the_chargers_no_vehicle_report_unplugs() -> None:
    state, events = run(charger(HOME, 30), state=car_1_at_home())
    assert kinds(events) == [UNPLUGGED]
    assert (events[0].vehicle_id, events[0].charger_id, events[0].to_dict()["occurredAt"]) == (V, C, ts(30))
    assert charger_of(state, V) is None


def test_an_older_charger_report_changes_nothing() -> None:
    state = car_1_at_home()
    result = apply(state, decode(charger(HOME, 5)))
    assert (result.events, result.state) == ((), state)
    result = apply(state, decode(charger(HOME, 5, plugged=V2)))
    assert result.events == ()
    assert (charger_of(result.state, V), charger_of(result.state, V2)) == (C, None)


def test_a_newer_vehicle_report_takes_the_charger_back() -> None:
    """After the charger said car 2, car 1 reporting itself on that charger later wins it again."""
    state, _ = run(vehicle(None, HOME, 5, vid=V2), charger(HOME, 20, plugged=V2), state=car_1_at_home())
    _, events = run(vehicle(C, HOME, 40), state=state)
    assert [(e.type.value, e.vehicle_id) for e in events] == [
        ("vehicle.unplugged_from_home", V2), ("vehicle.plugged_in_at_home", V)]
    assert [e.to_dict()["occurredAt"] for e in events] == [ts(40), ts(40)]


def test_charger_names_a_vehicle_whose_newer_own_report_names_nothing() -> None:
    """The corner, one way: the vehicle's own report is newer, so it is plugged into nothing."""
    for order in itertools.permutations([charger(HOME, 10, plugged=V), vehicle(None, HOME, 20)]):
        state, events = run(*order)
        assert events == []
        assert vehicle_of(state, C) is None


def test_charger_names_a_vehicle_whose_older_own_report_names_nothing() -> None:
    """The corner, the other way: the charger's report is newer, so the vehicle is on it, at home."""
    for order in itertools.permutations([vehicle(None, HOME, 10), charger(HOME, 20, plugged=V)]):
        state, events = run(*order)
        assert kinds(events) == [PLUGGED]
        assert (events[0].vehicle_id, events[0].charger_id, events[0].to_dict()["occurredAt"]) == (V, C, ts(20))
        assert charger_of(state, V) == C


def test_a_vehicle_is_plugged_into_at_most_one_charger() -> None:
    """Its own report names charger 1, charger 2's newer report names it: it is on charger 2 only."""
    state, events = run(charger(HOME, 0), charger(HOME, 0, cid=C2), vehicle(C, HOME, 10),
                        charger(HOME, 20, cid=C2, plugged=V))
    assert [(e.type.value, e.charger_id) for e in events] == [
        ("vehicle.plugged_in_at_home", C), ("vehicle.unplugged_from_home", C), ("vehicle.plugged_in_at_home", C2)]
    assert vehicle_of(state, C) is None


def test_two_cars_claiming_one_charger_never_both_at_home() -> None:
    """Both cars report the same charger and the charger names nobody: the newest report wins, in any order."""
    log = [charger(HOME, 0), vehicle(C, HOME, 10), vehicle(C, HOME, 12, vid=V2), charger(HOME, 11, plugged=V)]
    for order in itertools.permutations(log):
        state, events = run(*order)
        for cut in range(len(events) + 1):
            assert all(len(vids) == 1 for vids in at_home_by_charger(events[:cut]).values()), order
        assert at_home_by_charger(events) == {C: {V2}}, order
        assert vehicle_of(state, C) == V2


def test_an_older_report_never_brings_a_pairing_back() -> None:
    """Car 1 moved to charger 2 (only charger 2 told), then charger 2 names nobody: car 1 is not back on 1.

    Its own report of charger 1 is older than charger 2's naming it, and that report stays on car 1.
    """
    state, _ = run(charger(HOME, 0, cid=C2), state=car_1_at_home())
    state, events = run(charger(HOME, 20, cid=C2, plugged=V), state=state)
    assert [(e.type.value, e.charger_id) for e in events] == [
        ("vehicle.unplugged_from_home", C), ("vehicle.plugged_in_at_home", C2)]
    state, events = run(charger(HOME, 30, cid=C2), state=state)
    assert [(e.type.value, e.charger_id) for e in events] == [("vehicle.unplugged_from_home", C2)]
    assert (charger_of(state, V), vehicle_of(state, C)) == (None, None)


def test_a_car_that_moved_on_does_not_give_the_charger_back_to_the_one_it_displaced() -> None:
    """Car 2 reported itself on car 1's charger, then on another: car 1's older reports stay displaced."""
    state, _ = run(charger(HOME, 0, cid=C2), vehicle(C, HOME, 20, vid=V2), state=car_1_at_home())
    assert charger_of(state, V) is None
    state, events = run(vehicle(C2, HOME, 30, vid=V2), state=state)
    assert [(e.type.value, e.vehicle_id, e.charger_id) for e in events] == [
        ("vehicle.unplugged_from_home", V2, C), ("vehicle.plugged_in_at_home", V2, C2)]
    assert vehicle_of(state, C) is None


def test_a_tie_at_the_same_millisecond_is_broken_by_the_ids_in_any_order() -> None:
    """Equal Enode times are broken like every fact, by the ids reported: the result does not depend on order."""
    log = [vehicle(C, HOME, 10), charger(HOME, 10, plugged=V2), vehicle(None, HOME, 1, vid=V2)]
    results = {(charger_of(state, V), charger_of(state, V2))
               for state in (run(*order)[0] for order in itertools.permutations(log))}
    assert results == {(None, C)}  # "veh-2" > "veh-1": the charger keeps naming car 2


def test_a_charger_action_goes_to_the_vehicle_the_pairing_names() -> None:
    state, _ = run(vehicle(None, HOME, 5, vid=V2), charger(HOME, 20, plugged=V2), state=car_1_at_home())
    _, events = run(action("a1", "FAILED", 30, target=C, target_type="charger"), state=state)
    assert (events[0].vehicle_id, events[0].charger_id) == (V2, C)
    _, events = run(action("a2", "FAILED", 31, target=V, target_type="vehicle"), state=state)
    assert (events[0].vehicle_id, events[0].charger_id) == (V, None), "car 1 is no longer on the charger"


def test_a_charger_action_after_the_chargers_no_vehicle_report_names_no_vehicle() -> None:
    state, _ = run(charger(HOME, 30), state=car_1_at_home())
    _, events = run(action("a1", "FAILED", 40, target=C, target_type="charger"), state=state)
    assert (events[0].vehicle_id, events[0].charger_id, events[0].sequence) == (None, C, None)
