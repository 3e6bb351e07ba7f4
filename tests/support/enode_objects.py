"""Enode API objects shaped as the 2024-10-01 spec shapes them (vehicles, chargers), for fakes and tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

API_VERSION = "2024-10-01"


def iso(moment: datetime | None = None) -> str:
    """An Enode-style timestamp: ISO-8601 UTC with milliseconds and a Z."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _capabilities(names: tuple[str, ...]) -> dict[str, Any]:
    return {name: {"isCapable": True, "interventionIds": []} for name in names}


def vehicle(vehicle_id: str, user_id: str, *, plugged_in_charger_id: str | None = None,
            location_id: str | None = None, updated: str | None = None) -> dict[str, Any]:
    """A Vehicle as GET /vehicles returns it; plugged in when `plugged_in_charger_id` is set."""
    updated = updated or iso()
    plugged = plugged_in_charger_id is not None
    return {
        "id": vehicle_id, "userId": user_id, "vendor": "VOLKSWAGEN", "lastSeen": updated, "isReachable": True,
        "information": {"vin": None, "brand": "Volkswagen", "model": "ID.4", "year": 2023,
                        "displayName": None},
        "chargeState": {
            "batteryLevel": 50, "range": 200, "isPluggedIn": plugged, "isCharging": False,
            "isFullyCharged": False, "batteryCapacity": 77, "chargeLimit": 80, "chargeRate": None,
            "chargeTimeRemaining": None, "lastUpdated": updated, "maxCurrent": 16,
            "powerDeliveryState": "PLUGGED_IN:STOPPED" if plugged else "UNPLUGGED",
            "pluggedInChargerId": plugged_in_charger_id,
        },
        "smartChargingPolicy": {"isEnabled": False, "deadline": None, "minimumChargeLimit": 0},
        "location": {"id": location_id, "latitude": 59.9139, "longitude": 10.7522, "lastUpdated": updated},
        "odometer": {"distance": 1000, "lastUpdated": updated},
        "capabilities": _capabilities(("information", "chargeState", "location", "odometer", "setMaxCurrent",
                                       "startCharging", "stopCharging", "smartCharging")),
        "scopes": ["vehicle:read:data", "vehicle:read:location", "vehicle:control:charging"],
    }


def charger(charger_id: str, user_id: str, *, location_id: str | None = None,
            plugged_in_vehicle_id: str | None = None, updated: str | None = None) -> dict[str, Any]:
    """A Charger as GET /chargers returns it; plugged in when `plugged_in_vehicle_id` is set."""
    updated = updated or iso()
    plugged = plugged_in_vehicle_id is not None
    return {
        "id": charger_id, "userId": user_id, "vendor": "EASEE", "lastSeen": updated, "isReachable": True,
        "chargeState": {
            "isPluggedIn": plugged, "isCharging": False, "chargeRate": None, "lastUpdated": updated,
            "maxCurrent": 16, "powerDeliveryState": "PLUGGED_IN:STOPPED" if plugged else "UNPLUGGED",
            "pluggedInVehicleId": plugged_in_vehicle_id,
        },
        "capabilities": _capabilities(("information", "chargeState", "startCharging", "stopCharging",
                                       "setMaxCurrent")),
        "scopes": ["charger:read:data", "charger:control:charging"],
        "information": {"brand": "Easee", "model": "Charge", "year": None,
                        "serialNumber": "EH" + charger_id[:6]},
        "location": {"id": location_id, "lastUpdated": updated if location_id else None},
    }
