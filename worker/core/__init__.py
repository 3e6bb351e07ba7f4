"""The pure core of plugwatch: Enode events in, state and emitted events out. No I/O, no clock, no logs.

    decode_event(raw) -> Observation | Ignored       (raises DecodeError for a malformed tracked event)
    apply(state, observation) -> Applied(state, events, outcome)

The shells (RQ jobs, the Redis store, reconcile) only load a `UserState`, call these, and save.
"""

from worker.core.body import decode_body
from worker.core.decode import DecodeError, decode_event
from worker.core.events import EmittedEvent, EventType, UnplugReason
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
from worker.core.rules import Applied, Outcome, apply
from worker.core.state import Charger, Home, UserState, Vehicle, decode_state, encode_state

__all__ = [
    "ActionState",
    "ActionUpdated",
    "Applied",
    "Charger",
    "ChargerObserved",
    "DecodeError",
    "DeviceDeleted",
    "EmittedEvent",
    "EventType",
    "Fact",
    "Home",
    "Ignored",
    "Observation",
    "Outcome",
    "UnplugReason",
    "UserState",
    "Vehicle",
    "VehicleObserved",
    "apply",
    "decode_body",
    "decode_event",
    "decode_state",
    "encode_state",
]
