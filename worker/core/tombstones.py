"""Deleted devices: a deletion ends what plugwatch knew of a device, not what Enode reports after it. Pure.

A `user:<kind>:deleted` at Enode time D (or reconcile's prune) drops every fact about the device reported
at or before D, and such a fact arriving later (an update Enode sent before the deletion, retried) is stale.
A fact newer than D is applied as usual: the device is linked again under the same id (relinking after
invalidated credentials keeps ids; reconcile's prune may delete a device Enode still has). Deciding by each
fact's Enode time, never by arrival, keeps the state the same in any arrival order.

A tombstone matters only while an update from before the deletion can still arrive, and Enode retries a
delivery for about a day: each is kept for `TOMBSTONE_MEMORY_MS` of the user's Enode time (measured from
the newest timestamp the user's state holds), and at most `MAX_TOMBSTONES` per user, the newest. Forgetting
one can only let an update older than the deletion back in (a device that reappears), never drop a newer one.
A deleted vehicle that had events keeps its `sequence` (`UserState.retired`) as long as its tombstone, so a
vehicle linked again under its id numbers its events on, as DESIGN's `sequence` promises.
"""

from __future__ import annotations

from typing import TypeVar

from msgspec.structs import replace

from worker.core.observations import Fact
from worker.core.state import Charger, UserState, Vehicle

TOMBSTONE_MEMORY_MS = 72 * 3600 * 1000  # longer than Enode's ~26 h of retries, as long as the receiver dedupes
MAX_TOMBSTONES = 64  # ~45 bytes each: a user's state stays small however many devices it deletes in 72 h

DeviceT = TypeVar("DeviceT", Vehicle, Charger)


def live(state: UserState, device_id: str, fact: Fact | None) -> Fact | None:
    """The fact, unless it was reported at or before the device's deletion."""
    deleted_at = state.tombstones.get(device_id)
    if fact is None or deleted_at is None or fact.at > deleted_at:
        return fact
    return None


def forget(device: DeviceT, deleted_at: int) -> DeviceT:
    """The device without the facts reported at or before its deletion."""
    plug = device.plug if device.plug is not None and device.plug.at > deleted_at else None
    location = device.location if device.location is not None and device.location.at > deleted_at else None
    return replace(device, plug=plug, location=location)


def prune(state: UserState, newest: int) -> UserState:
    """Keep the tombstones younger than the memory window, at most MAX_TOMBSTONES (the newest).

    `newest` is the newest Enode time the last change put into the state (a fact or a deletion): older
    changes already pruned by theirs, so the set kept is the same in any arrival order.
    """
    horizon = newest - TOMBSTONE_MEMORY_MS
    if len(state.tombstones) <= MAX_TOMBSTONES and min(state.tombstones.values(), default=horizon) >= horizon:
        return state
    kept = sorted(((at, device_id) for device_id, at in state.tombstones.items() if at >= horizon),
                  reverse=True)[:MAX_TOMBSTONES]
    tombstones = {device_id: at for at, device_id in reversed(kept)}
    vehicles = {vid: v for vid, v in state.vehicles.items() if vid in tombstones or not state.retired(vid)}
    return replace(state, tombstones=tombstones, vehicles=vehicles)
