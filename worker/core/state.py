"""What plugwatch remembers per Enode user: the newest facts per device, and what it has emitted.

One `UserState` per user is the unit of atomic update (pairing only links devices of the same user).
It is small (a vehicle with its charger encodes to ~150 bytes, plus ~14 bytes per remembered action) and
is encoded with msgpack.
"""

from __future__ import annotations

import msgspec

from worker.core.memory import action_key
from worker.core.observations import Fact

STREAK_THRESHOLD = 10  # Enode clears a pairing's unlocked capabilities after ten failed commands


class Home(msgspec.Struct, frozen=True, array_like=True):
    """The vehicle is plugged into `charger_id`, and it and the charger are at `location_id`."""

    charger_id: str
    location_id: str


class Vehicle(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    plug: Fact | None = None  # pluggedInChargerId
    location: Fact | None = None  # location.id
    home: Home | None = None  # the at-home fact last emitted (None: last emitted was "not at home")
    sequence: int = 0  # the `sequence` of the last event emitted for this vehicle
    failures: int = 0  # consecutive failed START/STOP actions since the last confirmed one
    failure_times: tuple[int, ...] = ()  # the newest failures' times (at most STREAK_THRESHOLD)
    confirmed_at: int = 0  # updatedAt of the newest CONFIRMED action
    streak_reported: bool = False
    announce: bool = False  # its first decided at-home status is still to be announced (`CoreConfig`)


class Charger(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    plug: Fact | None = None  # pluggedInVehicleId
    location: Fact | None = None  # location.id


class UserState(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    vehicles: dict[str, Vehicle] = msgspec.field(default_factory=dict)
    chargers: dict[str, Charger] = msgspec.field(default_factory=dict)
    # The terminal actions handled: action key -> receipt second (`worker.core.memory`).
    actions: dict[int, int] = msgspec.field(default_factory=dict)
    # deleted device id -> Enode time of its deletion (facts up to it are dropped: worker.core.tombstones)
    tombstones: dict[str, int] = msgspec.field(default_factory=dict)

    def is_empty(self) -> bool:
        """Nothing worth keeping: no live vehicle or charger (the store then deletes the key)."""
        return not self.chargers and all(self.retired(vid) for vid in self.vehicles)

    def retired(self, vehicle_id: str) -> bool:
        """A deleted vehicle kept only for its `sequence`, which goes on if the id is linked again."""
        vehicle = self.vehicles.get(vehicle_id)
        return (vehicle is not None and vehicle_id in self.tombstones and vehicle.plug is None
                and vehicle.location is None)

    def facts(self) -> dict[str, object]:
        """The order-independent part of the state: newest facts per device and who is at home.

        Counters (`sequence`, failures) depend on which events were emitted, so they are left out, and so
        is a vehicle known only through its actions (it holds nothing but counters: whether a late action
        update creates it depends on whether newer actions arrived first).
        """
        return {
            "vehicles": {
                vid: (v.plug, v.location, v.home) for vid, v in sorted(self.vehicles.items())
                if v.plug is not None or v.location is not None
            },
            "chargers": {cid: (c.plug, c.location) for cid, c in sorted(self.chargers.items())},
            "tombstones": sorted(self.tombstones),
        }

    def unknown_chargers(self) -> frozenset[str]:
        """Chargers a vehicle says it is plugged into whose Location this user's state has never learnt.

        (A charger is also known, without a Location, from a vehicle's report naming it.) A charger named
        only before its deletion is left out.
        """
        out = set()
        for v in self.vehicles.values():
            if v.plug is None or v.plug.value is None or v.plug.at <= self.tombstones.get(v.plug.value, -1):
                continue
            charger = self.chargers.get(v.plug.value)
            if charger is None or charger.location is None:
                out.add(v.plug.value)
        return frozenset(out)


class _CountedActionsState(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    """The layout stored before the action memory went by time: the 12 newest actions as (updatedAt, id)."""

    vehicles: dict[str, Vehicle] = msgspec.field(default_factory=dict)
    chargers: dict[str, Charger] = msgspec.field(default_factory=dict)
    recent_actions: tuple[tuple[int, str], ...] = ()
    actions_floor: int = 0
    tombstones: dict[str, int] = msgspec.field(default_factory=dict)

    def upgraded(self) -> UserState:
        """Each remembered action stays remembered, its updatedAt standing in for the receipt time."""
        actions = {action_key(action_id): at // 1000 for at, action_id in self.recent_actions}
        return UserState(self.vehicles, self.chargers, actions, self.tombstones)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(UserState)
_counted_decoder = msgspec.msgpack.Decoder(_CountedActionsState)


def encode_state(state: UserState) -> bytes:
    return _encoder.encode(state)


def decode_state(raw: bytes | None) -> UserState:
    if raw is None:
        return UserState()
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError:  # stored by a plugwatch before the action memory went by time
        return _counted_decoder.decode(raw).upgraded()
