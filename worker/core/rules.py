"""The rules: `apply(state, observation) -> Applied(state, events, outcome)`. Pure: no I/O, no clock.

*At home* (DESIGN.md §1): the vehicle's `pluggedInChargerId` is a charger C, the vehicle's `location.id`
is L, and C's `location.id` is L. Each device field keeps its newest fact by Enode's timestamp, so an older
observation changes nothing and emits nothing. After every change the at-home fact of each affected vehicle
is re-derived and compared with the one last emitted (`Vehicle.home`), which makes plugged-in and
unplugged events alternate per vehicle.

A terminal action update is acted on once: its action is remembered by receipt time (`worker.core.memory`),
and a repeat inside that memory is a duplicate; one not remembered is applied, whatever arrived before it.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

import msgspec
from msgspec.structs import replace

from worker.core.config import DEFAULT_CONFIG, CoreConfig
from worker.core.events import EmittedEvent, EventType, UnplugReason, event_id
from worker.core.memory import action_key, remember
from worker.core.observations import (
    ActionState,
    ActionUpdated,
    ChargerObserved,
    DeviceDeleted,
    Fact,
    Observation,
    VehicleObserved,
)
from worker.core.state import (
    MAX_TOMBSTONES,
    STREAK_THRESHOLD,
    Charger,
    Home,
    UserState,
    Vehicle,
)
from worker.core.streaks import record_failure, record_success

_FAILURE_REASONS_THAT_COUNT = frozenset({"FAILED_PRECONDITION", "NOT_FOUND"})
DeviceT = TypeVar("DeviceT", Vehicle, Charger)


class Outcome(enum.StrEnum):
    APPLIED = "applied"  # something new was learnt (it may or may not have emitted events)
    STALE = "stale"  # older than what is stored, or about a deleted device: nothing changed
    DUPLICATE = "duplicate"  # exactly what is stored already
    IGNORED = "ignored"  # nothing for plugwatch in it (e.g. a PENDING action)


class Applied(msgspec.Struct, frozen=True):
    state: UserState
    events: tuple[EmittedEvent, ...]
    outcome: Outcome


def apply(state: UserState, obs: Observation, config: CoreConfig = DEFAULT_CONFIG) -> Applied:
    if isinstance(obs, VehicleObserved):
        return _vehicle_observed(state, obs)
    if isinstance(obs, ChargerObserved):
        return _charger_observed(state, obs)
    if isinstance(obs, DeviceDeleted):
        return _device_deleted(state, obs)
    return _action_updated(state, obs, config)


# --- devices ------------------------------------------------------------------------------------------


def _merge_facts(device: DeviceT, plug: Fact | None, location: Fact | None) -> tuple[DeviceT, Outcome]:
    """Keep the newest plug and location facts; APPLIED if either changed, else DUPLICATE or STALE."""
    new_plug = plug if plug is not None and plug.newer_than(device.plug) else device.plug
    new_location = location if location is not None and location.newer_than(device.location) else device.location
    if new_plug is not device.plug or new_location is not device.location:
        return replace(device, plug=new_plug, location=new_location), Outcome.APPLIED
    same = all(new is None or new == old for old, new in ((device.plug, plug), (device.location, location)))
    return device, Outcome.DUPLICATE if same else Outcome.STALE


def _vehicle_observed(state: UserState, obs: VehicleObserved) -> Applied:
    if obs.vehicle_id in state.tombstones:
        return Applied(state, (), Outcome.STALE)
    vehicle, outcome = _merge_facts(state.vehicles.get(obs.vehicle_id, Vehicle()), obs.plug, obs.location)
    if outcome is not Outcome.APPLIED and obs.vehicle_id in state.vehicles:
        return Applied(state, (), outcome)
    state = replace(state, vehicles={**state.vehicles, obs.vehicle_id: vehicle})
    return _settle(state, obs.user_id, [obs.vehicle_id], obs.at, deleted=None)


def _charger_observed(state: UserState, obs: ChargerObserved) -> Applied:
    if obs.charger_id in state.tombstones:
        return Applied(state, (), Outcome.STALE)
    charger, outcome = _merge_facts(state.chargers.get(obs.charger_id, Charger()), obs.plug, obs.location)
    if outcome is not Outcome.APPLIED and obs.charger_id in state.chargers:
        return Applied(state, (), outcome)
    state = replace(state, chargers={**state.chargers, obs.charger_id: charger})
    return _settle(state, obs.user_id, _plugged_into(state, obs.charger_id), obs.at, deleted=None)


def _device_deleted(state: UserState, obs: DeviceDeleted) -> Applied:
    field = "vehicles" if obs.device == "vehicle" else "chargers"
    known = obs.device_id in getattr(state, field)
    if not known and obs.device_id in state.tombstones:
        return Applied(state, (), Outcome.DUPLICATE)
    tombstones = dict(sorted({**state.tombstones, obs.device_id: obs.at}.items(), key=lambda kv: kv[1]))
    while len(tombstones) > MAX_TOMBSTONES:
        del tombstones[next(iter(tombstones))]
    if obs.device == "vehicle":
        affected = [obs.device_id] if known else []
    else:
        affected = _plugged_into(state, obs.device_id)
        state = replace(state, chargers={k: v for k, v in state.chargers.items() if k != obs.device_id})
    settled = _settle(state, obs.user_id, affected, obs.at, deleted=obs)
    vehicles = {k: v for k, v in settled.state.vehicles.items() if k != obs.device_id}
    return Applied(replace(settled.state, vehicles=vehicles, tombstones=tombstones), settled.events,
                   Outcome.APPLIED)


def _plugged_into(state: UserState, charger_id: str) -> list[str]:
    return sorted(
        vid for vid, v in state.vehicles.items()
        if (v.plug is not None and v.plug.value == charger_id)
        or (v.home is not None and v.home.charger_id == charger_id)
    )


def _derive_home(state: UserState, vehicle: Vehicle) -> tuple[Home, int] | None:
    """At-home and when it became true: the newest of the three facts it rests on (order-independent)."""
    if vehicle.plug is None or vehicle.plug.value is None:
        return None
    charger = state.chargers.get(vehicle.plug.value)
    if charger is None or charger.location is None or charger.location.value is None:
        return None
    if vehicle.location is None or vehicle.location.value != charger.location.value:
        return None
    since = max(vehicle.plug.at, vehicle.location.at, charger.location.at)
    return Home(vehicle.plug.value, charger.location.value), since


def _unplug_reason(state: UserState, vehicle: Vehicle, home: Home, deleted: DeviceDeleted | None) -> tuple[
    UnplugReason, int | None
]:
    """Why `home` no longer holds, and the Enode time of the fact that ended it (None: the cause's time)."""
    if deleted is not None:
        reason = UnplugReason.VEHICLE_DELETED if deleted.device == "vehicle" else UnplugReason.CHARGER_DELETED
        return reason, deleted.at
    if vehicle.plug is None or vehicle.plug.value != home.charger_id:
        return UnplugReason.UNPLUGGED, vehicle.plug.at if vehicle.plug else None
    if vehicle.location is None or vehicle.location.value != home.location_id:
        return UnplugReason.LOCATION_CHANGED, vehicle.location.at if vehicle.location else None
    charger = state.chargers.get(home.charger_id)
    charger_at = charger.location.at if charger is not None and charger.location is not None else None
    return UnplugReason.CHARGER_LOCATION_CHANGED, charger_at


def _settle(
    state: UserState, user_id: str, vehicle_ids: list[str], cause_at: int, deleted: DeviceDeleted | None
) -> Applied:
    """Re-derive at-home for `vehicle_ids` and emit the transitions since the last emitted fact."""
    events: list[EmittedEvent] = []
    vehicles = dict(state.vehicles)
    for vid in vehicle_ids:
        vehicle = vehicles[vid]
        home_charger = vehicle.home.charger_id if vehicle.home is not None else None
        gone = deleted is not None and deleted.device_id in (vid, home_charger)
        derived = None if gone else _derive_home(state, vehicle)
        now = derived[0] if derived else None
        if now == vehicle.home:
            continue
        if vehicle.home is not None:
            reason, at = _unplug_reason(state, vehicle, vehicle.home, deleted if gone else None)
            vehicle = _emit(events, vehicle, user_id, vid, EventType.UNPLUGGED_FROM_HOME, vehicle.home,
                            at if at is not None else cause_at, {"reason": reason.value})
        if derived is not None:
            vehicle = _emit(events, vehicle, user_id, vid, EventType.PLUGGED_IN_AT_HOME, *derived, {})
        vehicles[vid] = replace(vehicle, home=now)
    return Applied(replace(state, vehicles=vehicles), tuple(events), Outcome.APPLIED)


def _emit(
    events: list[EmittedEvent], vehicle: Vehicle, user_id: str, vid: str, kind: EventType, home: Home,
    at: int, data: dict[str, Any],
) -> Vehicle:
    sequence = vehicle.sequence + 1
    eid = event_id(kind, user_id, vid, home.charger_id, home.location_id, at, data.get("reason", ""))
    events.append(
        EmittedEvent(eid, kind, at, user_id, vid, home.charger_id, home.location_id, sequence, data)
    )
    return replace(vehicle, sequence=sequence)


# --- actions ------------------------------------------------------------------------------------------


def _action_updated(state: UserState, obs: ActionUpdated, config: CoreConfig) -> Applied:
    failed = obs.state is ActionState.FAILED or (
        obs.state is ActionState.CANCELLED and obs.failure_type in _FAILURE_REASONS_THAT_COUNT
    )
    confirmed = obs.state is ActionState.CONFIRMED
    if obs.state not in (ActionState.CONFIRMED, ActionState.FAILED, ActionState.CANCELLED):
        return Applied(state, (), Outcome.IGNORED)  # PENDING or a state Enode added later
    key = action_key(obs.action_id)
    seen = key in state.actions
    state = _remember_action(state, key, obs, config)  # a repeat may refresh its receipt time
    if seen:
        return Applied(state, (), Outcome.DUPLICATE)
    vid, charger_id = _action_vehicle(state, obs)
    vehicles = dict(state.vehicles)
    vehicle = vehicles.get(vid) if vid is not None else None
    if vehicle is None and obs.target_type == "vehicle" and vid not in state.tombstones:
        vehicle = Vehicle()  # the action targets a vehicle plugwatch has not seen yet: track it from now on
    events: list[EmittedEvent] = []
    if confirmed and vehicle is not None:
        vehicle = record_success(vehicle, obs.at)
    elif failed:
        if vehicle is not None:
            vehicle = record_failure(vehicle, obs.at)
        vehicle = _emit_failure(events, state, obs, vid, charger_id, vehicle)
    if vid is not None and vehicle is not None:
        vehicles[vid] = vehicle
    return Applied(replace(state, vehicles=vehicles), tuple(events), Outcome.APPLIED)


def _remember_action(state: UserState, key: int, obs: ActionUpdated, config: CoreConfig) -> UserState:
    actions = remember(state.actions, key, obs.received_at // 1000, config.action_memory_seconds)
    return state if actions is state.actions else replace(state, actions=actions)


def _action_vehicle(state: UserState, obs: ActionUpdated) -> tuple[str | None, str | None]:
    """The vehicle an action concerns and the charger, when known."""
    if obs.target_type == "vehicle":
        vehicle = state.vehicles.get(obs.target_id)
        plug = vehicle.plug.value if vehicle and vehicle.plug else None
        return obs.target_id, plug
    charger = state.chargers.get(obs.target_id)
    if charger is not None and charger.plug is not None and charger.plug.value is not None:
        return charger.plug.value, obs.target_id
    plugged = [vid for vid, v in sorted(state.vehicles.items()) if v.plug and v.plug.value == obs.target_id]
    return (plugged[0] if plugged else None), obs.target_id


def _emit_failure(
    events: list[EmittedEvent], state: UserState, obs: ActionUpdated, vid: str | None, charger_id: str | None,
    vehicle: Vehicle | None,
) -> Vehicle | None:
    failures = vehicle.failures if vehicle is not None else None
    data = {
        "actionId": obs.action_id, "kind": obs.action_kind, "targetType": obs.target_type,
        "targetId": obs.target_id, "state": obs.state.value,
        "failureReason": None if obs.failure_type is None and obs.failure_detail is None
        else {"type": obs.failure_type, "detail": obs.failure_detail},
        "consecutiveFailures": failures,
    }
    location = vehicle.home.location_id if vehicle is not None and vehicle.home is not None else None
    sequence = None
    if vehicle is not None:
        sequence = vehicle.sequence + 1
        vehicle = replace(vehicle, sequence=sequence)
    eid = event_id(EventType.CONTROL_FAILED, obs.user_id, obs.action_id, obs.state.value)
    events.append(EmittedEvent(eid, EventType.CONTROL_FAILED, obs.at, obs.user_id, vid, charger_id, location,
                               sequence, data))
    if vehicle is not None and vid is not None:
        vehicle = _emit_streak(events, obs, vid, vehicle)
    return vehicle


def _emit_streak(events: list[EmittedEvent], obs: ActionUpdated, vid: str, vehicle: Vehicle) -> Vehicle:
    """`control.failure_streak`, once, when the vehicle's consecutive failures reach the threshold."""
    if vehicle.failures < STREAK_THRESHOLD or vehicle.streak_reported:
        return vehicle
    sequence = vehicle.sequence + 1
    data = {"consecutiveFailures": vehicle.failures, "lastActionId": obs.action_id}
    eid = event_id(EventType.CONTROL_FAILURE_STREAK, obs.user_id, vid, obs.action_id)
    kind = EventType.CONTROL_FAILURE_STREAK
    events.append(EmittedEvent(eid, kind, obs.at, obs.user_id, vid, None, None, sequence, data))
    return replace(vehicle, sequence=sequence, streak_reported=True)
