"""The quarantine: authentic input plugwatch could not use, kept for an operator to inspect and replay.

It is the Redis stream `plugwatch:quarantine` (with partitions, one per partition, `into`: what a partition's
receiver part or drain could not use; the operator's functions take the partition too); each entry has the
fields `d` (delivery id), `b` (the raw delivery body), `reason`, `at` (ISO time), `replay_of` (the id of the
entry whose replay was quarantined again), and when only one event of a delivery was unusable its
`event_index` in the delivery: then `b` holds that event alone, byte for byte, as a one-element array (`alone`
= 1), so that a delivery of a hundred odd events costs its own size, not a hundred copies of itself (entries
written before `alone` existed hold the whole body). The receiver writes whole deliveries and odd system
events (from its ingest Lua script); the worker calls `add(..., event_index=i, source=<ingest entry id>)` for
single events and poison deliveries.

Nothing leaves the quarantine except by `purge` or by being processed. Replaying an entry appends it to the
ingest stream again (the whole body, or just the one event as a one-element array, byte for byte) with a
pointer to the entry, and removes the entry in the same MULTI; the worker then processes it, or quarantines
it again as a new entry whose `replay_of` names the old one. The worker adds an entry once per ingest-stream
entry and event (it may decode an entry again after a crash), so a replay, being a new ingest entry, is
always quarantined again when it fails again. Without `force`, a replay is refused when nothing in it would
be processed, as far as plugwatch can tell without the worker's decoder: a body that is no JSON array, an
event that is no object, has no name or an unknown version, or cannot be parsed, odd system events.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from plugwatch import ingest_arming, jsonarray
from plugwatch import ingest_protocol as ingest
from plugwatch.partitions import UNPARTITIONED, Layout


@dataclass(frozen=True)
class Entry:
    id: str
    delivery_id: str
    body: bytes
    reason: str
    at: str
    event_index: int | None = None
    replay_of: str | None = None  # the entry whose replay was quarantined again as this one
    alone: bool = False  # `body` is the event at `event_index` alone, as `[event]`

    def replay_body(self) -> bytes:
        """What a replay ingests: the whole body, or only the event at `event_index` as `[event]` (its bytes
        as sent: no re-serialization, whatever its depth)."""
        if self.event_index is None or self.alone:
            return self.body
        [(event, found)] = jsonarray.alone(self.body, [self.event_index])
        if found:
            return event
        stripped = self.body.strip()
        return b"[" + stripped + b"]" if stripped.startswith(b"{") else self.body


class ReplayOutcome(enum.StrEnum):
    REPLAYED = "replayed"
    STILL_INVALID = "still_invalid"  # kept: nothing in it would be processed (use force to replay anyway)
    NOT_FOUND = "not_found"


def add(
    connection: redis.Redis, delivery_id: str, body: bytes, reason: str, *, now: float,
    event_index: int | None = None, alone: bool = False, source: str | None = None, replay_of: str | None = None,
    into: Layout = UNPARTITIONED,
) -> str | None:
    """Quarantine a delivery (or, with `event_index`, one event of it); return the entry id.

    For one event, `body` is the whole delivery, from which the event is cut, or (`alone`) already the event
    alone as `[event]`. `source` (the worker, which may decode an ingest-stream entry again after a crash or
    a failed batch) is the id of the ingest-stream entry this comes from: the entry is added only once per
    source entry and `event_index` (None when it was added already). A replay is a new ingest entry, hence
    a new source.
    """
    if event_index is not None and not alone:
        [(body, alone)] = jsonarray.alone(body, [event_index])
    fields = _fields(delivery_id, body, reason, now=now, event_index=event_index, alone=alone, replay_of=replay_of)
    if source is None:
        return _text(connection.xadd(into.quarantine_stream, fields))  # type: ignore[arg-type]
    digest = hashlib.sha256(f"{source}|{delivery_id}|{event_index}|".encode() + body).hexdigest()[:24]
    flat = [item for pair in fields.items() for item in pair]
    added = connection.eval(_ADD_ONCE, 2, into.quarantine_stream, into.quarantined_once_prefix + digest,
                            ONCE_TTL_SECONDS, *flat)
    return _text(added) if added else None


def _fields(delivery_id: str, body: bytes, reason: str, *, now: float, event_index: int | None, alone: bool,
            replay_of: str | None) -> dict[str, str | bytes | int]:
    fields: dict[str, str | bytes | int] = {"d": delivery_id, "b": body, "reason": reason,
                                            "at": ingest.iso_time(now)}
    if event_index is not None:
        fields["event_index"] = event_index
    if alone:
        fields["alone"] = 1
    if replay_of:
        fields["replay_of"] = replay_of
    return fields


ONCE_TTL_SECONDS = 7 * 24 * 3600  # far longer than an ingest entry can stay pending
_ADD_ONCE = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
end
return false
"""


