"""Who is plugged into whom: one matching per user, from both sides' newest plug reports. Pure.

Enode reports each pairing twice: the vehicle's `chargeState.pluggedInChargerId` and the charger's
`chargeState.pluggedInVehicleId`, "the mirror image" (each device keeps its newest report as `plug`). The
newest report from either side decides. Reports are taken newest first (by Enode time; at the same
millisecond a vehicle's before a charger's, then by id):

- a report about a device already decided by a newer report is skipped;
- "X is plugged into nothing" decides X: unpaired;
- "X is plugged into Y" when Y was decided by a newer report (paired with another device, or unpaired)
  decides X: unpaired, for the newer report says Y is not plugged into X;
- else X and Y are paired.

So a charger holds at most one vehicle and a vehicle is plugged into at most one charger, and the result
depends only on the set of reports, never on the order they arrived in. A `Link` also holds the Enode time
of the report that decided the device: when a previous pairing of it ended, or when this one is known from.
"""

from __future__ import annotations

import msgspec

from worker.core.state import UserState

Link = tuple[str | None, int]  # (partner: None when plugged into nothing, Enode time of the deciding report)


class Pairing(msgspec.Struct, frozen=True):
    vehicles: dict[str, Link]  # a vehicle id (also one only a charger names) -> its link
    chargers: dict[str, Link]  # a charger id (also one only a vehicle names) -> its link

    def charger_of(self, vehicle_id: str) -> str | None:
        link = self.vehicles.get(vehicle_id)
        return None if link is None else link[0]

    def vehicle_of(self, charger_id: str) -> str | None:
        link = self.chargers.get(charger_id)
        return None if link is None else link[0]


def pairing(state: UserState) -> Pairing:
    # (-at, side, id, named) ascending = newest first; at the same millisecond vehicles (side 0) first, by id
    reports: list[tuple[int, int, str, str | None]] = []
    for vid, vehicle in state.vehicles.items():
        if (plug := vehicle.plug) is not None:
            reports.append((-plug.at, 0, vid, plug.value))
    for cid, charger in state.chargers.items():
        if (plug := charger.plug) is not None:
            reports.append((-plug.at, 1, cid, plug.value))
    reports.sort()
    sides: tuple[dict[str, Link], dict[str, Link]] = ({}, {})
    for minus_at, side, device, named in reports:
        mine, theirs = sides[side], sides[1 - side]
        if device in mine:
            continue  # decided by a newer report naming it
        if named is None:
            mine[device] = (None, -minus_at)
        elif named in theirs:
            mine[device] = (None, theirs[named][1])  # what it names was decided otherwise, by a newer report
        else:
            mine[device], theirs[named] = (named, -minus_at), (device, -minus_at)
    return Pairing(*sides)
