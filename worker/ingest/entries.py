"""One ingest-stream entry (an Enode delivery) -> the observations of its events, in array order.

An entry holds the fields the receiver wrote: `d` (delivery id), `b` (raw body), `t` (received at, ms: the receipt
time the core is given with every event; an entry without a usable one is taken as received now), and
`q` on a replay (the quarantine entry it came from). A body that is not a JSON array is quarantined whole.
A body the parsers refuse as a whole (an element nested deeper than they go, invalid JSON inside one
element) is split without recursion and its elements are decoded one by one. An event that cannot be
parsed, is no object, has no name or an unknown API version, or that the core cannot decode is quarantined
alone (with its `event_index`) and the delivery's other events go on. Events of devices plugwatch does not
track, heartbeats and test events are counted as ignored (the receiver judged the system events).
`counts` collects `(kind, outcome)` for the worker's events metric.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import orjson
import redis
import structlog

from plugwatch import jsonarray, quarantine
from plugwatch.ingest_protocol import envelope_problem
from plugwatch.partitions import UNPARTITIONED, Layout
from worker.core import CoreConfig, DecodeError, Ignored, Observation, decode_body, decode_event

log = structlog.get_logger(__name__)

Entry = tuple[bytes, dict[bytes, bytes]]  # (entry id, fields), as XREADGROUP returns it without decoding


@dataclass(frozen=True)
class _Unparseable:
    """An element of a delivery no parser could read."""

    reason: str


@dataclass
class _Delivery:
    """An ingest-stream entry being decoded; its body is split into raw elements at most once."""

    entry: Entry
    into: Layout
    quarantine: bool = True  # quarantine what cannot be used (else only count it)
    raw_events: list[bytes] | None = None

    @property
    def body(self) -> bytes:
        return self.entry[1].get(b"b", b"")

    def event_alone(self, index: int) -> bytes | None:
        """The event at `index` as `[event]`, byte for byte (what its quarantine entry keeps)."""
        if self.raw_events is None:
            self.raw_events = jsonarray.elements(self.body) or []
        return b"[" + self.raw_events[index] + b"]" if index < len(self.raw_events) else None


def decode_delivery(connection: redis.Redis, entry: Entry, counts: Counter[tuple[str, str]],
                    config: CoreConfig, *, quarantine: bool = True, into: Layout = UNPARTITIONED) -> list[Observation]:
    """The observations of one delivery, in array order; malformed events go to the quarantine of `into` (the
    partition whose stream holds the entry), unless not `quarantine`: another drain's entry, read only for the
    order of its users' observations."""
    delivery = _Delivery(entry, into, quarantine)
    events = decode_body(delivery.body)
    if events is None:
        delivery.raw_events = jsonarray.elements(delivery.body)
        events = None if delivery.raw_events is None else [_element(raw) for raw in delivery.raw_events]
    if events is None:
        _quarantine(connection, delivery, "delivery body is not a JSON array", None, counts)
        return []
    received_at = received_at_ms(entry[1])
    observations: list[Observation] = []
    for index, raw in enumerate(events):
        try:
            problem = raw.reason if isinstance(raw, _Unparseable) else envelope_problem(raw)
            if problem is not None:
                raise DecodeError(problem)
            decoded = decode_event(raw, received_at, config)
        except DecodeError as error:
            _quarantine(connection, delivery, error.reason, index, counts, _kind_of(raw))
            continue
        except Exception as error:  # a core bug must cost one event, never its whole delivery
            log.exception("ingest.decode_crashed", event_index=index)
            _quarantine(connection, delivery, f"decoder crashed: {error!r}", index, counts, _kind_of(raw))
            continue
        if isinstance(decoded, Ignored):
            counts[(decoded.kind, "ignored")] += 1
        else:
            observations.append(decoded)
    return observations


def _element(raw: bytes) -> object:
    """An element of an array the parsers refused as a whole (nested too deep, a number out of range, invalid
    UTF-8 in one event), decoded on its own."""
    decoded = decode_body(b"[" + raw + b"]")
    if decoded is not None and len(decoded) == 1:
        return decoded[0]
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return _Unparseable(f"event cannot be parsed as JSON: {error}")
    return _Unparseable("event cannot be parsed as JSON")


def received_at_ms(fields: dict[bytes, bytes]) -> int:
    """The entry's receipt time `t` (ms), else now."""
    try:
        return int(fields[b"t"])
    except (KeyError, ValueError):
        return int(time.time() * 1000)


def _quarantine(connection: redis.Redis, delivery: _Delivery, reason: str, event_index: int | None,
                counts: Counter[tuple[str, str]], kind: str = "other") -> None:
    counts[(kind, "quarantined")] += 1
    if not delivery.quarantine:
        return
    event = None if event_index is None else delivery.event_alone(event_index)
    quarantine_entry(connection, delivery.entry, reason, event_index, event, into=delivery.into)
    log.warning("ingest.event_quarantined", delivery_id=text(delivery.entry[1].get(b"d", b"")),
                event_index=event_index, reason=reason)


def quarantine_entry(connection: redis.Redis, entry: Entry, reason: str, event_index: int | None = None,
                     event: bytes | None = None, *, into: Layout = UNPARTITIONED) -> None:
    """Quarantine an ingest-stream entry (or one event of it: `event`, as `[event]`, if the caller cut it out)
    once, however often it is decoded again (a crash, a failed batch), naming the quarantine entry it was
    replayed from, if it was."""
    entry_id, fields = entry
    replay_of = fields.get(b"q")
    quarantine.add(connection, text(fields.get(b"d", b"")), fields.get(b"b", b"") if event is None else event,
                   reason, now=time.time(), event_index=event_index, alone=event is not None, source=text(entry_id),
                   replay_of=None if replay_of is None else text(replay_of), into=into)


def _kind_of(raw: object) -> str:
    """The metrics kind of an event the core could not decode, from its name."""
    name = raw.get("event") if isinstance(raw, dict) else None
    if isinstance(name, str):
        for kind, marker in (("vehicle", ":vehicle:"), ("charger", ":charger:"), ("action", "-action:")):
            if marker in name:
                return kind
    return "other"


def text(value: bytes) -> str:
    return value.decode(errors="replace")
