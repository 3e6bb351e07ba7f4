"""What Enode knows about one simulated vehicle or charger (mutable: the world changes them in place).

Each field that plugwatch orders by has its own timestamp, exactly as Enode reports it: `charge_ms` is
`chargeState.lastUpdated`, `location_ms` is `location.lastUpdated`. `None` timestamps render as null (a
just-discovered device).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Place:
    """An Enode Location (or, with `id=None`, somewhere that is not one of the user's Locations)."""

    id: str | None
    latitude: float
    longitude: float


@dataclass
class Vehicle:
    id: str
    user_id: str
    vendor: str
    brand: str
    model: str
    vin: str
    has_gps: bool
    battery: int = 50
    plugged: bool = False  # chargeState.isPluggedIn (also true at a public charger)
    charging: bool = False
    charger_id: str | None = None  # chargeState.pluggedInChargerId
    charge_ms: int | None = None
    location_id: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    location_ms: int | None = None
    last_seen_ms: int = 0
    discovered: bool = False  # False until the first :updated (a :discovered carries nulls only)


@dataclass
class Charger:
    id: str
    user_id: str
    vendor: str
    brand: str
    model: str
    serial: str
    plugged: bool = False
    charging: bool = False
    vehicle_id: str | None = None  # chargeState.pluggedInVehicleId
    charge_ms: int | None = None
    location_id: str | None = None
    location_ms: int | None = None
    last_seen_ms: int = 0
    discovered: bool = False
