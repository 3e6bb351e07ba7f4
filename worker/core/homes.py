"""At home, re-derived for every vehicle of a user after a change, and the events of each transition. Pure.

*At home* (DESIGN.md §1, with both sides of the pairing): vehicle V is paired with charger C
(`worker.core.pairing`: the newest plug report of either side decides), V's `location.id` is L and C's
`location.id` is L. Every vehicle of the user is re-derived, because one report can move several: a
charger naming car 2 ends car 1's at-home. The derived fact is compared with the one last emitted
(`Vehicle.home`), which makes plugged-in and unplugged events alternate per vehicle; within one change all
unplugs come before all plug-ins, so no moment has two vehicles at home on one charger.
"""

from __future__ import annotations

from typing import Any

from msgspec.structs import replace

from worker.core.events import EmittedEvent, EventType, UnplugReason, event_id
from worker.core.observations import DeviceDeleted
from worker.core.pairing import Pairing, pairing
from worker.core.state import Home, UserState, Vehicle


def settle(
    state: UserState, user_id: str, cause_at: int, deleted: DeviceDeleted | None = None
) -> tuple[UserState, tuple[EmittedEvent, ...]]:
    """Re-derive at-home for every vehicle and emit the transitions since the last emitted fact."""
    links: Pairing | None = None
    unplugs: list[EmittedEvent] = []
    plugins: list[EmittedEvent] = []
    changed: dict[str, Vehicle] = {}
    vehicles = state.vehicles.items() if len(state.vehicles) < 2 else sorted(state.vehicles.items())
    for vid, vehicle in vehicles:
        if vehicle.home is None and (vehicle.location is None or vehicle.location.value is None):
            continue  # not at home before, and cannot be without a location
        links = links or pairing(state)
        derived = _derive_home(state, links, vid, vehicle)
        if (derived[0] if derived is not None else None) != vehicle.home:
            changed[vid] = _transition(state, links, user_id, vid, vehicle, derived, cause_at, deleted,
                                       unplugs, plugins)
    if not changed:
        return state, ()
    return replace(state, vehicles={**state.vehicles, **changed}), (*unplugs, *plugins)


def _transition(
    state: UserState, links: Pairing, user_id: str, vid: str, vehicle: Vehicle, derived: tuple[Home, int] | None,
    cause_at: int, deleted: DeviceDeleted | None, unplugs: list[EmittedEvent], plugins: list[EmittedEvent],
) -> Vehicle:
    """The vehicle after its at-home changed to `derived`: the unplug from the old home, the plug-in to the new."""
    if vehicle.home is not None:
        reason, at = _unplug_reason(state, links, vid, vehicle, vehicle.home, deleted)
        vehicle = _emit(unplugs, vehicle, user_id, vid, EventType.UNPLUGGED_FROM_HOME, vehicle.home,
                        cause_at if at is None else at, {"reason": reason.value})
    if derived is None:
        return replace(vehicle, home=None)
    vehicle = _emit(plugins, vehicle, user_id, vid, EventType.PLUGGED_IN_AT_HOME, *derived, {})
    return replace(vehicle, home=derived[0])


def _derive_home(state: UserState, links: Pairing, vid: str, vehicle: Vehicle) -> tuple[Home, int] | None:
    """At-home and when it became true: the newest of the facts it rests on (order-independent)."""
    charger_id, paired_at = links.vehicles.get(vid, (None, 0))  # paired_at: the newer of the two plug reports
    if charger_id is None or vehicle.location is None or vehicle.location.value is None:
        return None
    charger = state.chargers.get(charger_id)
    if charger is None or charger.location is None or charger.location.value != vehicle.location.value:
        return None
    return Home(charger_id, vehicle.location.value), max(paired_at, vehicle.location.at, charger.location.at)


def _unplug_reason(
    state: UserState, links: Pairing, vid: str, vehicle: Vehicle, home: Home, deleted: DeviceDeleted | None
) -> tuple[UnplugReason, int | None]:
    """Why `home` no longer holds, and the Enode time of the fact that ended it (None: the cause's time)."""
    if deleted is not None and deleted.device_id == (vid if deleted.device == "vehicle" else home.charger_id):
        reason = UnplugReason.VEHICLE_DELETED if deleted.device == "vehicle" else UnplugReason.CHARGER_DELETED
        return reason, deleted.at
    if links.charger_of(vid) != home.charger_id:  # the vehicle's or the charger's report decided otherwise
        decided = (links.vehicles.get(vid), links.chargers.get(home.charger_id))
        return UnplugReason.UNPLUGGED, max((link[1] for link in decided if link is not None), default=None)
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
    eid = event_id(kind, user_id, vid, home.charger_id, home.location_id, at, data.get("reason", ""))
    events.append(
        EmittedEvent(eid, kind, at, user_id, vid, home.charger_id, home.location_id, sequence, data)
    )
    return replace(vehicle, sequence=sequence)
