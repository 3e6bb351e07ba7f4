"""Simulated time: integer milliseconds since the epoch, formatted the way Enode writes timestamps."""

from __future__ import annotations

import random
from datetime import UTC, datetime

BASE_MS = 1_741_975_200_000  # 2025-03-14T18:00:00.000Z


def iso(ms: int) -> str:
    """1741975325512 -> "2025-03-14T18:02:05.512Z" (Enode's format: UTC, milliseconds, Z)."""
    moment = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_iso(value: str) -> int:
    """The inverse of `iso` for any ISO-8601 UTC time (with or without fraction or Z)."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return round(parsed.timestamp() * 1000)


class Clock:
    """One user's clock: every `tick()` is strictly later than the previous one.

    All timestamps of one user's devices come from one clock, so every device's every field is strictly
    increasing over the user's story.
    """

    def __init__(self, rng: random.Random, start_ms: int) -> None:
        self._rng = rng
        self.now = start_ms

    def tick(self, min_ms: int = 1_000, max_ms: int = 120_000) -> int:
        self.now += self._rng.randint(min_ms, max_ms)
        return self.now
