"""At home, re-derived for every vehicle of a user after a change, and the events of each transition. Pure.

*At home* (DESIGN.md §1, with both sides of the pairing): vehicle V is paired with charger C
(`worker.core.pairing`: the newest plug report about each names the other), V's `location.id` is L and
C's `location.id` is L. Every vehicle of the user is re-derived, because one report can move two: a
charger naming car 2 ends car 1's at-home and may begin car 2's. The derived fact is compared with the one
last emitted (`Vehicle.home`), which makes plugged-in and unplugged events alternate per vehicle; within
one change all unplugs come before all plug-ins, so no moment has two vehicles at home on one charger.

After plugwatch lost its state (`CoreConfig.announce_first_status`) a vehicle tracked anew announces its
first decided status once, also "not at home" (`unplugged_from_home`, reason `state_lost`, no charger or
Location): a consumer that still holds it at home from before the loss learns that it left.
"""

from __future__ import annotations

from typing import Any

from msgspec.structs import replace

from worker.core.events import EmittedEvent, EventType, UnplugReason, event_id
from worker.core.observations import DeviceDeleted
from worker.core.pairing import charger_of
from worker.core.state import Home, UserState, Vehicle


def settle(
    state: UserState, user_id: str, cause_at: int, deleted: DeviceDeleted | None = None
) -> tuple[UserState, tuple[EmittedEvent, ...]]:
    """Re-derive at-home for every vehicle and emit the transitions since the last emitted fact."""
    unplugs: list[EmittedEvent] = []
    plugins: list[EmittedEvent] = []
    changed: dict[str, Vehicle] = {}
    vehicles = state.vehicles.items() if len(state.vehicles) < 2 else sorted(state.vehicles.items())
    for vid, vehicle in vehicles:
        if vehicle.home is None and not vehicle.announce and (vehicle.location is None
                                                              or vehicle.location.value is None):
            continue  # not at home before, and cannot be without a location
        derived = _derive_home(state, vid, vehicle)
        if (derived[0] if derived is not None else None) != vehicle.home:
            changed[vid] = _transition(state, user_id, vid, vehicle, derived, cause_at, deleted, unplugs, plugins)
        elif vehicle.announce and _decided(state, vehicle):
            changed[vid] = _announce_away(unplugs, vehicle, user_id, vid, cause_at)
    if not changed:
        return state, ()
    return replace(state, vehicles={**state.vehicles, **changed}), (*unplugs, *plugins)


def _transition(
    state: UserState, user_id: str, vid: str, vehicle: Vehicle, derived: tuple[Home, int] | None,
    cause_at: int, deleted: DeviceDeleted | None, unplugs: list[EmittedEvent], plugins: list[EmittedEvent],
) -> Vehicle:
    """The vehicle after its at-home changed to `derived`: the unplug from the old home, the plug-in to the new."""
    if vehicle.home is not None:
        reason, at = _unplug_reason(state, vid, vehicle, vehicle.home, deleted)
        vehicle = _emit(unplugs, vehicle, user_id, vid, EventType.UNPLUGGED_FROM_HOME, vehicle.home,
                        cause_at if at is None else at, {"reason": reason.value})
    if derived is None:
        return replace(vehicle, home=None, announce=False)
    vehicle = _emit(plugins, vehicle, user_id, vid, EventType.PLUGGED_IN_AT_HOME, *derived, {})
    return replace(vehicle, home=derived[0], announce=False)


def _decided(state: UserState, vehicle: Vehicle) -> bool:
    """Whether the vehicle's not-at-home is settled: it reports no plug or no Location, or it and the charger
    it names both have reported their plug and Location (so a later report is news, not a missing half)."""
    plug, location = vehicle.plug, vehicle.location
    if (plug is not None and plug.value is None) or (location is not None and location.value is None):
        return True
    if plug is None or location is None or plug.value is None:
        return False
    charger = state.chargers.get(plug.value)
    return charger is not None and charger.plug is not None and charger.location is not None


def _announce_away(
    unplugs: list[EmittedEvent], vehicle: Vehicle, user_id: str, vid: str, at: int
) -> Vehicle:
    """`unplugged_from_home` (reason `state_lost`) for a vehicle tracked anew after a loss, not at home."""
    sequence = vehicle.sequence + 1
    reason = UnplugReason.STATE_LOST.value
    eid = event_id(EventType.UNPLUGGED_FROM_HOME, user_id, vid, "", "", at, reason, sequence)
    unplugs.append(EmittedEvent(eid, EventType.UNPLUGGED_FROM_HOME, at, user_id, vid, None, None, sequence,
                                {"reason": reason}))
    return replace(vehicle, sequence=sequence, announce=False)


def _derive_home(state: UserState, vid: str, vehicle: Vehicle) -> tuple[Home, int] | None:
    """At-home and when it became true: the newest of the facts it rests on (order-independent)."""
    plug, location = vehicle.plug, vehicle.location
    if plug is None or plug.value is None or location is None or location.value is None:
        return None
    charger = state.chargers.get(plug.value)
    if charger is None or charger.plug is None or charger.plug.value != vid:
        return None  # the charger's newest report names another vehicle, or none
    if charger.location is None or charger.location.value != location.value:
        return None
    return Home(plug.value, location.value), max(plug.at, charger.plug.at, location.at, charger.location.at)


def _unplug_reason(
    state: UserState, vid: str, vehicle: Vehicle, home: Home, deleted: DeviceDeleted | None
) -> tuple[UnplugReason, int | None]:
    """Why `home` no longer holds, and the Enode time of the fact that ended it (None: the cause's time)."""
    if deleted is not None and deleted.device_id == (vid if deleted.device == "vehicle" else home.charger_id):
        reason = UnplugReason.VEHICLE_DELETED if deleted.device == "vehicle" else UnplugReason.CHARGER_DELETED
        return reason, deleted.at
    if charger_of(state, vid) != home.charger_id:  # the newer report, the vehicle's or the charger's, differs
        charger = state.chargers.get(home.charger_id)
        plugs = (vehicle.plug, charger.plug if charger is not None else None)
        return UnplugReason.UNPLUGGED, max((plug.at for plug in plugs if plug is not None), default=None)
    if vehicle.location is None or vehicle.location.value != home.location_id:
        return UnplugReason.LOCATION_CHANGED, vehicle.location.at if vehicle.location else None
    charger = state.chargers.get(home.charger_id)
    charger_at = charger.location.at if charger is not None and charger.location is not None else None
    return UnplugReason.CHARGER_LOCATION_CHANGED, charger_at


def _emit(
    events: list[EmittedEvent], vehicle: Vehicle, user_id: str, vid: str, kind: EventType, home: Home,
    at: int, data: dict[str, Any],
) -> Vehicle:
    sequence = vehicle.sequence + 1
    # The sequence too: reports arriving out of order can end an at-home and begin it again from the same
    # facts, and the second plug-in must not share the first one's id (a consumer would drop it).
    eid = event_id(kind, user_id, vid, home.charger_id, home.location_id, at, data.get("reason", ""), sequence)
    events.append(
        EmittedEvent(eid, kind, at, user_id, vid, home.charger_id, home.location_id, sequence, data)
    )
    return replace(vehicle, sequence=sequence)
