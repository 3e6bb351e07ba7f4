"""Consecutive failed START/STOP actions per vehicle (pairing guide: ten in a row clear the pairing).

Counted by Enode's `updatedAt`, not arrival order: a failure older than the newest CONFIRMED action does
not count, and a late CONFIRMED only clears the failures before it.
"""

from __future__ import annotations

from msgspec.structs import replace

from worker.core.state import STREAK_THRESHOLD, Vehicle


def record_failure(vehicle: Vehicle, at: int) -> Vehicle:
    if at <= vehicle.confirmed_at:
        return vehicle  # it failed before the last success: not part of the current streak
    times = tuple(sorted((*vehicle.failure_times, at)))[-STREAK_THRESHOLD:]
    return replace(vehicle, failures=vehicle.failures + 1, failure_times=times)


def record_success(vehicle: Vehicle, at: int) -> Vehicle:
    if at <= vehicle.confirmed_at:
        return vehicle
    after = tuple(t for t in vehicle.failure_times if t > at)
    failures = len(after) if len(after) < len(vehicle.failure_times) else vehicle.failures
    return replace(
        vehicle, confirmed_at=at, failure_times=after, failures=failures,
        streak_reported=vehicle.streak_reported and failures >= STREAK_THRESHOLD,
    )
