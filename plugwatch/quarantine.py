"""The quarantine: authentic input plugwatch could not use, kept for an operator to inspect and replay.

It is the Redis stream `plugwatch:quarantine`; each entry has the fields `d` (delivery id), `b` (the raw
delivery body), `reason`, `at` (ISO time) and, when only one event of a delivery was unusable, the
`event_index` of that event in `b`. The receiver writes whole deliveries (from its ingest Lua script);
the worker calls `add(..., event_index=i)` for single events.

Replaying an entry appends it to the ingest stream again (the whole body, or just the one event as a
one-element array) and removes it from the quarantine in the same MULTI, then arms a drain job. An entry
whose body still cannot be ingested is kept unless the replay is forced.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from plugwatch import ingest_arming, keys
from plugwatch import ingest_protocol as ingest


@dataclass(frozen=True)
class Entry:
    id: str
    delivery_id: str
    body: bytes
    reason: str
    at: str
    event_index: int | None = None

    def replay_body(self) -> bytes:
        """What a replay ingests: the whole body, or only the event at `event_index` as `[event]`."""
        if self.event_index is None:
            return self.body
        try:
            parsed = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return self.body
        if isinstance(parsed, dict):
            return orjson.dumps([parsed])
        if isinstance(parsed, list) and 0 <= self.event_index < len(parsed):
            return orjson.dumps([parsed[self.event_index]])
        return self.body


class ReplayOutcome(enum.StrEnum):
    REPLAYED = "replayed"
    STILL_INVALID = "still_invalid"  # kept: its body still fails classification (use force to replay anyway)
    NOT_FOUND = "not_found"


def add(
    connection: redis.Redis, delivery_id: str, body: bytes, reason: str, *, now: float,
    event_index: int | None = None, once: bool = False,
) -> str | None:
    """Quarantine a delivery (or, with `event_index`, one event of it); return the entry id.

    `once=True` (the worker, which may decode a delivery again after a crash or a failed batch) adds the
    entry only if this delivery id, index and body were not quarantined in the last week; None if they were.
    """
    fields: dict[str, str | bytes | int] = {"d": delivery_id, "b": body, "reason": reason,
                                            "at": ingest.iso_time(now)}
    if event_index is not None:
        fields["event_index"] = event_index
    if not once:
        return _text(connection.xadd(keys.QUARANTINE_STREAM, fields))  # type: ignore[arg-type]
    digest = hashlib.sha256(f"{delivery_id}|{event_index}|".encode() + body).hexdigest()[:24]
    flat = [item for pair in fields.items() for item in pair]
    added = connection.eval(_ADD_ONCE, 2, keys.QUARANTINE_STREAM, keys.QUARANTINED_ONCE_PREFIX + digest,
                            ONCE_TTL_SECONDS, *flat)
    return _text(added) if added else None


ONCE_TTL_SECONDS = 7 * 24 * 3600
_ADD_ONCE = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
end
return false
"""


def count(connection: redis.Redis) -> int:
    return int(connection.xlen(keys.QUARANTINE_STREAM))


def entries(connection: redis.Redis, *, after: str = "-", limit: int = 50) -> list[Entry]:
    """Up to `limit` entries, oldest first, starting after entry id `after` ("-" for the beginning)."""
    start = "-" if after == "-" else f"({after}"
    rows = connection.xrange(keys.QUARANTINE_STREAM, min=start, max="+", count=limit)
    return [_entry(row) for row in rows or ()]


def get(connection: redis.Redis, entry_id: str) -> Entry | None:
    rows = connection.xrange(keys.QUARANTINE_STREAM, min=entry_id, max=entry_id, count=1)
    return _entry(rows[0]) if rows else None


def replay(connection: redis.Redis, entry_id: str, *, now: float, force: bool = False) -> ReplayOutcome:
    """Move one entry back onto the ingest stream (atomically) and arm a drain job."""
    entry = get(connection, entry_id)
    if entry is None:
        return ReplayOutcome.NOT_FOUND
    body = entry.replay_body()
    if not force and ingest.classify(body).quarantine is not None:
        return ReplayOutcome.STILL_INVALID
    pipe = connection.pipeline(transaction=True)
    ingest_arming.requeue(pipe, entry.delivery_id, body, now=now)
    pipe.xdel(keys.QUARANTINE_STREAM, entry.id)
    pipe.execute()
    ingest_arming.arm(connection)
    return ReplayOutcome.REPLAYED


def purge(connection: redis.Redis, entry_ids: Iterable[str]) -> int:
    """Delete the given entries; return how many existed."""
    ids = list(entry_ids)
    return int(connection.xdel(keys.QUARANTINE_STREAM, *ids)) if ids else 0


def purge_before(connection: redis.Redis, unix_seconds: float) -> int:
    """Delete every entry quarantined before `unix_seconds`; return how many."""
    min_id = f"{int(unix_seconds * 1000)}-0"
    return int(connection.xtrim(keys.QUARANTINE_STREAM, minid=min_id, approximate=False))


def purge_all(connection: redis.Redis) -> int:
    removed = count(connection)
    connection.delete(keys.QUARANTINE_STREAM)
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
    )
