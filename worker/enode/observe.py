"""Vehicles and chargers fetched from the API go through exactly the path webhook events take.

Each object is wrapped as the webhook event Enode would have sent for it (`user:vehicle:updated` /
`user:charger:updated`, `createdAt` = the time of the fetch), decoded by the worker core's `decode_event`
(received at the time of the fetch, with the store's `CoreConfig`) and applied by the store's `apply_batch`
(state + emitted events + outboxes, one atomic commit).  So the core's rules decide everything: Enode's own
timestamps order facts, a fact already known is a duplicate, an older one is stale, and only a real
transition emits an event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from plugwatch.enode_api.client import DEFAULT_API_VERSION
from worker.core import DEFAULT_CONFIG, CoreConfig, DecodeError, Ignored, Observation, decode_event
from worker.ingest.store import BatchResult, Store

log = structlog.get_logger(__name__)

Kind = Literal["vehicle", "charger"]
ApplyBatch = Callable[[Sequence[Observation]], BatchResult]  # e.g. functools.partial(apply_observations, ...)
Deliver = Callable[[], object]  # arms delivery of committed events (a worker's DeliveryContext.kick, for its URLs)


def as_event(kind: Kind, obj: dict[str, Any], fetched_at: datetime) -> dict[str, Any]:
    """The `user:<kind>:updated` webhook event carrying `obj` (a Vehicle or Charger from the API)."""
    user_id = obj.get("userId")
    return {
        "event": f"user:{kind}:updated",
        "createdAt": fetched_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "version": DEFAULT_API_VERSION,
        "user": {"id": user_id} if isinstance(user_id, str) else None,
        kind: obj,
        "updatedFields": [],
    }


def deleted_event(kind: Kind, device_id: str, user_id: str, at: datetime) -> dict[str, Any]:
    """The `user:<kind>:deleted` webhook event Enode sends when a device is removed."""
    return {**as_event(kind, {"id": device_id, "userId": user_id}, at), "event": f"user:{kind}:deleted"}


def observations(kind: Kind, objects: Iterable[dict[str, Any]], fetched_at: datetime,
                 config: CoreConfig = DEFAULT_CONFIG) -> list[Observation]:
    """Decode each object as its webhook event would be; an undecodable one is logged and skipped."""
    return decode_all((as_event(kind, obj, fetched_at) for obj in objects), fetched_at, config)


def decode_all(events: Iterable[dict[str, Any]], received_at: datetime,
               config: CoreConfig = DEFAULT_CONFIG) -> list[Observation]:
    """Decode events this process made at `received_at` (the shell's clock: a fetch, a listing)."""
    received_ms = int(received_at.timestamp() * 1000)
    decoded: list[Observation] = []
    for event in events:
        try:
            observation = decode_event(event, received_ms, config)
        except DecodeError as error:
            log.warning("enode.object_skipped", event=event.get("event"), reason=error.reason)
            continue
        if not isinstance(observation, Ignored):
            decoded.append(observation)
    return decoded


def apply_observations(store: Store, deliver: Deliver, batch: Sequence[Observation]) -> BatchResult:
    """Commit `batch` through the store and arm downstream delivery for what it emitted."""
    result = store.apply_batch(batch)
    if result.events:
        deliver()
    return result
