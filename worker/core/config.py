"""The core's tunables, handed in by the shells (built from `PLUGWATCH_ACTION_MEMORY_SECONDS` and
`PLUGWATCH_MAX_CLOCK_SKEW_SECONDS`, and the Redis epoch the store commits under: `plugwatch.epoch`); the core
itself reads no environment and no clock."""

from __future__ import annotations

import msgspec

from worker.core.state import Vehicle


class CoreConfig(msgspec.Struct, frozen=True):
    # Terminal actions are remembered (to recognise repeats) for at least this long, counted in receipt time:
    # longer than Enode retries a delivery (about 26 hours).
    action_memory_seconds: int = 72 * 3600
    # An Enode timestamp further than this ahead of its delivery's receipt time is clamped to the receipt time.
    max_clock_skew_seconds: int = 300
    # A vehicle plugwatch starts tracking numbers its events from here (its first event has `sequence_base` + 1);
    # one already tracked counts on from its own `sequence`. The store sets the epoch's base (Unix ms of the
    # epoch's start), so the numbering goes on increasing after Redis lost every vehicle's state.
    sequence_base: int = 0
    # State was lost (the epoch began as `lost_state`): a vehicle tracked from now on announces its first
    # decided at-home status once, also when it is "not at home" (`unplugged_from_home`, reason `state_lost`).
    announce_first_status: bool = False

    def new_vehicle(self) -> Vehicle:
        """A vehicle seen for the first time."""
        return Vehicle(sequence=self.sequence_base, announce=self.announce_first_status)


DEFAULT_CONFIG = CoreConfig()
