"""Bounded memory: what one tracked vehicle with its charger costs in a real Redis, and what deletes leave."""

from __future__ import annotations

from datetime import timedelta

import redis

from plugwatch import keys
from tests.support.eventlog import START, action_event, charger_event, vehicle_event
from tests.unit.test_store import observe
from worker.ingest.store import TOMBSTONE_TTL_MS, Store

USER = "3f1c0de7-a44c-4c1e-9a0e-2d5f3e8a9c10"  # ids as long as Enode's UUIDs
VEHICLE = "b3f1c0de-7a44-4c1e-9a0e-2d5f3e8a9c10"
CHARGER = "9c2e5a71-1f0b-4d8e-b6a3-55e0c4f1d2aa"
HOME = "5a0d2c3e-8f61-4b7a-a1d9-0c4e7b2f6e31"


def busy_history(actions: int = 9) -> list[object]:
    """Plugged in at home after `actions` failed actions, all remembered: a large realistic state."""
    events = []
    for number in range(actions):
        at = START + timedelta(minutes=number)
        events.append(action_event(USER, f"1f7c9a52-3d0e-4b8a-9e61-7a2b4c5d6e{number:02d}", at,
                                   target_type="vehicle", target=VEHICLE, kind="START", state="FAILED",
                                   failure="NO_RESPONSE"))
    at = START + timedelta(hours=1)
    events += [charger_event(USER, CHARGER, at, vehicle=VEHICLE, location=HOME),
               vehicle_event(USER, VEHICLE, at, charger=CHARGER, location=HOME)]
    return observe(*events)  # type: ignore[arg-type]


def test_a_vehicle_with_its_charger_and_20_remembered_actions_takes_at_most_one_kilobyte(
        real_redis: redis.Redis) -> None:
    """Issue 11's budget: ~20 actions per vehicle per 72 h, every one remembered (ten failure times too)."""
    Store(real_redis).apply_batch(busy_history(actions=20))  # type: ignore[arg-type]
    assert len(Store(real_redis).load(USER).actions) == 20

    usage = real_redis.memory_usage(keys.user_state_key(USER), samples=0)

    assert usage is not None
    assert usage <= 1024, usage


def test_deleted_devices_leave_only_a_small_expiring_tombstone(real_redis: redis.Redis) -> None:
    store = Store(real_redis)
    store.apply_batch(busy_history())  # type: ignore[arg-type]
    at = START + timedelta(hours=2)

    store.apply_batch(observe(vehicle_event(USER, VEHICLE, at, charger=None, location=None, verb="deleted"),
                              charger_event(USER, CHARGER, at, vehicle=None, location=None, verb="deleted")))

    key = keys.user_state_key(USER)
    assert real_redis.keys(keys.USER_STATE_PREFIX + "*") == [key.encode()]
    assert 0 < real_redis.pttl(key) <= TOMBSTONE_TTL_MS
    usage = real_redis.memory_usage(key, samples=0)
    assert usage is not None
    assert usage <= 1024, usage  # tombstones and the ids of the last actions, until it expires
