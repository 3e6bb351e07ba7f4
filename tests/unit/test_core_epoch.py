"""The core under an epoch (`CoreConfig.sequence_base`, `announce_first_status`): pure, no Redis."""

from __future__ import annotations

from typing import Any

from tests.unit.test_core_rules import HOME, PLUGGED, WORK, C, V, action, charger, decode, deleted, kinds, vehicle
from worker.core import CoreConfig, EmittedEvent, UserState, apply

BASE = 1_800_000_000_000
LOST = CoreConfig(sequence_base=BASE, announce_first_status=True)
AWAY_LOST = ("vehicle.unplugged_from_home", "state_lost")


def run(config: CoreConfig, *payloads: dict[str, Any],
        state: UserState | None = None) -> tuple[UserState, list[EmittedEvent]]:
    current, emitted = state or UserState(), []
    for payload in payloads:
        result = apply(current, decode(payload), config)
        current = result.state
        emitted.extend(result.events)
    return current, emitted


def test_a_new_vehicle_numbers_its_events_from_the_base() -> None:
    _, events = run(CoreConfig(sequence_base=BASE), charger(HOME, 0), vehicle(C, HOME, 10), vehicle(None, HOME, 20))
    assert [e.sequence for e in events] == [BASE + 1, BASE + 2]


def test_a_tracked_vehicle_counts_on_from_its_own_sequence_under_a_later_base() -> None:
    state, _ = run(CoreConfig(), charger(HOME, 0), vehicle(C, HOME, 10))
    _, events = run(CoreConfig(sequence_base=BASE), vehicle(None, HOME, 20), state=state)
    assert [e.sequence for e in events] == [2]


def test_event_ids_under_the_same_base_are_deterministic_and_differ_across_bases() -> None:
    payloads = (charger(HOME, 0), vehicle(C, HOME, 10))
    first, again = run(LOST, *payloads)[1], run(LOST, *payloads)[1]
    other = run(CoreConfig(sequence_base=BASE + 5, announce_first_status=True), *payloads)[1]
    assert [e.id for e in first] == [e.id for e in again]
    assert first[0].id != other[0].id


def test_a_deleted_vehicle_keeps_its_base_numbering_when_linked_again() -> None:
    state, _ = run(LOST, charger(HOME, 0), vehicle(C, HOME, 10), deleted("vehicle", V, 20))
    assert state.retired(V)
    assert state.vehicles[V].sequence == BASE + 2
    _, events = run(LOST, vehicle(C, HOME, 30), state=state)
    assert kinds(events) == [PLUGGED]
    assert events[0].sequence == BASE + 3


def test_after_a_loss_a_vehicle_at_home_announces_its_plug_in_once() -> None:
    state, events = run(LOST, charger(HOME, 0, plugged=V), vehicle(C, HOME, 10))
    assert kinds(events) == [PLUGGED]
    _, events = run(LOST, vehicle(C, HOME, 10, loc_at=11), state=state)
    assert events == []


def test_after_a_loss_a_vehicle_not_at_home_announces_state_lost_once() -> None:
    state, events = run(LOST, vehicle(None, WORK, 10))
    assert kinds(events) == [AWAY_LOST]
    event = events[0]
    assert (event.vehicle_id, event.charger_id, event.location_id, event.sequence) == (V, None, None, BASE + 1)
    _, events = run(LOST, vehicle(None, HOME, 20), state=state)
    assert events == [], "announced once"


def test_after_a_loss_a_vehicle_plugged_into_an_unknown_charger_waits_for_it() -> None:
    state, events = run(LOST, vehicle(C, HOME, 10))
    assert events == []
    _, events = run(LOST, charger(WORK, 12, plugged=V), state=state)
    assert kinds(events) == [AWAY_LOST], "the charger is elsewhere: decided, not at home"


def test_after_a_loss_a_vehicle_known_only_from_an_action_announces_with_its_first_facts() -> None:
    state, events = run(LOST, action("a-1", "CONFIRMED", 5))
    assert events == []
    assert state.vehicles[V].announce
    _, events = run(LOST, vehicle(None, WORK, 10), state=state)
    assert kinds(events) == [AWAY_LOST]


def test_without_a_loss_a_new_vehicle_not_at_home_emits_nothing() -> None:
    _, events = run(CoreConfig(sequence_base=BASE), vehicle(None, WORK, 10))
    assert events == []


def test_a_vehicle_tracked_before_the_loss_announces_nothing_new() -> None:
    state, _ = run(CoreConfig(), vehicle(None, WORK, 10))
    _, events = run(LOST, vehicle(None, HOME, 20), state=state)
    assert events == []
