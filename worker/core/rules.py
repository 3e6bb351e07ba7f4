"""The rules: `apply(state, observation) -> Applied(state, events, outcome)`. Pure: no I/O, no clock.

Each device field keeps its newest fact by Enode's timestamp, so an older observation changes nothing and
emits nothing; a plug report is also a fact about the device it names (`worker.core.pairing`). After every
new fact the at-home fact of every vehicle of the user is re-derived (`worker.core.homes`) and compared
with the one last emitted. A deletion drops the device's facts up to its time (`worker.core.tombstones`).

A terminal action update is acted on once: its action is remembered by receipt time (`worker.core.memory`),
and a repeat inside that memory is a duplicate; one not remembered is applied, whatever arrived before it.
"""

from __future__ import annotations

import enum
from typing import TypeVar

import msgspec
from msgspec.structs import replace

from worker.core.config import DEFAULT_CONFIG, CoreConfig
from worker.core.events import EmittedEvent, EventType, event_id
from worker.core.homes import settle
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
from worker.core.pairing import charger_of, mirror, vehicle_of
from worker.core.state import (
    STREAK_THRESHOLD,
    Charger,
    UserState,
    Vehicle,
)
from worker.core.streaks import record_failure, record_success
from worker.core.tombstones import forget, live, prune

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
        return _vehicle_observed(state, obs, config)
    if isinstance(obs, ChargerObserved):
        return _charger_observed(state, obs, config)
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


def _merged(
    state: UserState, device_id: str, known: dict[str, DeviceT], blank: DeviceT, plug: Fact | None,
    location: Fact | None,
) -> tuple[dict[str, DeviceT], Outcome]:
    """`known` with the newest facts about `device_id` (those newer than its deletion); APPLIED if changed."""
    if device_id in state.tombstones:
        plug, location = live(state, device_id, plug), live(state, device_id, location)
        if plug is None and location is None:
            return known, Outcome.STALE  # nothing reported after the device's deletion
    device, outcome = _merge_facts(known.get(device_id, blank), plug, location)
    if outcome is Outcome.APPLIED or device_id not in known:
        return {**known, device_id: device}, Outcome.APPLIED
    return known, outcome


def _mirrored(
    state: UserState, known: dict[str, DeviceT], blank: DeviceT, plug: Fact | None, reporter: str
) -> tuple[dict[str, DeviceT], Outcome]:
    """The plug report as a fact about the device it names: the other side of the same pairing."""
    named = mirror(plug, reporter)
    if named is None:
        return known, Outcome.DUPLICATE
    return _merged(state, named[0], known, blank, named[1], None)


def _vehicle_observed(state: UserState, obs: VehicleObserved, config: CoreConfig) -> Applied:
    vehicles, outcome = _merged(state, obs.vehicle_id, state.vehicles, config.new_vehicle(), obs.plug, obs.location)
    chargers, mirrored = _mirrored(state, state.chargers, Charger(), obs.plug, obs.vehicle_id)
    if Outcome.APPLIED not in (outcome, mirrored):
        return Applied(state, (), outcome)
    return _settled(replace(state, vehicles=vehicles, chargers=chargers), obs)


def _charger_observed(state: UserState, obs: ChargerObserved, config: CoreConfig) -> Applied:
    chargers, outcome = _merged(state, obs.charger_id, state.chargers, Charger(), obs.plug, obs.location)
    vehicles, mirrored = _mirrored(state, state.vehicles, config.new_vehicle(), obs.plug, obs.charger_id)
    if Outcome.APPLIED not in (outcome, mirrored):
        return Applied(state, (), outcome)
    return _settled(replace(state, vehicles=vehicles, chargers=chargers), obs)


def _settled(state: UserState, obs: VehicleObserved | ChargerObserved) -> Applied:
    """A new fact: every vehicle's at-home is re-derived, and tombstones too old for it are forgotten."""
    state, events = settle(state, obs.user_id, obs.at)
    if state.tombstones:  # none of the observation's facts is newer than the newest the state now holds
        state = prune(state, max((fact.at for fact in (obs.plug, obs.location) if fact is not None), default=0))
    return Applied(state, events, Outcome.APPLIED)


def _device_deleted(state: UserState, obs: DeviceDeleted) -> Applied:
    """Facts reported up to the deletion are dropped; a device without newer ones is forgotten."""
    deleted_at = state.tombstones.get(obs.device_id)
    if deleted_at is not None and obs.at <= deleted_at:
        return Applied(state, (), Outcome.DUPLICATE if obs.at == deleted_at else Outcome.STALE)
    field = "vehicles" if obs.device == "vehicle" else "chargers"
    devices = getattr(state, field)
    state = replace(state, tombstones={**state.tombstones, obs.device_id: obs.at})
    if obs.device_id in devices:
        state = replace(state, **{field: {**devices, obs.device_id: forget(devices[obs.device_id], obs.at)}})
    state, events = settle(state, obs.user_id, obs.at, deleted=obs)
    devices = getattr(state, field)
    device = devices.get(obs.device_id)
    if device is not None and device.plug is None and device.location is None:
        kept = {k: v for k, v in devices.items() if k != obs.device_id}
        if obs.device == "vehicle" and device.sequence:  # its numbering goes on if it is linked again
            kept[obs.device_id] = Vehicle(sequence=device.sequence)
        state = replace(state, **{field: kept})
    return Applied(prune(state, obs.at), events, Outcome.APPLIED)


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
    vehicle = vehicles.get(vid) if vid is not None and not state.retired(vid) else None
    if vehicle is None and obs.target_type == "vehicle" and vid not in state.tombstones:
        vehicle = config.new_vehicle()  # the action targets a vehicle plugwatch has not seen yet: track it from now on
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
    """The vehicle an action concerns and the charger, when known: the target and its pairing partner."""
    if obs.target_type == "vehicle":
        return obs.target_id, charger_of(state, obs.target_id)
    return vehicle_of(state, obs.target_id), obs.target_id


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
