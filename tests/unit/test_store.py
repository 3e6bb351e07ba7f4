"""The store: batch apply, one compare-and-set commit with events and acks, retry on conflict.

Every test runs twice: against fakeredis (with Lua) and against the suite's private redis-server.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
import redis

from plugwatch import keys
from plugwatch.settings import Settings
from tests.support.event_schema import stream_bodies, stream_events
from tests.support.eventlog import (
    START,
    action_event,
    charger_event,
    epoch_config,
    generate,
    received_at,
    reference,
    vehicle_event,
)
from tests.support.workers import stored_states
from worker.core import Observation, Outcome, decode_event, decode_state
from worker.ingest.store import Ack, Store

USER, VEHICLE, CHARGER, HOME = "usr-1", "veh-1", "chg-1", "loc-home"
URLS = ("https://a.example/hook", "https://b.example/hook")


@pytest.fixture(params=["fake_redis", "real_redis"])
def connection(request: pytest.FixtureRequest) -> redis.Redis:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def observe(*events: dict[str, Any]) -> list[Observation]:
    decoded = [decode_event(event, received_at(event)) for event in events]
    return [item for item in decoded if not hasattr(item, "reason")]  # type: ignore[misc]


def plug_in_at_home(minute: int = 0, user: str = USER) -> list[Observation]:
    at = START + timedelta(minutes=minute)
    return observe(
        charger_event(user, CHARGER, at, vehicle=VEHICLE, location=HOME),
        vehicle_event(user, VEHICLE, at, charger=CHARGER, location=HOME),
    )


def unplug(minute: int, user: str = USER) -> list[Observation]:
    return observe(vehicle_event(user, VEHICLE, START + timedelta(minutes=minute), charger=None, location=HOME))


def test_batch_commits_state_and_events_to_the_events_stream_and_every_outbox(connection: redis.Redis) -> None:
    result = Store(connection, URLS).apply_batch(plug_in_at_home())

    assert [event.type.value for event in result.events] == ["vehicle.plugged_in_at_home"]
    emitted = stream_events(connection)
    assert [event["id"] for event in emitted] == [result.events[0].id]
    for url in URLS:
        assert stream_events(connection, keys.outbox_stream(url)) == emitted
    state = decode_state(connection.get(keys.user_state_key(USER)))
    assert state.vehicles[VEHICLE].home is not None


def test_events_keep_observation_order_across_users(connection: redis.Redis) -> None:
    observations = [*plug_in_at_home(0, "usr-a"), *plug_in_at_home(0, "usr-b"), *unplug(5, "usr-a")]
    result = Store(connection).apply_batch(observations)

    assert [(event.user_id, event.type.value) for event in result.events] == [
        ("usr-a", "vehicle.plugged_in_at_home"), ("usr-b", "vehicle.plugged_in_at_home"),
        ("usr-a", "vehicle.unplugged_from_home"),
    ]
    assert [event["id"] for event in stream_events(connection)] == [event.id for event in result.events]


def test_reapplying_a_batch_emits_nothing_and_writes_nothing(connection: redis.Redis) -> None:
    store = Store(connection, URLS)
    store.apply_batch([*plug_in_at_home(), *unplug(10)])
    stored = connection.get(keys.user_state_key(USER))

    again = store.apply_batch([*plug_in_at_home(), *unplug(10)])

    assert again.events == ()
    assert {outcome for _, outcome in again.outcomes} <= {Outcome.DUPLICATE, Outcome.STALE}
    assert connection.get(keys.user_state_key(USER)) == stored
    assert connection.xlen(keys.EVENTS_STREAM) == 2


def test_outcomes_name_each_observation_kind(connection: redis.Redis) -> None:
    result = Store(connection).apply_batch([*plug_in_at_home(), *unplug(1)])

    assert result.outcomes == (("charger", Outcome.APPLIED), ("vehicle", Outcome.APPLIED),
                               ("vehicle", Outcome.APPLIED))


def delete_both(minute: int = 30) -> list[Observation]:
    at = START + timedelta(minutes=minute)
    return observe(vehicle_event(USER, VEHICLE, at, charger=None, location=None, verb="deleted"),
                   charger_event(USER, CHARGER, at, vehicle=None, location=None, verb="deleted"))


def test_deleting_every_device_leaves_only_an_expiring_tombstone(connection: redis.Redis) -> None:
    store = Store(connection, tombstone_ttl_ms=60_000)
    store.apply_batch(plug_in_at_home())

    result = store.apply_batch(delete_both())

    assert [event.data["reason"] for event in result.events] == ["vehicle_deleted"]
    state = decode_state(connection.get(keys.user_state_key(USER)))
    assert (state.facts()["vehicles"], state.chargers, set(state.tombstones)) == ({}, {}, {VEHICLE, CHARGER})
    assert state.retired(VEHICLE), "the deleted vehicle keeps only its sequence"
    assert 0 < connection.pttl(keys.user_state_key(USER)) <= 60_000


def test_a_late_update_about_a_deleted_vehicle_does_not_bring_it_back(connection: redis.Redis) -> None:
    store = Store(connection)
    store.apply_batch(plug_in_at_home())
    store.apply_batch(delete_both())

    late = store.apply_batch(plug_in_at_home(minute=10))  # older than the deletion, delivered after it

    assert late.events == ()
    state = decode_state(connection.get(keys.user_state_key(USER)))
    assert state.facts()["vehicles"] == {}
    assert state.retired(VEHICLE)


def test_a_failed_action_on_an_unknown_charger_is_emitted_once_and_remembered(connection: redis.Redis) -> None:
    """No device of the user is known yet: the state has nothing to keep but the handled action's id."""
    failed = observe(action_event(USER, "act-1", START, target_type="charger", target=CHARGER, kind="START",
                                  state="FAILED", failure="NO_RESPONSE"))
    store = Store(connection, tombstone_ttl_ms=60_000)

    first = store.apply_batch(failed)
    again = store.apply_batch(failed)

    assert [event.type.value for event in first.events] == ["control.failed"]
    assert again.events == ()
    assert [event["type"] for event in stream_events(connection)] == ["control.failed"]
    assert 0 < connection.pttl(keys.user_state_key(USER)) <= 60_000


