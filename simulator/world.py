"""One Enode user's devices and Locations, and the webhook events each change produces, in order.

The world changes devices the way Enode reports them: a vehicle without GPS gets `location.id` only while
plugged into a charger that has a Location (Enode infers it) and loses it on unplugging; a plug-in updates
the vehicle then the charger; a deleted device is gone and a re-discovered one has a new id.  Every
observation takes a fresh `Clock.tick()`, so all timestamps of one user are strictly increasing.
"""

from __future__ import annotations

import random
import uuid

from simulator import payloads
from simulator.clock import Clock
from simulator.devices import Charger, Place, Vehicle
from simulator.payloads import Event

_VEHICLES = (("VOLKSWAGEN", "Volkswagen", "ID.4"), ("TESLA", "Tesla", "Model Y"), ("BMW", "BMW", "i4"),
             ("KIA", "Kia", "EV6"), ("POLESTAR", "Polestar", "2"))
_CHARGERS = (("EASEE", "Easee", "Charge"), ("ZAPTEC", "Zaptec", "Go"), ("WALLBOX", "Wallbox", "Pulsar"))
_PLUG_FIELDS = ["chargeState.isPluggedIn", "chargeState.powerDeliveryState", "chargeState.pluggedInChargerId"]
_LOCATION_FIELDS = ["location.id", "location.latitude", "location.longitude"]


