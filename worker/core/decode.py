"""Tolerant decoding of one Enode webhook event (a dict parsed from JSON) into an observation.

Tolerant means: unknown fields are ignored, unknown enum values are mapped, events for devices plugwatch does
not track are `Ignored`. Only an event that names a tracked device but lacks what the rules need (ids,
timestamps) or carries the wrong type in such a field raises `DecodeError`, which the shell quarantines.
A timestamp that is present but not a time Python can represent (years 1-9999 UTC) is such a wrong type.

Timestamps within reason: Enode's timestamps (`createdAt`, `chargeState.lastUpdated`, `location.lastUpdated`,
an action's `updatedAt`) order the facts, so one far in the future would win over every real update after
it. A timestamp more than `max_clock_skew_seconds` ahead of the delivery's receipt time is clamped to the
receipt time (not to receipt + bound, so that real updates made right after it still win) and the
observation is marked `skewed` for the shell's metric. Clamping, not quarantining: the fact itself (plugged
in, at a Location) is real; only its clock is wrong, and receipt time is the best order left for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.core.config import DEFAULT_CONFIG, CoreConfig
from worker.core.observations import (
    ActionState,
    ActionUpdated,
    ChargerObserved,
    DeviceDeleted,
    Fact,
    Ignored,
    Observation,
    VehicleObserved,
)
from worker.core.timestamps import parse_ms

# Tuples, not sets: membership by equality never hashes, so an object or array there is simply "not in".
_CHARGE_KINDS = ("START", "STOP")
_CHARGE_TARGETS = ("vehicle", "charger")


class DecodeError(ValueError):
    """An event plugwatch should understand but cannot; `reason` says why (kept with the quarantine entry)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Receipt:
    """The delivery's receipt time, and the clamping of Enode timestamps too far ahead of it."""

    def __init__(self, received_at: int, config: CoreConfig) -> None:
        self.received_at = received_at
        self.latest = received_at + 1000 * config.max_clock_skew_seconds
        self.skewed = False

    def time(self, container: Mapping[str, Any], key: str, where: str) -> int | None:
        """`container[key]` as ms, clamped; None when absent or null; DecodeError when not a usable time."""
        value = container.get(key)
        if value is None:
            return None
        at = parse_ms(value)
        if at is None:
            raise DecodeError(f"{where}{key} is not an ISO-8601 time between the years 1 and 9999")
        if at > self.latest:
            self.skewed = True
            return self.received_at
        return at


def decode_event(raw: object, received_at_ms: int, config: CoreConfig = DEFAULT_CONFIG) -> Observation | Ignored:
    """Decode one element of a delivery's JSON array, received at `received_at_ms` (ms since the epoch)."""
    if not isinstance(raw, dict):
        raise DecodeError("event is not a JSON object")
    name = raw.get("event")
    if not isinstance(name, str):
        raise DecodeError("event has no string 'event' name")
    if name in ("system:heartbeat", "enode:webhook:test"):
        return Ignored("system", name)
    parts = name.split(":")
    if len(parts) != 3 or parts[0] != "user":
        return Ignored("other", f"unknown event {name}")
    _, subject, verb = parts
    if subject in ("vehicle", "charger") and verb in ("discovered", "updated", "deleted"):
        return _decode_device(raw, subject, verb, _Receipt(received_at_ms, config))
    if subject in ("vendor-action", "charge-action") and verb == "updated":
        return _decode_action(raw, _Receipt(received_at_ms, config))
    return Ignored("other", f"untracked event {name}")


def _created_at(raw: Mapping[str, Any], receipt: _Receipt) -> int:
    at = receipt.time(raw, "createdAt", "")
    if at is None:
        raise DecodeError("createdAt is missing")
    return at


def _str_id(container: Mapping[str, Any], key: str, where: str) -> str:
    value = container.get(key)
    if not isinstance(value, str) or not value:
        raise DecodeError(f"{where}.{key} is missing or not a string")
    return value


def _user_id(raw: Mapping[str, Any], device: Mapping[str, Any]) -> str:
    user = raw.get("user")
    if isinstance(user, dict) and isinstance(user.get("id"), str) and user["id"]:
        return str(user["id"])
    return _str_id(device, "userId", "device")


def _optional_id(container: Mapping[str, Any], key: str, where: str) -> str | None:
    value = container.get(key)
    if value is None or isinstance(value, str):
        return value or None
    raise DecodeError(f"{where}.{key} is not a string or null")


def _fact(obj: object, id_key: str, where: str, fallback_at: int, receipt: _Receipt) -> Fact | None:
    """`{id_key: ..., "lastUpdated": ...}` -> Fact; a missing/null object -> None (nothing learnt)."""
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise DecodeError(f"{where} is not an object")
    at = receipt.time(obj, "lastUpdated", f"{where}.")
    return Fact(at if at is not None else fallback_at, _optional_id(obj, id_key, where))


def _decode_device(raw: Mapping[str, Any], subject: str, verb: str, receipt: _Receipt) -> Observation:
    device = raw.get(subject)
    if not isinstance(device, dict):
        raise DecodeError(f"{subject} is missing or not an object")
    created = _created_at(raw, receipt)
    device_id = _str_id(device, "id", subject)
    user_id = _user_id(raw, device)
    received = receipt.received_at
    if verb == "deleted":
        return DeviceDeleted(user_id, "vehicle" if subject == "vehicle" else "charger", device_id, created,
                             received, receipt.skewed)
    plug_key = "pluggedInChargerId" if subject == "vehicle" else "pluggedInVehicleId"
    plug = _fact(device.get("chargeState"), plug_key, f"{subject}.chargeState", created, receipt)
    location = _fact(device.get("location"), "id", f"{subject}.location", created, receipt)
    if subject == "vehicle":
        return VehicleObserved(user_id, device_id, created, plug, location, received, receipt.skewed)
    return ChargerObserved(user_id, device_id, created, plug, location, received, receipt.skewed)


def _decode_action(raw: Mapping[str, Any], receipt: _Receipt) -> Observation | Ignored:
    action = raw.get("vendorAction") or raw.get("chargeAction")
    if not isinstance(action, dict):
        raise DecodeError("vendorAction is missing or not an object")
    kind, target_type = action.get("kind"), action.get("targetType")
    if kind not in _CHARGE_KINDS or target_type not in _CHARGE_TARGETS:
        return Ignored("other", "not a START/STOP action on a vehicle or charger")
    created = _created_at(raw, receipt)
    reason = action.get("failureReason")
    if reason is not None and not isinstance(reason, dict):
        raise DecodeError("vendorAction.failureReason is not an object")
    failure_type = _optional_id(reason, "type", "failureReason") if reason else None
    failure_detail = _optional_id(reason, "detail", "failureReason") if reason else None
    updated = receipt.time(action, "updatedAt", "vendorAction.")
    return ActionUpdated(
        user_id=_user_id(raw, action),
        action_id=_str_id(action, "id", "vendorAction"),
        target_type=target_type,
        target_id=_str_id(action, "targetId", "vendorAction"),
        action_kind=kind,
        state=ActionState.parse(action.get("state")),
        failure_type=failure_type,
        failure_detail=failure_detail,
        at=updated if updated is not None else created,
        received_at=receipt.received_at,
        skewed=receipt.skewed,
    )
