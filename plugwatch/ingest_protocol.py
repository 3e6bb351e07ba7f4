"""The ingest protocol: how the receiver puts a delivery into Redis for the worker. Classify it, then dedupe +
store it in ONE Lua call, which also arms a drain job (`plugwatch.ingest_arming`).

    classify(body) -> Batch                pure: how many events, enqueue? quarantine why? heartbeat?
    script_call(delivery, ...) -> keys, args   for the INGEST_LUA script (register it once per client)
    IngestResult(reply)                    what the script did

The script sets the dedupe mark and appends the delivery to the ingest stream (or the quarantine stream,
or only the heartbeat hash) atomically, so a crash or a Redis error can never leave a delivery marked as
seen but not stored. It then tries `SET plugwatch:ingest:armed 1 NX PX <ARMED_TTL_MS>`; only the caller that
wins that SET enqueues the RQ drain job (`ingest_arming.enqueue_after_arming`). The worker reads what the
script wrote: an ingest-stream entry is `d` (delivery id), `b` (raw body), `t` (received at, unix ms).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson

from plugwatch import keys
from plugwatch.ingest_arming import ARMED_TTL_MS

KNOWN_VERSIONS = frozenset({"2024-10-01"})
HEARTBEAT_EVENT = "system:heartbeat"
TEST_EVENT = "enode:webhook:test"


class QuarantineReason(enum.StrEnum):
    INVALID_JSON = "invalid_json"
    NOT_AN_ARRAY = "not_an_array"
    EMPTY_BATCH = "empty_batch"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_EVENT = "missing_event"
    UNKNOWN_VERSION = "unknown_version"
    INVALID_HEARTBEAT = "invalid_heartbeat"


@dataclass(frozen=True)
class Heartbeat:
    pending_events: int
    created_at: str


@dataclass(frozen=True)
class Batch:
    """What an authentic body holds, as far as ingest cares."""

    events: int
    enqueue: bool = False  # holds events for the worker
    quarantine: QuarantineReason | None = None
    heartbeat: Heartbeat | None = None  # the last system:heartbeat in the batch


class _Envelope(msgspec.Struct):
    """The fields ingest looks at; everything else in an event is skipped without being built."""

    event: str
    version: str
    pendingEvents: int | None = None
    createdAt: Any = None


_ENVELOPES = msgspec.json.Decoder(list[_Envelope])


def classify(body: bytes) -> Batch:
    """Decide what to do with an authentic body; never raises.

    The common case (a well-formed batch) is decoded by msgspec without building the events; anything
    it refuses is examined again with orjson to name the quarantine reason.
    """
    try:
        envelopes = _ENVELOPES.decode(body)
    except msgspec.DecodeError:
        return _classify_slowly(body)
    if not envelopes or any(e.version not in KNOWN_VERSIONS for e in envelopes):
        return _classify_slowly(body)
    enqueue, heartbeat = False, None
    for envelope in envelopes:
        if envelope.event == HEARTBEAT_EVENT:
            if envelope.pendingEvents is None or envelope.pendingEvents < 0:
                return _classify_slowly(body)
            heartbeat = Heartbeat(envelope.pendingEvents, str(envelope.createdAt or ""))
        elif envelope.event != TEST_EVENT:
            enqueue = True
    return Batch(events=len(envelopes), enqueue=enqueue, heartbeat=heartbeat)


def _classify_slowly(body: bytes) -> Batch:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Batch(events=0, quarantine=QuarantineReason.INVALID_JSON)
    if not isinstance(parsed, list):
        return Batch(events=0, quarantine=QuarantineReason.NOT_AN_ARRAY)
    if not parsed:
        return Batch(events=0, quarantine=QuarantineReason.EMPTY_BATCH)
    enqueue, heartbeat = False, None
    for event in parsed:
        reason = _event_problem(event)
        if reason is not None:
            return Batch(events=len(parsed), quarantine=reason)
        if event["event"] == HEARTBEAT_EVENT:
            heartbeat = Heartbeat(event["pendingEvents"], str(event.get("createdAt") or ""))
        elif event["event"] != TEST_EVENT:
            enqueue = True
    return Batch(events=len(parsed), enqueue=enqueue, heartbeat=heartbeat)


def _event_problem(event: Any) -> QuarantineReason | None:
    if not isinstance(event, dict):
        return QuarantineReason.NOT_AN_OBJECT
    if not isinstance(event.get("event"), str):
        return QuarantineReason.MISSING_EVENT
    version = event.get("version")
    if not isinstance(version, str) or version not in KNOWN_VERSIONS:
        return QuarantineReason.UNKNOWN_VERSION
    if event["event"] == HEARTBEAT_EVENT:
        pending = event.get("pendingEvents")
        if not isinstance(pending, int) or isinstance(pending, bool) or pending < 0:
            return QuarantineReason.INVALID_HEARTBEAT
    return None


class IngestResult(enum.StrEnum):
    """The reply of INGEST_LUA."""

    DUPLICATE = "duplicate"  # the delivery id was seen within the dedupe window: nothing written
    ACCEPTED = "accepted"  # appended to the ingest stream; a drain job is already armed
    ARMED = "armed"  # appended, and this caller armed the drain: it must enqueue the RQ job
    QUARANTINED = "quarantined"  # appended to the quarantine stream
    RECORDED = "recorded"  # heartbeat/test only: nothing to process


INGEST_LUA = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[4]) then return 'duplicate' end
if ARGV[6] ~= '' then
  redis.call('XADD', KEYS[3], '*', 'd', ARGV[1], 'b', ARGV[2], 'reason', ARGV[6], 'at', ARGV[7])
  return 'quarantined'
end
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[4], 'at', ARGV[11], 'pending_events', ARGV[8], 'created_at', ARGV[9])
end
if ARGV[5] ~= '1' then return 'recorded' end
redis.call('XADD', KEYS[2], '*', 'd', ARGV[1], 'b', ARGV[2], 't', ARGV[3])
if redis.call('SET', KEYS[5], '1', 'NX', 'PX', ARGV[10]) then return 'armed' end
return 'accepted'
"""


def iso_time(unix_seconds: float) -> str:
    """`2025-03-14T18:30:00.000Z`: the time format of quarantine entries."""
    return datetime.fromtimestamp(unix_seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def script_call(
    delivery_id: str, body: bytes, batch: Batch, *, now: float, dedupe_ttl_seconds: int
) -> tuple[list[str], list[str | bytes | int]]:
    """KEYS and ARGV for INGEST_LUA (`now` in unix seconds)."""
    pending, created_at = ("", "") if batch.heartbeat is None else (
        batch.heartbeat.pending_events, batch.heartbeat.created_at)
    script_keys = [keys.dedupe_key(delivery_id), keys.INGEST_STREAM, keys.QUARANTINE_STREAM,
                   keys.HEARTBEAT, keys.INGEST_ARMED]
    args: list[str | bytes | int] = [
        delivery_id, body, int(now * 1000), dedupe_ttl_seconds, "1" if batch.enqueue else "0",
        batch.quarantine or "", iso_time(now) if batch.quarantine else "",
        pending, created_at, ARMED_TTL_MS, f"{now:.3f}",
    ]
    return script_keys, args


def result_of(reply: bytes | str) -> IngestResult:
    return IngestResult(reply.decode() if isinstance(reply, bytes) else reply)