class UserWorld:
    """The devices of one Enode user; each method appends the webhook events Enode would send."""

    def __init__(self, rng: random.Random, user_id: str, start_ms: int) -> None:
        self.rng = rng
        self.user_id = user_id
        self.clock = Clock(rng, start_ms)
        self.events: list[Event] = []
        self.vehicles: dict[str, Vehicle] = {}
        self.chargers: dict[str, Charger] = {}
        self.locations: list[Place] = []  # the user's Enode Locations, in the order they were made

    # --- helpers -------------------------------------------------------------------------------------
    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def new_place(self, with_location: bool = True) -> Place:
        lat, lon = self.rng.uniform(55.0, 63.0), self.rng.uniform(5.0, 15.0)
        place = Place(self.new_id() if with_location else None, round(lat, 5), round(lon, 5))
        if with_location:
            self.locations.append(place)
        return place

    def _created(self, observed_ms: int) -> int:
        """An event's createdAt: a little after the observation, before the next tick (≥ 1 s later)."""
        return observed_ms + self.rng.randint(50, 900)

    def _emit(self, kind: str, verb: str, device: Vehicle | Charger, at: int, fields: list[str]) -> None:
        device.last_seen_ms = at
        self.events.append(payloads.device_event(kind, verb, device, self._created(at), fields))

    def _vehicle_update(self, v: Vehicle, at: int, fields: list[str]) -> None:
        self._emit("vehicle", "updated", v, at, fields)

    def _charger_update(self, c: Charger, at: int, fields: list[str]) -> None:
        self._emit("charger", "updated", c, at, fields)

    # --- discovery and deletion ----------------------------------------------------------------------
    def add_vehicle(self, has_gps: bool, at: Place | None = None) -> Vehicle:
        vendor, brand, model = self.rng.choice(_VEHICLES)
        v = Vehicle(self.new_id(), self.user_id, vendor, brand, model,
                    f"SIM{self.rng.getrandbits(48):014X}", has_gps)
        self.vehicles[v.id] = v
        self._emit("vehicle", "discovered", v, self.clock.tick(), [])
        t = self.clock.tick()
        v.discovered, v.charge_ms, v.battery = True, t, self.rng.randint(20, 90)
        if has_gps:
            place = at or self.new_place(with_location=False)
            v.location_id, v.latitude, v.longitude, v.location_ms = place.id, place.latitude, place.longitude, t
        self._vehicle_update(v, t, ["chargeState.batteryLevel", "location.lastUpdated"])
        return v

    def add_charger(self, place: Place | None) -> Charger:
        vendor, brand, model = self.rng.choice(_CHARGERS)
        c = Charger(self.new_id(), self.user_id, vendor, brand, model, f"SN{self.rng.getrandbits(32):010d}")
        self.chargers[c.id] = c
        self._emit("charger", "discovered", c, self.clock.tick(), [])
        t = self.clock.tick()
        c.discovered, c.charge_ms = True, t
        fields = ["chargeState.isPluggedIn"]
        if place is not None:
            c.location_id, c.location_ms = place.id, t
            fields.append("location.id")
        self._charger_update(c, t, fields)
        return c

    def delete_vehicle(self, v: Vehicle) -> None:
        charger = self.chargers.get(v.charger_id or "")
        del self.vehicles[v.id]
        t = self.clock.tick()
        self.events.append(payloads.device_event("vehicle", "deleted", v, self._created(t)))
        if charger is not None and charger.vehicle_id == v.id:
            charger.vehicle_id, charger.charge_ms = None, self.clock.tick()
            self._charger_update(charger, charger.charge_ms, ["chargeState.pluggedInVehicleId"])

    def delete_charger(self, c: Charger) -> None:
        del self.chargers[c.id]
        t = self.clock.tick()
        self.events.append(payloads.device_event("charger", "deleted", c, self._created(t)))
        for v in list(self.vehicles.values()):
            if v.charger_id == c.id:  # Enode can no longer say what the vehicle is plugged into
                t = self.clock.tick()
                v.charger_id, v.charge_ms = None, t
                fields = ["chargeState.pluggedInChargerId"]
                if not v.has_gps and v.location_id is not None:
                    v.location_id, v.location_ms = None, t
                    fields.append("location.id")
                self._vehicle_update(v, t, fields)

    # --- movement and plugging -----------------------------------------------------------------------
    def drive_to(self, v: Vehicle, place: Place) -> None:
        """A GPS vehicle's position (and so its Enode `location.id`) changes; also models GPS drift."""
        assert v.has_gps, "only vehicles with GPS report a position"
        t = self.clock.tick()
        v.location_id, v.latitude, v.longitude, v.location_ms = place.id, place.latitude, place.longitude, t
        self._vehicle_update(v, t, list(_LOCATION_FIELDS))

    def plug(self, v: Vehicle, c: Charger | None) -> None:
        """Plug `v` into the user's charger `c`, or (c=None) into a public charger Enode cannot link."""
        t = self.clock.tick()
        v.plugged, v.charger_id, v.charge_ms = True, c.id if c else None, t
        fields = list(_PLUG_FIELDS)
        if c is not None and not v.has_gps and c.location_id is not None:
            v.location_id, v.location_ms = c.location_id, t  # inferred from the charger's Location
            fields.append("location.id")
        self._vehicle_update(v, t, fields)
        if c is not None:
            c.plugged, c.vehicle_id, c.charge_ms = True, v.id, self.clock.tick()
            self._charger_update(c, c.charge_ms, ["chargeState.isPluggedIn", "chargeState.pluggedInVehicleId"])

    def unplug(self, v: Vehicle) -> None:
        c = self.chargers.get(v.charger_id or "")
        t = self.clock.tick()
        v.plugged, v.charging, v.charger_id, v.charge_ms = False, False, None, t
        fields = list(_PLUG_FIELDS)
        if not v.has_gps and v.location_id is not None:
            v.location_id, v.location_ms = None, t
            fields.append("location.id")
        self._vehicle_update(v, t, fields)
        if c is not None and c.vehicle_id == v.id:
            c.plugged, c.charging, c.vehicle_id, c.charge_ms = False, False, None, self.clock.tick()
            self._charger_update(c, c.charge_ms, ["chargeState.isPluggedIn", "chargeState.pluggedInVehicleId"])

    def switch(self, v: Vehicle, new: Charger) -> None:
        """`v` moves straight from its charger to `new` (Enode reports one vehicle update)."""
        old = self.chargers.get(v.charger_id or "")
        t = self.clock.tick()
        v.charger_id, v.charge_ms, v.charging = new.id, t, False
        fields = ["chargeState.pluggedInChargerId"]
        if not v.has_gps and new.location_id != v.location_id:
            v.location_id, v.location_ms = new.location_id, t
            fields.append("location.id")
        self._vehicle_update(v, t, fields)
        if old is not None:
            old.plugged, old.charging, old.vehicle_id, old.charge_ms = False, False, None, self.clock.tick()
            self._charger_update(old, old.charge_ms, ["chargeState.pluggedInVehicleId"])
        new.plugged, new.vehicle_id, new.charge_ms = True, v.id, self.clock.tick()
        self._charger_update(new, new.charge_ms, ["chargeState.pluggedInVehicleId"])

    def take_over(self, c: Charger, newcomer: Vehicle) -> None:
        """`newcomer` takes the place of the vehicle on `c`, and the charger's report comes first.

        Enode sends the charger's `pluggedInVehicleId` (now the newcomer), then the previous vehicle's
        unplug, then the newcomer's own plug report: until the cars report, only the charger tells.
        """
        previous = self.plugged_vehicle(c)
        c.plugged, c.charging, c.vehicle_id, c.charge_ms = True, False, newcomer.id, self.clock.tick()
        self._charger_update(c, c.charge_ms, ["chargeState.pluggedInVehicleId"])
        if previous is not None:
            self.unplug(previous)  # its charger already names the newcomer: no charger update
        t = self.clock.tick()
        newcomer.plugged, newcomer.charger_id, newcomer.charge_ms = True, c.id, t
        fields = list(_PLUG_FIELDS)
        if not newcomer.has_gps and c.location_id is not None:
            newcomer.location_id, newcomer.location_ms = c.location_id, t
            fields.append("location.id")
        self._vehicle_update(newcomer, t, fields)

    def move_charger(self, c: Charger, place: Place | None) -> None:
        """The user assigns `c` to another Location (or none); a GPS-less vehicle on it follows."""
        t = self.clock.tick()
        c.location_id, c.location_ms = place.id if place else None, t
        self._charger_update(c, t, ["location.id"])
        for v in self.vehicles.values():
            if v.charger_id == c.id and not v.has_gps and v.location_id != c.location_id:
                v.location_id, v.location_ms = c.location_id, self.clock.tick()
                self._vehicle_update(v, v.location_ms, ["location.id"])

    def set_charging(self, v: Vehicle, charging: bool) -> None:
        """Charging starts or stops: `chargeState.lastUpdated` moves, the plug does not."""
        t = self.clock.tick()
        v.charging, v.charge_ms, v.battery = charging, t, min(100, v.battery + 1)
        self._vehicle_update(v, t, ["chargeState.isCharging", "chargeState.powerDeliveryState"])

    def plugged_vehicle(self, c: Charger) -> Vehicle | None:
        return next((v for v in self.vehicles.values() if v.charger_id == c.id), None)
