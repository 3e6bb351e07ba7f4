"""Who is plugged into whom, from both sides' plug reports. Pure.

Enode reports each pairing twice: the vehicle's `chargeState.pluggedInChargerId` and the charger's
`chargeState.pluggedInVehicleId`, "the mirror image", each at its own `chargeState.lastUpdated`. A report
"X is plugged into Y at t" is a fact about both devices, so it is kept on both: each device's `plug` is the
newest report about it from either side (X's own, or one naming X), ordered like every fact by
`(at, value)`. "X is plugged into nothing at t" is a fact about X only.

A vehicle and a charger are paired when each one's newest report names the other. So a charger holds at
most one vehicle and a vehicle is plugged into at most one charger; a newer report from either side that
names someone else, or nothing, ends the pairing, and an older report can never bring it back (the newer
one stays on the device it is about). The result depends only on the set of reports, in any arrival order.
"""

from __future__ import annotations

from worker.core.observations import Fact
from worker.core.state import UserState


def mirror(plug: Fact | None, reporter: str) -> tuple[str, Fact] | None:
    """The device a plug report names and the same report as a fact about it, if it names one."""
    if plug is None or plug.value is None:
        return None
    return plug.value, Fact(plug.at, reporter)


def charger_of(state: UserState, vehicle_id: str) -> str | None:
    """The charger the vehicle is plugged into: the one its newest report names, if that one names it back."""
    vehicle = state.vehicles.get(vehicle_id)
    if vehicle is None or vehicle.plug is None or vehicle.plug.value is None:
        return None
    charger = state.chargers.get(vehicle.plug.value)
    if charger is None or charger.plug is None or charger.plug.value != vehicle_id:
        return None
    return vehicle.plug.value


def vehicle_of(state: UserState, charger_id: str) -> str | None:
    """The vehicle plugged into the charger (see `charger_of`)."""
    charger = state.chargers.get(charger_id)
    if charger is None or charger.plug is None or charger.plug.value is None:
        return None
    return charger.plug.value if charger_of(state, charger.plug.value) == charger_id else None
