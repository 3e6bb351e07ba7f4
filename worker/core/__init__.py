"""The pure core of plugwatch: Enode events in, state and emitted events out. No I/O, no clock, no logs.

    decode_event(raw, received_at_ms, config) -> Observation | Ignored   (DecodeError: a malformed tracked event)
    apply(state, observation, config) -> Applied(state, events, outcome)

`received_at_ms` is when the shell received the event (an ingest entry's `t`, the time of an API fetch);
`config` (a `CoreConfig`) carries the settings the rules depend on.

The shells (RQ jobs, the Redis store, reconcile) only load a `UserState`, call these, and save.
"""

from worker.core.body import decode_body
from worker.core.config import DEFAULT_CONFIG, CoreConfig
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
    "DEFAULT_CONFIG",
    "ActionState",
    "ActionUpdated",
    "Applied",
    "Charger",
    "ChargerObserved",
    "CoreConfig",
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
