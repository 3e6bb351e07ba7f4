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


def parse_event(body: bytes) -> EventInfo | None:
    """The event's id, type and occurredAt; None when the body is not a JSON object with a string id."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event["id"]:
        return None
    kind = event.get("type")
    return EventInfo(event["id"], kind if isinstance(kind, str) else "", _timestamp(event.get("occurredAt")))


def _timestamp(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None
