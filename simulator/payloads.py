"""Enode API 2024-10-01 webhook events, rendered from simulated devices (see enode-api-reference.md).

Every function returns a plain dict ready for JSON: the full object, as Enode sends it, not the subset
plugwatch reads. A `:discovered` event carries `information` only; every other property is null.
"""

from __future__ import annotations

from typing import Any

from simulator.clock import iso
from simulator.devices import Charger, Vehicle

API_VERSION = "2024-10-01"
VEHICLE_SCOPES = ["vehicle:read:data", "vehicle:read:location", "vehicle:control:charging"]
CHARGER_SCOPES = ["charger:read:data", "charger:control:charging"]
Event = dict[str, Any]


def _ts(ms: int | None) -> str | None:
    return None if ms is None else iso(ms)


def _capabilities(names: list[str], capable: bool = True) -> dict[str, Any]:
    return {name: {"isCapable": capable, "interventionIds": []} for name in names}


def _power_state(plugged: bool, charging: bool) -> str:
    if not plugged:
        return "UNPLUGGED"
    return "PLUGGED_IN:CHARGING" if charging else "PLUGGED_IN:STOPPED"


def _vehicle_charge_state(v: Vehicle) -> dict[str, Any]:
    if not v.discovered:
        unknown: dict[str, Any] = {key: None for key in (
            "batteryLevel", "range", "isPluggedIn", "isCharging", "isFullyCharged", "batteryCapacity",
            "chargeLimit", "chargeRate", "chargeTimeRemaining", "lastUpdated", "maxCurrent",
            "pluggedInChargerId")}
        return {**unknown, "powerDeliveryState": "UNKNOWN"}  # the enum has no null
    return {
        "batteryLevel": v.battery, "range": v.battery * 4, "isPluggedIn": v.plugged,
        "isCharging": v.charging, "isFullyCharged": v.battery >= 80, "batteryCapacity": 77,
        "chargeLimit": 80, "chargeRate": 11.0 if v.charging else None,
        "chargeTimeRemaining": 95 if v.charging else None, "lastUpdated": _ts(v.charge_ms),
        "maxCurrent": 16, "powerDeliveryState": _power_state(v.plugged, v.charging),
        "pluggedInChargerId": v.charger_id,
    }


def vehicle_object(v: Vehicle) -> dict[str, Any]:
    known = v.discovered
    return {
        "id": v.id, "userId": v.user_id, "vendor": v.vendor, "lastSeen": iso(v.last_seen_ms),
        "isReachable": True if known else None,
        "information": {"vin": v.vin, "brand": v.brand, "model": v.model, "year": 2023,
                        "displayName": f"{v.brand} {v.model}"},
        "chargeState": _vehicle_charge_state(v),
        "smartChargingPolicy": {"isEnabled": False, "deadline": None, "minimumChargeLimit": 0},
        "odometer": {"distance": 12_345 if known else None, "lastUpdated": _ts(v.charge_ms)},
        "capabilities": _capabilities(
            ["information", "chargeState", "location", "odometer", "setMaxCurrent", "startCharging",
             "stopCharging", "smartCharging"], capable=known),
        "scopes": VEHICLE_SCOPES,
        "location": {"id": v.location_id, "latitude": v.latitude, "longitude": v.longitude,
                     "lastUpdated": _ts(v.location_ms)},
    }


def charger_object(c: Charger) -> dict[str, Any]:
    known = c.discovered
    charge_state: dict[str, Any] = {
        "isPluggedIn": c.plugged if known else None, "isCharging": c.charging if known else None,
        "chargeRate": 11.0 if c.charging else None, "lastUpdated": _ts(c.charge_ms),
        "maxCurrent": 16 if known else None,
        "powerDeliveryState": _power_state(c.plugged, c.charging) if known else "UNKNOWN",
        "pluggedInVehicleId": c.vehicle_id,
    }
    return {
        "id": c.id, "userId": c.user_id, "vendor": c.vendor, "lastSeen": iso(c.last_seen_ms),
        "isReachable": True, "chargeState": charge_state,
        "capabilities": _capabilities(
            ["information", "chargeState", "startCharging", "stopCharging", "setMaxCurrent"], capable=known),
        "scopes": CHARGER_SCOPES,
        "information": {"brand": c.brand, "model": c.model, "year": None, "serialNumber": c.serial},
        "location": {"id": c.location_id, "lastUpdated": _ts(c.location_ms)},
    }


def device_event(kind: str, verb: str, device: Vehicle | Charger, created_ms: int,
                 updated_fields: list[str] | None = None) -> Event:
    """`user:{vehicle|charger}:{discovered|updated|deleted}` for the device as it is now."""
    body = vehicle_object(device) if isinstance(device, Vehicle) else charger_object(device)
    event: Event = {"event": f"user:{kind}:{verb}", "createdAt": iso(created_ms), "version": API_VERSION,
                    "user": {"id": device.user_id}, kind: body}
    if verb == "updated":
        event["updatedFields"] = updated_fields or []
    return event


def charge_action_event(
    *, action_id: str, user_id: str, target_type: str, target_id: str, kind: str, state: str,
    created_ms: int, updated_ms: int, failure: tuple[str, str] | None, event_ms: int,
) -> Event:
    """`user:vendor-action:updated` carrying a ChargeAction (START/STOP on a vehicle or charger)."""
    done = state != "PENDING"
    action = {
        "id": action_id, "userId": user_id, "createdAt": iso(created_ms), "updatedAt": iso(updated_ms),
        "completedAt": iso(updated_ms) if done else None, "state": state, "targetId": target_id,
        "targetType": target_type, "kind": kind,
        "failureReason": {"type": failure[0], "detail": failure[1]} if failure else None,
    }
    fields = ["state", "completedAt", "failureReason"] if done else ["state"]
    return {"event": "user:vendor-action:updated", "createdAt": iso(event_ms), "version": API_VERSION,
            "user": {"id": user_id}, "vendorAction": action, "updatedFields": fields}


def heartbeat_event(created_ms: int, pending: int = 0) -> Event:
    return {"event": "system:heartbeat", "createdAt": iso(created_ms), "version": API_VERSION,
            "pendingEvents": pending}


def test_event(created_ms: int) -> Event:
    return {"event": "enode:webhook:test", "createdAt": iso(created_ms), "version": API_VERSION}
