"""Enode's ISO-8601 timestamps as integer milliseconds since the epoch (comparable, compact, pure)."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_ms(value: object) -> int | None:
    """`"2025-03-14T18:02:05.512Z"` -> 1741975325512; anything unparseable -> None (never raises)."""
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
    return int(parsed.timestamp() * 1000)


def format_ms(ms: int) -> str:
    """1741975325512 -> `"2025-03-14T18:02:05.512Z"`."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