def test_a_device_discovered_after_deletions_makes_the_key_permanent_again(connection: redis.Redis) -> None:
    store = Store(connection)
    store.apply_batch([*plug_in_at_home(), *delete_both()])
    at = START + timedelta(hours=2)

    store.apply_batch(observe(vehicle_event(USER, "veh-2", at, charger=None, location=None, verb="discovered")))

    assert connection.pttl(keys.user_state_key(USER)) == -1


def test_acknowledged_entries_leave_the_stream_in_the_same_commit(connection: redis.Redis) -> None:
    connection.xgroup_create(keys.INGEST_STREAM, keys.INGEST_GROUP, id="0", mkstream=True)
    first = connection.xadd(keys.INGEST_STREAM, {"d": "a", "b": b"[]", "t": 0})
    second = connection.xadd(keys.INGEST_STREAM, {"d": "b", "b": b"[]", "t": 0})
    connection.xreadgroup(keys.INGEST_GROUP, "c1", {keys.INGEST_STREAM: ">"})

    Store(connection).apply_batch(plug_in_at_home(), Ack([first, second]))

    assert connection.xlen(keys.INGEST_STREAM) == 0
    assert connection.xpending(keys.INGEST_STREAM, keys.INGEST_GROUP)["pending"] == 0


def test_an_empty_batch_still_acknowledges(connection: redis.Redis) -> None:
    connection.xgroup_create(keys.INGEST_STREAM, keys.INGEST_GROUP, id="0", mkstream=True)
    entry = connection.xadd(keys.INGEST_STREAM, {"d": "a", "b": b"[]", "t": 0})
    connection.xreadgroup(keys.INGEST_GROUP, "c1", {keys.INGEST_STREAM: ">"})

    assert Store(connection).apply_batch([], Ack([entry])).events == ()
    assert connection.xlen(keys.INGEST_STREAM) == 0


class Interfering:
    """A Redis client whose first MGET is followed by another worker's commit to the same users."""

    def __init__(self, client: redis.Redis, interference: list[Observation]) -> None:
        self._client = client
        self._interference = interference

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def mget(self, *args: Any, **kwargs: Any) -> Any:
        values = self._client.mget(*args, **kwargs)
        if self._interference:
            Store(self._client).apply_batch(self._interference)
            self._interference = []
        return values


def test_a_conflicting_commit_is_retried_on_fresh_state(connection: redis.Redis) -> None:
    """Another worker plugs the vehicle in between our read and our commit: we see its state, not ours."""
    store = Store(Interfering(connection, plug_in_at_home()), URLS)  # type: ignore[arg-type]

    result = store.apply_batch(unplug(10))

    assert result.conflicts == 1
    assert [event.type.value for event in result.events] == ["vehicle.unplugged_from_home"]
    assert [event["type"] for event in stream_events(connection)] == [
        "vehicle.plugged_in_at_home", "vehicle.unplugged_from_home"]
    assert decode_state(connection.get(keys.user_state_key(USER))).vehicles[VEHICLE].home is None


def test_a_key_created_after_it_was_read_as_absent_is_a_conflict(connection: redis.Redis) -> None:
    store = Store(Interfering(connection, plug_in_at_home()), URLS)  # type: ignore[arg-type]

    result = store.apply_batch(plug_in_at_home())

    assert result.conflicts == 1
    assert result.events == ()  # the other worker already emitted it; we must not emit it again
    assert connection.xlen(keys.EVENTS_STREAM) == 1


def test_a_generated_log_ends_in_the_reference_state_and_events(connection: redis.Redis) -> None:
    events = generate(7, users=20, events_per_user=30)
    expected_states, expected_events = reference(events, epoch_config(connection))
    store = Store(connection)
    observations = observe(*events)
    rng = random.Random(7)
    position = 0
    while position < len(observations):
        size = rng.randint(1, 60)
        store.apply_batch(observations[position:position + size])
        position += size

    assert {user: state.facts() for user, state in stored_states(connection).items()} == {
        user: state.facts() for user, state in expected_states.items()}
    assert stream_bodies(connection) == expected_events


def test_the_events_stream_keeps_about_the_configured_maxlen(connection: redis.Redis) -> None:
    """PLUGWATCH_EVENTS_STREAM_MAXLEN reaches the commit: the stream is trimmed (approximately) to it, newest kept."""
    events = generate(3, users=60, events_per_user=40)
    expected = reference(events, epoch_config(connection))[1]
    settings = Settings.from_env({"PLUGWATCH_EVENTS_STREAM_MAXLEN": "100"}, require_enode_secret=False)
    store = Store.from_settings(connection, settings)
    observations = observe(*events)
    for position in range(0, len(observations), 50):
        store.apply_batch(observations[position:position + 50])

    kept = stream_bodies(connection)
    assert len(expected) > 400
    assert 100 <= len(kept) < 300  # MAXLEN ~ trims whole stream nodes (100 entries each by default)
    assert kept == expected[-len(kept):]
