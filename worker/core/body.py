"""A delivery body (the JSON array Enode sent) -> its events as dicts, fast.

Enode's device objects are large (capabilities, information, ...) and plugwatch reads a handful of their
fields. The fast path decodes only those fields with msgspec (unknown fields are skipped, not built) and
hands `decode_event` small dicts of exactly the keys it reads. Any body whose shape surprises the fast path
(a field of another type than expected, invalid JSON) is decoded again, fully, with orjson, so both paths
give `decode_event` the same view and the same per-event errors.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson


class _ChargeState(msgspec.Struct, omit_defaults=True):
    pluggedInChargerId: Any = None  # Enode's field names, as they appear in the JSON
    pluggedInVehicleId: Any = None
    lastUpdated: Any = None


class _Location(msgspec.Struct, omit_defaults=True):
    id: Any = None
    lastUpdated: Any = None


class _Device(msgspec.Struct, omit_defaults=True):
    id: Any = None
    userId: Any = None
    chargeState: _ChargeState | None = None
    location: _Location | None = None


class _Event(msgspec.Struct, omit_defaults=True):
    event: Any = None
    createdAt: Any = None
    version: Any = None
    user: Any = None
    vehicle: _Device | None = None
    charger: _Device | None = None
    vendorAction: Any = None
    chargeAction: Any = None


_decoder = msgspec.json.Decoder(list[_Event])


def decode_body(body: bytes) -> list[Any] | None:
    """The delivery's events in array order (dicts, or whatever else the array held); None: not an array,
    or not one these parsers can read (invalid JSON, nesting deeper than they go)."""
    try:
        events: list[Any] = msgspec.to_builtins(_decoder.decode(body))  # one call for the whole array
        return events
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):  # recursion: ~1000 levels; bad UTF-8
        pass
    try:
        events = orjson.loads(body)
    except (orjson.JSONDecodeError, RecursionError):  # orjson stops at 1024 levels
        return None
    return events if isinstance(events, list) else None
