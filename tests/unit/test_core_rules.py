"""One test per rule of DESIGN.md §1, driving the pure core with Enode-shaped payloads."""

from __future__ import annotations

from typing import Any

from tests.support.event_schema import check_event
from worker.core import (
    Applied,
    EmittedEvent,
    Fact,
    Outcome,
    UserState,
    apply,
    decode_event,
    decode_state,
    encode_state,
)
from worker.core.timestamps import format_ms, parse_ms

U, V, V2, C, C2, HOME, WORK = "usr-1", "veh-1", "veh-2", "chg-1", "chg-2", "loc-home", "loc-work"
T0 = 1_741_975_000_000  # 2025-03-14T17:56:40Z


def ts(minutes: float) -> str:
    return format_ms(T0 + int(minutes * 60_000))


def vehicle(plug: str | None, location: str | None, at: float, loc_at: float | None = None,
            vid: str = V) -> dict[str, Any]:
    return {
        "event": "user:vehicle:updated", "createdAt": ts(max(at, loc_at or at)), "version": "2024-10-01",
        "user": {"id": U},
        "vehicle": {
            "id": vid, "userId": U, "vendor": "VOLKSWAGEN",
            "chargeState": {"isPluggedIn": plug is not None, "pluggedInChargerId": plug, "lastUpdated": ts(at)},
            "location": {"id": location, "latitude": None, "longitude": None,
                         "lastUpdated": ts(at if loc_at is None else loc_at)},
        },
        "updatedFields": ["chargeState.pluggedInChargerId"],
    }


def charger(location: str | None, at: float, cid: str = C, plugged: str | None = None) -> dict[str, Any]:
    return {
        "event": "user:charger:updated", "createdAt": ts(at), "version": "2024-10-01", "user": {"id": U},
        "charger": {
            "id": cid, "userId": U, "vendor": "EASEE",
            "chargeState": {"isPluggedIn": plugged is not None, "pluggedInVehicleId": plugged,
                            "lastUpdated": ts(at)},
            "location": {"id": location, "lastUpdated": ts(at)},
        },
        "updatedFields": ["location.id"],
    }


def deleted(device: str, device_id: str, at: float) -> dict[str, Any]:
    return {"event": f"user:{device}:deleted", "createdAt": ts(at), "version": "2024-10-01",
            "user": {"id": U}, device: {"id": device_id, "userId": U}}


def action(action_id: str, state: str, at: float, target: str = V, target_type: str = "vehicle",
           failure: str | None = None, kind: str = "START") -> dict[str, Any]:
    return {
        "event": "user:vendor-action:updated", "createdAt": ts(at), "version": "2024-10-01", "user": {"id": U},
        "vendorAction": {
            "id": action_id, "userId": U, "createdAt": ts(at - 1), "updatedAt": ts(at), "completedAt": ts(at),
            "state": state, "targetId": target, "targetType": target_type, "kind": kind,
            "failureReason": None if failure is None else {"type": failure, "detail": "detail text"},
        },
        "updatedFields": ["state"],
    }


def received(payload: dict[str, Any]) -> int:
    """When plugwatch received `payload`: a second after Enode created it."""
    return (parse_ms(payload.get("createdAt")) or T0) + 1000


def decode(payload: dict[str, Any]) -> Any:
    return decode_event(payload, received(payload))


def run(*payloads: dict[str, Any], state: UserState | None = None) -> tuple[UserState, list[EmittedEvent]]:
    current, emitted = state or UserState(), []
    for payload in payloads:
        obs = decode(payload)
        assert not hasattr(obs, "reason"), obs
        result: Applied = apply(current, obs)  # type: ignore[arg-type]
        current = result.state
        for event in result.events:
            check_event(event.to_json())  # the published catalog holds for every event the rules emit
        emitted.extend(result.events)
    return current, emitted


def kinds(events: list[EmittedEvent]) -> list[tuple[str, Any]]:
    return [(e.type.value, e.data.get("reason")) for e in events]