def count(connection: redis.Redis, into: Layout = UNPARTITIONED) -> int:
    return int(connection.xlen(into.quarantine_stream))


def entries(connection: redis.Redis, *, after: str = "-", limit: int = 50, into: Layout = UNPARTITIONED) -> list[Entry]:
    """Up to `limit` entries, oldest first, starting after entry id `after` ("-" for the beginning)."""
    start = "-" if after == "-" else f"({after}"
    rows = connection.xrange(into.quarantine_stream, min=start, max="+", count=limit)
    return [_entry(row) for row in rows or ()]


def get(connection: redis.Redis, entry_id: str, into: Layout = UNPARTITIONED) -> Entry | None:
    rows = connection.xrange(into.quarantine_stream, min=entry_id, max=entry_id, count=1)
    return _entry(rows[0]) if rows else None


def replay(connection: redis.Redis, entry_id: str, *, queues: redis.Redis, now: float,
           force: bool = False, into: Layout = UNPARTITIONED) -> ReplayOutcome:
    """Move one entry back onto the ingest stream (atomically) and arm a drain job (on `queues`, RQ's Redis).

    Odd system events in it (which the worker ignores) are quarantined again at once, each on its own,
    unless `force`d through.
    """
    entry = get(connection, entry_id, into)
    if entry is None:
        return ReplayOutcome.NOT_FOUND
    body = entry.replay_body()
    batch = ingest.classify(body)
    if not force and not _anything_to_process(body, batch):
        return ReplayOutcome.STILL_INVALID
    pipe = connection.pipeline(transaction=True)
    ingest_arming.requeue(pipe, entry.delivery_id, body, now=now, replay_of=entry.id, into=into)
    odd = () if force else batch.quarantined_events
    for (index, reason), (event, alone) in zip(odd, jsonarray.alone(body, [i for i, _ in odd]), strict=True):
        pipe.xadd(into.quarantine_stream, _fields(  # type: ignore[arg-type]
            entry.delivery_id, event, reason, now=now, event_index=index, alone=alone, replay_of=entry.id))
    pipe.xdel(into.quarantine_stream, entry.id)
    pipe.execute()
    ingest_arming.arm(connection, queues, into=into)
    return ReplayOutcome.REPLAYED


def _anything_to_process(body: bytes, batch: ingest.Batch) -> bool:
    """Would the worker process any event of `body`? False only when plugwatch can tell it would not."""
    if batch.quarantine is not None:
        return False  # not an array
    if not batch.enqueue:
        return not batch.quarantined_events  # system events only: a valid heartbeat or test is just ignored
    return any(_may_process(raw) for raw in jsonarray.elements(body) or ())


def _may_process(raw: bytes) -> bool:
    try:
        event = orjson.loads(raw)
    except (orjson.JSONDecodeError, RecursionError):
        return False  # the worker cannot parse it either
    return ingest.envelope_problem(event) is None and not (
        isinstance(event, dict) and event.get("event") in ingest.SYSTEM_EVENTS)


def purge(connection: redis.Redis, entry_ids: Iterable[str], into: Layout = UNPARTITIONED) -> int:
    """Delete the given entries; return how many existed."""
    ids = list(entry_ids)
    return int(connection.xdel(into.quarantine_stream, *ids)) if ids else 0


def purge_before(connection: redis.Redis, unix_seconds: float, into: Layout = UNPARTITIONED) -> int:
    """Delete every entry quarantined before `unix_seconds`; return how many."""
    min_id = f"{int(unix_seconds * 1000)}-0"
    return int(connection.xtrim(into.quarantine_stream, minid=min_id, approximate=False))


def purge_all(connection: redis.Redis, into: Layout = UNPARTITIONED) -> int:
    removed = count(connection, into)
    connection.delete(into.quarantine_stream)
    return removed


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry(row: Any) -> Entry:
    """An XRANGE row (entry id, fields) of a client without decode_responses."""
    entry_id, fields = row
    index = fields.get(b"event_index")
    return Entry(
        id=_text(entry_id),
        delivery_id=fields.get(b"d", b"").decode(errors="replace"),
        body=fields.get(b"b", b""),
        reason=fields.get(b"reason", b"").decode(errors="replace"),
        at=fields.get(b"at", b"").decode(errors="replace"),
        event_index=int(index) if index is not None and index.isdigit() else None,
        replay_of=_text(fields[b"replay_of"]) if b"replay_of" in fields else None,
        alone=fields.get(b"alone") == b"1",
    )
