"""What the core learns from one Enode event: plain, frozen, already validated facts.

A `Fact` is one field of a device at one moment: the value Enode reported (e.g. `pluggedInChargerId`) and
Enode's own timestamp for it (e.g. `chargeState.lastUpdated`). Facts are ordered by `(at, value)`, so
keeping the greatest fact per field gives the same result in any arrival order.

Every observation also carries `received_at`, when plugwatch received it (the ingest entry's `t`, or the
time of an API fetch), an input like any other: the core has no clock. Enode timestamps the decoder found
further ahead of it than the allowed clock skew were clamped to it (`skewed` says so, for the metrics).
"""

from __future__ import annotations

import enum
from typing import Literal

import msgspec


class Fact(msgspec.Struct, frozen=True, array_like=True):
    at: int  # Enode's timestamp for this field, ms since the epoch
    value: str | None  # None: Enode reported null (not plugged into a linked charger / not at a Location)

    def newer_than(self, other: Fact | None) -> bool:
        if other is None:
            return True
        return (self.at, self.value or "") > (other.at, other.value or "")


class VehicleObserved(msgspec.Struct, frozen=True):
    """A vehicle's state as reported by `user:vehicle:discovered|updated` (or fetched from the API)."""

    user_id: str
    vehicle_id: str
    at: int  # the event's createdAt
    plug: Fact | None  # chargeState.pluggedInChargerId @ chargeState.lastUpdated; None: no chargeState
    location: Fact | None  # location.id @ location.lastUpdated; None: no location object
    received_at: int  # ms since the epoch
    skewed: bool = False  # a timestamp was clamped to `received_at`
    kind: Literal["vehicle"] = "vehicle"


class ChargerObserved(msgspec.Struct, frozen=True):
    """A charger's state as reported by `user:charger:discovered|updated` (or fetched from the API)."""

    user_id: str
    charger_id: str
    at: int
    plug: Fact | None  # chargeState.pluggedInVehicleId @ chargeState.lastUpdated
    location: Fact | None  # location.id @ location.lastUpdated
    received_at: int
    skewed: bool = False
    kind: Literal["charger"] = "charger"


class DeviceDeleted(msgspec.Struct, frozen=True):
    """`user:vehicle:deleted` or `user:charger:deleted`."""

    user_id: str
    device: Literal["vehicle", "charger"]
    device_id: str
    at: int
    received_at: int
    skewed: bool = False

    @property
    def kind(self) -> Literal["vehicle", "charger"]:
        return self.device


class ActionState(enum.StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"  # a value Enode added after 2024-10-01

    @classmethod
    def parse(cls, raw: object) -> ActionState:
        try:
            return cls(str(raw))
        except ValueError:
            return cls.UNKNOWN


class ActionUpdated(msgspec.Struct, frozen=True):
    """A START/STOP charging action on a vehicle or charger changed state (`user:vendor-action:updated`)."""

    user_id: str
    action_id: str
    target_type: Literal["vehicle", "charger"]
    target_id: str
    action_kind: Literal["START", "STOP"]
    state: ActionState
    failure_type: str | None
    failure_detail: str | None
    at: int  # the action's updatedAt (else the event's createdAt)
    received_at: int  # what the action memory is measured in (`worker.core.memory`)
    skewed: bool = False
    kind: Literal["action"] = "action"


Observation = VehicleObserved | ChargerObserved | DeviceDeleted | ActionUpdated


class Ignored(msgspec.Struct, frozen=True):
    """An authentic event plugwatch has no use for (other device types, heartbeats, unknown names)."""

    kind: Literal["system", "other"]
    reason: str