PLUGGED = ("vehicle.plugged_in_at_home", None)


def test_plugged_in_at_home_when_plug_vehicle_and_charger_locations_agree() -> None:
    _, events = run(charger(HOME, 0), vehicle(C, HOME, 10))
    assert kinds(events) == [PLUGGED]
    event = events[0]
    assert (event.user_id, event.vehicle_id, event.charger_id, event.location_id) == (U, V, C, HOME)
    assert event.sequence == 1
    assert event.to_dict()["occurredAt"] == ts(10)


def test_charger_location_learnt_after_vehicle_plugs_in() -> None:
    state, events = run(vehicle(C, HOME, 10))
    assert events == []
    _, events = run(charger(HOME, 5), state=state)
    assert kinds(events) == [PLUGGED]
    assert events[0].to_dict()["occurredAt"] == ts(10), "at home since the newest of the three facts"


def test_vehicle_gps_at_home_but_charger_without_location_is_not_at_home() -> None:
    _, events = run(charger(None, 0), vehicle(C, HOME, 10))
    assert events == []


def test_vehicle_plugged_into_unknown_charger_is_not_at_home() -> None:
    state, events = run(vehicle(C, HOME, 10))
    assert events == []
    assert state.unknown_chargers() == {C}


def test_two_chargers_at_one_home() -> None:
    state, events = run(charger(HOME, 0), charger(HOME, 0, cid=C2), vehicle(C, HOME, 10))
    assert kinds(events) == [PLUGGED]
    _, events = run(vehicle(None, HOME, 20), vehicle(C2, HOME, 30), state=state)
    assert kinds(events) == [("vehicle.unplugged_from_home", "unplugged"), PLUGGED]
    assert [e.charger_id for e in events] == [C, C2]


def test_moving_from_home_charger_to_public_charging_is_unplugged() -> None:
    state, _ = run(charger(HOME, 0), vehicle(C, HOME, 10))
    _, events = run(vehicle(None, "loc-public", 60), state=state)
    assert kinds(events) == [("vehicle.unplugged_from_home", "unplugged")]
    assert (events[0].charger_id, events[0].location_id, events[0].sequence) == (C, HOME, 2)


def test_location_changing_while_plugged_is_location_changed() -> None:
    state, _ = run(charger(HOME, 0), vehicle(C, HOME, 10))
    _, events = run(vehicle(C, WORK, 10, loc_at=20), state=state)
    assert kinds(events) == [("vehicle.unplugged_from_home", "location_changed")]
    assert events[0].to_dict()["occurredAt"] == ts(20)


def test_charger_moved_to_another_location_is_charger_location_changed() -> None:
    state, _ = run(charger(HOME, 0), vehicle(C, HOME, 10))
    _, events = run(charger(WORK, 30, plugged=V), state=state)
    assert kinds(events) == [("vehicle.unplugged_from_home", "charger_location_changed")]
    assert events[0].to_dict()["occurredAt"] == ts(30)


def test_vehicle_deleted_at_home() -> None:
    state, _ = run(charger(HOME, 0), vehicle(C, HOME, 10))
    state, events = run(deleted("vehicle", V, 40), state=state)
    assert kinds(events) == [("vehicle.unplugged_from_home", "vehicle_deleted")]
    assert state.retired(V), "forgotten but for its sequence"
    assert V not in state.facts()["vehicles"]  # type: ignore[operator]


def test_charger_deleted_ends_at_home() -> None:
    state, _ = run(charger(HOME, 0), vehicle(C, HOME, 10))
    state, events = run(deleted("charger", C, 40), state=state)
    assert kinds(events) == [("vehicle.unplugged_from_home", "charger_deleted")]
    assert C not in state.chargers


def test_updates_from_before_a_vehicles_deletion_are_stale() -> None:
    """An update Enode sent before the deletion and retried after it changes nothing about the vehicle."""
    state, _ = run(charger(HOME, 0), vehicle(C, HOME, 10), deleted("vehicle", V, 40))
    result = apply(state, decode(vehicle(None, WORK, 30)))
    assert (result.outcome, result.events, result.state) == (Outcome.STALE, (), state)
    result = apply(state, decode(vehicle(C, HOME, 30)))
    assert result.events == ()
    assert result.state.retired(V), "what it says about the charger is kept on the charger only"


