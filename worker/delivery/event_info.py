"""Reading the few fields delivery needs from an outbox entry's event JSON.  Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson


@dataclass(frozen=True)
class EventInfo:
    id: str
    type: str
    occurred_at: float | None  # unix seconds, None when absent or unparseable
    # Events with one order key are delivered one at a time, in outbox order: the vehicle's; for an event
    # without a vehicle (`vehicleId` null) its user's, so a user's vehicle-less events keep their order too;
    # without either, the event's own id (it waits for nothing).
    order_key: str = ""


def parse_event(body: bytes) -> EventInfo | None:
    """The event's id, type and occurredAt; None when the body is not a JSON object with a string id."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event["id"]:
        return None
    kind = event.get("type")
    return EventInfo(event["id"], kind if isinstance(kind, str) else "", _timestamp(event.get("occurredAt")),
                     _order_key(event))


def _order_key(event: dict[str, object]) -> str:
    for field, prefix in (("vehicleId", "vehicle:"), ("userId", "user:")):
        value = event.get(field)
        if isinstance(value, str) and value:
            return prefix + value
    return f"event:{event['id']}"


def _timestamp(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None
