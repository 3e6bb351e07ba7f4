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

from msgspec.structs import replace

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
    latest = received_at_ms + 1000 * config.max_clock_skew_seconds  # later Enode times are clamped
    if subject in ("vehicle", "charger") and verb in ("discovered", "updated", "deleted"):
        return _decode_device(raw, subject, verb, received_at_ms, latest)
    if subject in ("vendor-action", "charge-action") and verb == "updated":
        return _decode_action(raw, received_at_ms, latest)
    return Ignored("other", f"untracked event {name}")


def _time(container: Mapping[str, Any], key: str, where: str) -> int | None:
    """`container[key]` as ms; None when absent or null; DecodeError when not a time Python can represent."""
    value = container.get(key)
    if value is None:
        return None
    at = parse_ms(value)
    if at is None:
        raise DecodeError(f"{where}{key} is not an ISO-8601 time between the years 1 and 9999")
    return at


def _created_at(raw: Mapping[str, Any]) -> int:
    value = raw.get("createdAt")
    at = None if value is None else parse_ms(value)
    if at is None:
        raise DecodeError("createdAt is missing or not an ISO-8601 time between the years 1 and 9999")
    return at


def _clamped(obs: Observation, latest: int) -> Observation:
    """`obs` with each timestamp after `latest` replaced by its receipt time, marked `skewed`."""
    def at(ms: int) -> int:
        return ms if ms <= latest else obs.received_at

    if isinstance(obs, (DeviceDeleted, ActionUpdated)):
        return replace(obs, at=at(obs.at), skewed=True)
    plug = None if obs.plug is None else Fact(at(obs.plug.at), obs.plug.value)
    location = None if obs.location is None else Fact(at(obs.location.at), obs.location.value)
    return replace(obs, at=at(obs.at), plug=plug, location=location, skewed=True)


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


def _fact(obj: object, id_key: str, where: str, fallback_at: int) -> Fact | None:
    """`{id_key: ..., "lastUpdated": ...}` -> Fact; a missing/null object -> None (nothing learnt)."""
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise DecodeError(f"{where} is not an object")
    value = obj.get("lastUpdated")  # `_time`, inlined: this is the decoder's hottest line
    at = fallback_at if value is None else parse_ms(value)
    if at is None:
        raise DecodeError(f"{where}.lastUpdated is not an ISO-8601 time between the years 1 and 9999")
    return Fact(at, _optional_id(obj, id_key, where))


def _decode_device(raw: Mapping[str, Any], subject: str, verb: str, received: int, latest: int) -> Observation:
    device = raw.get(subject)
    if not isinstance(device, dict):
        raise DecodeError(f"{subject} is missing or not an object")
    created = _created_at(raw)
    device_id = _str_id(device, "id", subject)
    user_id = _user_id(raw, device)
    if verb == "deleted":
        deleted = DeviceDeleted(user_id, "vehicle" if subject == "vehicle" else "charger", device_id, created,
                                received)
        return deleted if created <= latest else _clamped(deleted, latest)
    plug_key = "pluggedInChargerId" if subject == "vehicle" else "pluggedInVehicleId"
    plug = _fact(device.get("chargeState"), plug_key, f"{subject}.chargeState", created)
    location = _fact(device.get("location"), "id", f"{subject}.location", created)
    cls = VehicleObserved if subject == "vehicle" else ChargerObserved
    observed = cls(user_id, device_id, created, plug, location, received)
    if created <= latest and (plug is None or plug.at <= latest) and (location is None or location.at <= latest):
        return observed
    return _clamped(observed, latest)


def _decode_action(raw: Mapping[str, Any], received: int, latest: int) -> Observation | Ignored:
    action = raw.get("vendorAction") or raw.get("chargeAction")
    if not isinstance(action, dict):
        raise DecodeError("vendorAction is missing or not an object")
    kind, target_type = action.get("kind"), action.get("targetType")
    if kind not in _CHARGE_KINDS or target_type not in _CHARGE_TARGETS:
        return Ignored("other", "not a START/STOP action on a vehicle or charger")
    created = _created_at(raw)
    reason = action.get("failureReason")
    if reason is not None and not isinstance(reason, dict):
        raise DecodeError("vendorAction.failureReason is not an object")
    failure_type = _optional_id(reason, "type", "failureReason") if reason else None
    failure_detail = _optional_id(reason, "detail", "failureReason") if reason else None
    updated = _time(action, "updatedAt", "vendorAction.")
    observed = ActionUpdated(
        user_id=_user_id(raw, action),
        action_id=_str_id(action, "id", "vendorAction"),
        target_type=target_type,
        target_id=_str_id(action, "targetId", "vendorAction"),
        action_kind=kind,
        state=ActionState.parse(action.get("state")),
        failure_type=failure_type,
        failure_detail=failure_detail,
        at=updated if updated is not None else created,
        received_at=received,
    )
    return observed if observed.at <= latest else _clamped(observed, latest)
