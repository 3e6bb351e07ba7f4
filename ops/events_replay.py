"""Replay since a time: the events `plugwatch:events` (with partitions, each partition's events stream) still
holds for a window, sent again to one URL.

    parse_time("2h", now) -> unix ms          ISO-8601 (a naive time is UTC) or a relative form: 90s, 30m, 2h, 1d, 1w
    subscribed_types(connection, url), replay_types(...)   may this URL be sent events, and which (its subscription)
    replay(connection, url, window, types) -> Replayed     append the window's events to the URL's outbox, kick it

The window is by the time plugwatch **committed** each event: the time part of its `plugwatch:events` entry
id, `since` included, `until` excluded. (Not `occurredAt`, Enode's time of the fact: a reconcile or a late
report commits an event long after it occurred, and such events would fall outside any recent window; and the
stream is ordered by commit time, so a window is one `XRANGE`.)

Each event is appended, as the exact bytes of its `event` field (same id, same body), to the end of the URL's
outbox, exactly as the worker's commit does; then the URL's drain is armed. The worker delivers them like any
other event: signed at each attempt, retried, dead-lettered. They arrive after whatever already waited there.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from plugwatch import delivery_arming, outboxes, subscriptions
from plugwatch.outboxes import Outbox
from plugwatch.partitions import layouts

EVENT_TYPES = ("vehicle.plugged_in_at_home", "vehicle.unplugged_from_home", "control.failed",
               "control.failure_streak")  # as schema/events.schema.json (a test checks both against the core)
PAGE = 1000  # stream entries read, and outbox entries appended, per round trip
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


class ReplayError(ValueError):
    """The replay cannot be done as asked (a bad time, an unknown type, a URL that is not a destination)."""


@dataclass(frozen=True)
class Window:
    since_ms: int
    until_ms: int | None = None  # None: up to the newest event

    def __post_init__(self) -> None:
        if self.until_ms is not None and self.until_ms <= self.since_ms:
            raise ReplayError("--until must be later than --since")


@dataclass(frozen=True)
class Replayed:
    queued: int  # events appended to the URL's outbox
    first_id: str | None  # their stream entry ids (None: none)
    last_id: str | None
    oldest_held_ms: int | None  # the oldest event the stream still holds (None: it is empty)


def parse_time(text: str, now_ms: int) -> int:
    """`text` as unix ms: ISO-8601 (`2025-03-14T18:00:00Z`, a date, a naive time taken as UTC), or that long
    before `now_ms` (`90s`, `30m`, `2h`, `1.5d`, `1w`)."""
    raw = text.strip()
    if match := _RELATIVE.fullmatch(raw):
        return now_ms - int(float(match[1]) * _UNIT_MS[match[2]])
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ReplayError(f"{text!r} is neither an ISO-8601 time nor a duration like 30m, 2h, 1d") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def check_types(types: Collection[str]) -> frozenset[str]:
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown:
        raise ReplayError(f"unknown event type {unknown[0]!r}; one of: {', '.join(EVENT_TYPES)}")
    return frozenset(types)


def subscribed_types(connection: redis.Redis, url: str) -> tuple[str, ...] | None:
    """The event types `url` is subscribed to (`()` = every type), or None when it is not an active subscription."""
    subscription = subscriptions.load(connection, url)
    return subscription.types if subscription is not None and subscription.active else None


def replay_types(asked: frozenset[str], subscribed: tuple[str, ...]) -> frozenset[str]:
    """What a replay sends: the asked types (all if none) within the subscription's filter (all if none)."""
    if not subscribed:
        return asked
    outside = asked - set(subscribed)
    if outside:
        raise ReplayError(f"--type {', '.join(sorted(outside))}: not among the types this URL is subscribed to "
                          f"({', '.join(subscribed)})")
    return asked or frozenset(subscribed)


def replay(connection: redis.Redis, url: str, window: Window, types: Collection[str] = (), *,
           queues: redis.Redis, partitions: int = 1) -> Replayed:
    """Append the window's events (of `types`, all if empty) to `url`'s outbox in stream order; arm its drain
    (its job on `queues`, RQ's Redis). With partitions, each partition's events stream in turn (a vehicle's
    events are all in one of them, in order); `first` and `last` are then those of partition 0 onwards."""
    wanted = frozenset(types)
    queued, first, last = 0, None, None
    for into in layouts(partitions):
        start, end = str(window.since_ms), "+" if window.until_ms is None else str(window.until_ms - 1)
        while True:
            page: Any = connection.xrange(into.events_stream, start, end, count=PAGE)
            bodies = [(_text(entry_id), fields.get(b"event")) for entry_id, fields in page]
            chosen = [(entry_id, body) for entry_id, body in bodies if body is not None and _wanted(body, wanted)]
            if chosen:
                _append(connection, Outbox(url, into), [body for _, body in chosen])
                queued, first, last = queued + len(chosen), first or chosen[0][0], chosen[-1][0]
            if len(page) < PAGE:
                break
            start = "(" + bodies[-1][0]
    if queued:
        delivery_arming.kick(connection, queues, outboxes.of_urls([url], partitions))
    return Replayed(queued, first, last, _oldest_ms(connection, partitions))


def _wanted(body: bytes, types: frozenset[str]) -> bool:
    if not types:
        return True
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(event, dict) and event.get("type") in types


def _append(connection: redis.Redis, box: Outbox, bodies: list[bytes]) -> None:
    pipe = connection.pipeline(transaction=False)
    for body in bodies:
        pipe.xadd(box.stream, {"event": body})  # what the worker's commit does, byte for byte
    pipe.execute()


def _oldest_ms(connection: redis.Redis, partitions: int) -> int | None:
    """When the newest of the partitions' oldest held events was committed: from then on, every stream holds
    all it committed."""
    heads = []
    for into in layouts(partitions):
        oldest: Any = connection.xrange(into.events_stream, "-", "+", count=1)
        if oldest:
            heads.append(int(_text(oldest[0][0]).split("-", 1)[0]))
    return max(heads) if heads else None


def _text(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id
