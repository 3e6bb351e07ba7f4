"""Events plugwatch emits downstream (DESIGN.md §1 "Emitted events"), with deterministic ids."""

from __future__ import annotations

import enum
import hashlib
from typing import Any

import msgspec
import orjson

from worker.core.timestamps import format_ms


class EventType(enum.StrEnum):
    PLUGGED_IN_AT_HOME = "vehicle.plugged_in_at_home"
    UNPLUGGED_FROM_HOME = "vehicle.unplugged_from_home"
    CONTROL_FAILED = "control.failed"
    CONTROL_FAILURE_STREAK = "control.failure_streak"


class UnplugReason(enum.StrEnum):
    UNPLUGGED = "unplugged"
    LOCATION_CHANGED = "location_changed"
    CHARGER_LOCATION_CHANGED = "charger_location_changed"
    VEHICLE_DELETED = "vehicle_deleted"
    CHARGER_DELETED = "charger_deleted"
    STATE_LOST = "state_lost"  # plugwatch lost its state; the vehicle is not at home (it may never have been)


class EmittedEvent(msgspec.Struct, frozen=True):
    id: str
    type: EventType
    occurred_at_ms: int
    user_id: str
    vehicle_id: str | None
    charger_id: str | None
    location_id: str | None
    sequence: int | None
    data: dict[str, Any] = msgspec.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type.value,
            "occurredAt": format_ms(self.occurred_at_ms),
            "userId": self.user_id,
            "vehicleId": self.vehicle_id,
            "chargerId": self.charger_id,
            "locationId": self.location_id,
            "sequence": self.sequence,
            "data": self.data,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def event_id(event_type: EventType, *cause: object) -> str:
    """The same cause (type, devices, Enode timestamp, ...) always yields the same id."""
    digest = hashlib.sha256("|".join([event_type.value, *map(str, cause)]).encode()).hexdigest()
    return "evt_" + digest[:32]
