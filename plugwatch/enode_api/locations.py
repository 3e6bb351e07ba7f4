"""Pairing guide step 2: give the user's charger a home Location, idempotently.

`ensure_home_location` reuses a Location of the user with the same name within `MATCH_RADIUS_METERS` of the
requested coordinates (else creates one with POST /users/{userId}/locations), then assigns it to the charger
with PUT /chargers/{chargerId} `{"locationId": ...}` unless the charger already has it.  Running it twice
creates one Location and makes one assignment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import structlog

from plugwatch.enode_api.assets import get_charger
from plugwatch.enode_api.client import EnodeClient, segment
from plugwatch.enode_api.errors import EnodeProtocolError, EnodeRequestError

log = structlog.get_logger(__name__)

MATCH_RADIUS_METERS = 25.0
_EARTH_RADIUS_METERS = 6_371_000.0


@dataclass(frozen=True)
class HomeLocation:
    name: str
    latitude: float
    longitude: float
    timezone_name: str = "UTC"


@dataclass(frozen=True)
class LocationSetup:
    """What `ensure_home_location` found or did."""

    location_id: str
    location_created: bool
    charger_assigned: bool  # False when the charger already had this location
    previous_location_id: str | None  # the charger's location before (None if it had none)


def distance_meters(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_METERS * math.asin(min(1.0, math.sqrt(a)))


def matches(location: dict[str, Any], home: HomeLocation) -> bool:
    try:
        lat, lon = float(location["latitude"]), float(location["longitude"])
    except (KeyError, TypeError, ValueError):
        return False
    return (location.get("name") == home.name
            and distance_meters(lat, lon, home.latitude, home.longitude) <= MATCH_RADIUS_METERS)


def find_location(client: EnodeClient, user_id: str, home: HomeLocation) -> dict[str, Any] | None:
    return next((loc for loc in client.paginate(f"/users/{segment(user_id)}/locations")
                 if matches(loc, home)), None)


def create_location(client: EnodeClient, user_id: str, home: HomeLocation) -> dict[str, Any]:
    body = {"name": home.name, "latitude": home.latitude, "longitude": home.longitude,
            "timezoneName": home.timezone_name}
    created = client.request("POST", f"/users/{segment(user_id)}/locations", json=body)
    if not isinstance(created, dict) or not isinstance(created.get("id"), str):
        raise EnodeProtocolError("POST", f"/users/{user_id}/locations", 200, reason="no location id returned")
    return created


def assign_location(client: EnodeClient, charger_id: str, location_id: str | None) -> dict[str, Any]:
    return dict(client.request("PUT", "/chargers/" + segment(charger_id), json={"locationId": location_id}))


def ensure_home_location(client: EnodeClient, user_id: str, charger_id: str,
                         home: HomeLocation) -> LocationSetup:
    """Find or create the user's home Location and assign it to the charger (each only when needed)."""
    log_ = log.bind(user_id=user_id, charger_id=charger_id)
    charger = get_charger(client, charger_id)
    if charger.get("userId") != user_id:
        owner = charger.get("userId")
        raise EnodeRequestError("GET", "/chargers/" + charger_id, None,
                                reason=f"the charger belongs to user {owner!r}, not {user_id!r}")
    location = find_location(client, user_id, home)
    created = location is None
    if location is None:
        location = create_location(client, user_id, home)
        log_.info("enode.location_created", location_id=location["id"])
    current = (charger.get("location") or {}).get("id")
    if current == location["id"]:
        return LocationSetup(location["id"], created, charger_assigned=False, previous_location_id=current)
    assign_location(client, charger_id, location["id"])
    log_.info("enode.charger_location_assigned", location_id=location["id"], previous_location_id=current)
    return LocationSetup(location["id"], created, charger_assigned=True, previous_location_id=current)
