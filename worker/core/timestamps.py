"""Enode's ISO-8601 timestamps as integer milliseconds since the epoch (comparable, compact, pure).

Both functions are total: `parse_ms` never raises and accepts only instants Python can represent in UTC
(years 1 to 9999), so every time the core stores can be formatted again by `format_ms`; a valid RFC 3339
text outside that range (`9999-12-31T23:59:59-23:59` is year 10000 in UTC) is "not a time" (None). Integer
arithmetic throughout: a float of milliseconds near year 9999 would round across the boundary.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
MIN_MS = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MS  # 0001-01-01T00:00:00.000Z
MAX_MS = (datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC) - _EPOCH) // _MS  # 9999-12-31T23:59:59.999Z


def parse_ms(value: object) -> int | None:
    """`"2025-03-14T18:02:05.512Z"` -> 1741975325512; anything else, or an instant outside years 1-9999
    UTC -> None (never raises)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.upper())  # RFC 3339 allows a lower-case "t" and "z"
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # Enode sends UTC; a naive value is read as UTC
    try:
        since = parsed - _EPOCH  # aware subtraction applies the offset without building a datetime
    except (OverflowError, ValueError):  # an offset Python cannot apply
        return None
    ms = since.days * 86_400_000 + since.seconds * 1000 + since.microseconds // 1000
    return ms if MIN_MS <= ms <= MAX_MS else None


def format_ms(ms: int) -> str:
    """1741975325512 -> `"2025-03-14T18:02:05.512Z"`; outside years 1-9999 the nearest end of that range
    (never reached by times `parse_ms` gave)."""
    moment = _EPOCH + timedelta(milliseconds=min(max(ms, MIN_MS), MAX_MS))
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
            f"{moment.second:02d}.{moment.microsecond // 1000:03d}Z")