def test_older_observation_changes_nothing_and_emits_nothing() -> None:
    state, _ = run(charger(HOME, 0), vehicle(C, HOME, 10), vehicle(None, HOME, 20))
    result = apply(state, decode(vehicle(None, WORK, 15)))
    assert result.outcome is Outcome.STALE
    assert result.events == ()
    assert result.state == state


def test_an_at_home_that_comes_back_from_the_same_facts_has_new_ids() -> None:
    """Late reports of the charger moving away and back end and restore at-home with the same `occurredAt`."""
    _, events = run(charger(HOME, 0), vehicle(C, HOME, 10), charger(WORK, 3), charger(HOME, 6))
    assert kinds(events) == [PLUGGED, ("vehicle.unplugged_from_home", "charger_location_changed"), PLUGGED]
    assert events[0].occurred_at_ms == events[2].occurred_at_ms
    assert len({e.id for e in events}) == 3


def test_redelivered_observation_is_a_duplicate() -> None:
    state, _ = run(charger(HOME, 0), vehicle(C, HOME, 10))
    result = apply(state, decode(vehicle(C, HOME, 10)))
    assert result.outcome is Outcome.DUPLICATE
    assert result.events == ()


def test_failed_action_on_charger_with_paired_vehicle() -> None:
    state, _ = run(charger(HOME, 0, plugged=V), vehicle(C, HOME, 10))
    _, events = run(action("a1", "FAILED", 20, target=C, target_type="charger", failure="NO_RESPONSE"),
                    state=state)
    assert [e.type.value for e in events] == ["control.failed"]
    event = events[0]
    assert (event.vehicle_id, event.charger_id, event.location_id, event.sequence) == (V, C, HOME, 2)
    assert event.data == {
        "actionId": "a1", "kind": "START", "targetType": "charger", "targetId": C, "state": "FAILED",
        "failureReason": {"type": "NO_RESPONSE", "detail": "detail text"}, "consecutiveFailures": 1,
    }


def test_failed_action_on_charger_resolves_vehicle_by_its_plugged_in_charger() -> None:
    state, _ = run(charger(HOME, 0), vehicle(C, HOME, 10))
    _, events = run(action("a1", "FAILED", 20, target=C, target_type="charger"), state=state)
    assert events[0].vehicle_id == V


def test_failed_action_on_charger_without_vehicle_has_no_vehicle_or_sequence() -> None:
    state, _ = run(charger(HOME, 0))
    _, events = run(action("a1", "FAILED", 20, target=C, target_type="charger"), state=state)
    assert (events[0].vehicle_id, events[0].sequence, events[0].charger_id) == (None, None, C)


def test_cancelled_with_conflict_is_not_a_failure() -> None:
    _, events = run(action("a1", "CANCELLED", 20, failure="CONFLICT"))
    assert events == []


def test_cancelled_with_failed_precondition_or_not_found_is_a_failure() -> None:
    _, events = run(action("a1", "CANCELLED", 20, failure="FAILED_PRECONDITION"),
                    action("a2", "CANCELLED", 21, failure="NOT_FOUND", kind="STOP"))
    assert [(e.type.value, e.data["consecutiveFailures"]) for e in events] == [
        ("control.failed", 1), ("control.failed", 2)]


def test_pending_and_unknown_action_states_are_ignored() -> None:
    state = UserState()
    for state_name in ("PENDING", "SOMETHING_NEW"):
        result = apply(state, decode(action("a1", state_name, 20)))
        assert (result.outcome, result.events) == (Outcome.IGNORED, ())


