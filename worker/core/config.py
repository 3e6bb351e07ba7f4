"""The core's tunables, handed in by the shells (built from `PLUGWATCH_ACTION_MEMORY_SECONDS` and
`PLUGWATCH_MAX_CLOCK_SKEW_SECONDS`); the core itself reads no environment and no clock."""

from __future__ import annotations

import msgspec


class CoreConfig(msgspec.Struct, frozen=True):
    # Terminal actions are remembered (to recognise repeats) for at least this long, counted in receipt time:
    # longer than Enode retries a delivery (about 26 hours).
    action_memory_seconds: int = 72 * 3600
    # An Enode timestamp further than this ahead of its delivery's receipt time is clamped to the receipt time.
    max_clock_skew_seconds: int = 300


DEFAULT_CONFIG = CoreConfig()
