"""One ingest-stream entry (an Enode delivery) -> the observations of its events, in array order.

An entry holds the fields the receiver wrote: `d` (delivery id), `b` (raw body), `t` (received at, ms).
`t` is the receipt time the core is given with every event (an entry without a usable one, which no
receiver writes, is taken as received now). A body that is not a JSON array is quarantined whole; an
event the core cannot decode is quarantined alone (with its `event_index`) and the delivery's other events
go on. Events of devices plugwatch does not track
are counted as ignored. `counts` collects `(kind, outcome)` for the worker's events metric.
"""

from __future__ import annotations

import time
from collections import Counter

import redis
import structlog

from plugwatch import quarantine
from worker.core import CoreConfig, DecodeError, Ignored, Observation, decode_body, decode_event

log = structlog.get_logger(__name__)

Entry = tuple[bytes, dict[bytes, bytes]]  # (entry id, fields), as XREADGROUP returns it without decoding


def decode_delivery(connection: redis.Redis, fields: dict[bytes, bytes], counts: Counter[tuple[str, str]],
                    config: CoreConfig) -> list[Observation]:
    """The observations of one delivery, in array order; malformed events go to the quarantine."""
    events = decode_body(fields.get(b"b", b""))
    if events is None:
        _quarantine(connection, fields, "delivery body is not a JSON array", None, counts)
        return []
    received_at = received_at_ms(fields)
    observations: list[Observation] = []
    for index, raw in enumerate(events):
        try:
            decoded = decode_event(raw, received_at, config)
        except DecodeError as error:
            _quarantine(connection, fields, error.reason, index, counts, _kind_of(raw))
            continue
        except Exception as error:  # a core bug must cost one event, never its whole delivery
            log.exception("ingest.decode_crashed", event_index=index)
            _quarantine(connection, fields, f"decoder crashed: {error!r}", index, counts, _kind_of(raw))
            continue
        if isinstance(decoded, Ignored):
            counts[(decoded.kind, "ignored")] += 1
        else:
            observations.append(decoded)
    return observations


def received_at_ms(fields: dict[bytes, bytes]) -> int:
    """The entry's receipt time `t` (ms), else now."""
    try:
        return int(fields[b"t"])
    except (KeyError, ValueError):
        return int(time.time() * 1000)


def _quarantine(connection: redis.Redis, fields: dict[bytes, bytes], reason: str, event_index: int | None,
                counts: Counter[tuple[str, str]], kind: str = "other") -> None:
    delivery_id = text(fields.get(b"d", b""))
    quarantine.add(connection, delivery_id, fields.get(b"b", b""), reason, now=time.time(), event_index=event_index,
                   once=True)  # a delivery decoded again (crash, failed batch) is not quarantined twice
    log.warning("ingest.event_quarantined", delivery_id=delivery_id, event_index=event_index, reason=reason)
    counts[(kind, "quarantined")] += 1


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