def test_tenth_consecutive_failure_emits_one_streak_event_and_the_eleventh_none() -> None:
    state, events = run(*[action(f"a{i}", "FAILED", i) for i in range(1, 10)])
    assert [e.type.value for e in events] == ["control.failed"] * 9
    state, events = run(action("a10", "FAILED", 10), state=state)
    assert [e.type.value for e in events] == ["control.failed", "control.failure_streak"]
    assert events[1].data["consecutiveFailures"] == 10
    _, events = run(action("a11", "FAILED", 11), state=state)
    assert [e.type.value for e in events] == ["control.failed"]
    assert events[0].data["consecutiveFailures"] == 11


def test_confirmed_action_resets_the_streak() -> None:
    state, _ = run(*[action(f"a{i}", "FAILED", i) for i in range(1, 11)])
    state, events = run(action("ok", "CONFIRMED", 12), state=state)
    assert events == []
    assert state.vehicles[V].failures == 0
    _, events = run(*[action(f"b{i}", "FAILED", 20 + i) for i in range(1, 11)], state=state)
    assert [e.type.value for e in events].count("control.failure_streak") == 1


def test_failure_older_than_the_last_confirmation_does_not_extend_the_streak() -> None:
    state, _ = run(action("ok", "CONFIRMED", 12))
    _, events = run(action("late", "FAILED", 5), state=state)
    assert events[0].data["consecutiveFailures"] == 0


def test_redelivered_action_update_emits_nothing() -> None:
    state, _ = run(action("a1", "FAILED", 20))
    result = apply(state, decode(action("a1", "FAILED", 20)))
    assert (result.outcome, result.events) == (Outcome.DUPLICATE, ())


def test_sequence_increases_by_one_per_vehicle_event() -> None:
    _, events = run(charger(HOME, 0), vehicle(C, HOME, 10), vehicle(None, HOME, 20), vehicle(C, HOME, 30),
                    action("a1", "FAILED", 31))
    assert [e.sequence for e in events] == [1, 2, 3, 4]


def test_event_ids_are_deterministic_and_distinct() -> None:
    log = (charger(HOME, 0), vehicle(C, HOME, 10), vehicle(None, HOME, 20), vehicle(C, HOME, 30))
    _, first = run(*log)
    _, second = run(*log)
    assert [e.id for e in first] == [e.id for e in second]
    assert len({e.id for e in first}) == len(first)


def test_event_json_has_the_contract_shape() -> None:
    _, events = run(charger(HOME, 0), vehicle(C, HOME, 10))
    assert list(events[0].to_dict()) == [
        "id", "type", "occurredAt", "userId", "vehicleId", "chargerId", "locationId", "sequence", "data"]
    assert events[0].id.startswith("evt_")


def test_state_of_a_vehicle_with_its_charger_is_small_and_round_trips() -> None:
    state, _ = run(charger(HOME, 0, plugged=V), vehicle(C, HOME, 10), action("a1", "FAILED", 11))
    encoded = encode_state(state)
    assert decode_state(encoded) == state
    assert len(encoded) < 512


def test_action_redelivered_after_many_newer_actions_emits_nothing() -> None:
    """Every action of the memory window is remembered, however many newer ones came since."""
    state, first = run(action("old", "FAILED", 1), *[action(f"n{i}", "CONFIRMED", 10 + i) for i in range(30)])
    assert len(first) == 1
    result = apply(state, decode(action("old", "FAILED", 1)))
    assert (result.outcome, result.events) == (Outcome.DUPLICATE, ())
    assert len(encode_state(result.state)) < 1024


def test_a_vehicle_only_its_charger_names_is_known_from_that_report() -> None:
    """Enode names only a vehicle of the same user: the charger's report makes it known, not at home yet."""
    state, events = run(charger(HOME, 0, plugged="veh-unseen"), action("a1", "FAILED", 20, target=C,
                                                                         target_type="charger"))
    assert [(e.type.value, e.vehicle_id, e.sequence) for e in events] == [("control.failed", "veh-unseen", 1)]
    assert state.vehicles["veh-unseen"].plug == Fact(T0, C)
    assert state.vehicles["veh-unseen"].home is None
