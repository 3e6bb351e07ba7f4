"""The store's epoch: a marker written on first use, checked by every commit; a wipe is detected and said.

Every test runs twice: against fakeredis (with Lua) and against the suite's private redis-server.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import redis

from plugwatch import epoch, keys
from tests.support.eventlog import START, vehicle_event
from tests.unit.test_store import CHARGER, HOME, USER, VEHICLE, observe, plug_in_at_home, stream_events, unplug
from worker.ingest import store as store_module
from worker.ingest.store import Store


class Recorder:
    """Stands in for the store's logger (a cached structlog logger escapes `capture_logs`)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **_fields: self.lines.append((level, event))

    def errors(self) -> list[str]:
        return [event for level, event in self.lines if level == "error"]


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(store_module, "log", recorder)
    return recorder


@pytest.fixture(params=["fake_redis", "real_redis"])
def connection(request: pytest.FixtureRequest) -> redis.Redis:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]



def test_the_first_store_writes_a_first_start_epoch_and_numbers_from_its_base(connection: redis.Redis) -> None:
    store = Store(connection, clock_ms=lambda: 1_000_000)
    result = store.apply_batch(plug_in_at_home())
    current = epoch.read(connection)
    assert current is not None
    assert (current.began, current.sequence_base, current.id) == (epoch.FIRST_START, 1_000_000, store.epoch().id)
    assert [e.sequence for e in result.events] == [1_000_001]


def test_data_without_a_marker_is_an_upgrade_not_a_loss(connection: redis.Redis, logs: Recorder) -> None:
    Store(connection).apply_batch(plug_in_at_home())
    connection.delete(keys.EPOCH)  # as a plugwatch before epochs left it
    store = Store(connection, clock_ms=lambda: 9_000_000_000_000)
    result = store.apply_batch(unplug(5))
    assert store.epoch().began == epoch.EXISTING_DATA
    assert not store.epoch().needs_reconcile
    assert next(e.sequence for e in result.events) < 9_000_000_000_000, "a tracked vehicle counts on"
    assert logs.errors() == []


def test_a_wipe_under_a_running_store_is_detected_logged_and_the_batch_reapplied(connection: redis.Redis,
                                                                                logs: Recorder) -> None:
    store = Store(connection, clock_ms=lambda: 1_000)
    first = store.apply_batch(plug_in_at_home())
    before = store.epoch()
    connection.flushall()
    store._clock_ms = lambda: 5_000  # a later time for the new epoch
    result = store.apply_batch(observe(vehicle_event(USER, VEHICLE, START + timedelta(minutes=9), charger=None,
                                                     location="loc-work")))
    now = epoch.read(connection)
    assert now is not None
    assert (now.began, now.previous, now.sequence_base) == (epoch.LOST_STATE, before.id, 5_000)
    assert now.needs_reconcile
    assert result.state_lost == 1
    assert [(e.type.value, e.data.get("reason"), e.sequence) for e in result.events] == [
        ("vehicle.unplugged_from_home", "state_lost", 5_001)]
    assert result.events[0].sequence > max(e.sequence or 0 for e in first.events)
    assert logs.errors() == ["redis.state_lost"]
    assert stream_events(connection)[0]["data"] == {"reason": "state_lost"}, "the re-applied batch committed"


def test_a_second_store_adopts_the_lost_epoch_without_creating_another(connection: redis.Redis) -> None:
    one, two = Store(connection), Store(connection)
    one.apply_batch(plug_in_at_home())
    two.apply_batch(plug_in_at_home(user="usr-2"))
    connection.flushall()
    one.apply_batch(unplug(5))
    lost = one.epoch()
    result = two.apply_batch(plug_in_at_home(7, user="usr-2"))
    assert two.epoch() == lost
    assert lost.lost
    assert [e.type.value for e in result.events] == ["vehicle.plugged_in_at_home"], "announced once, at home"


def test_a_reconcile_is_recorded_only_on_its_own_epoch(connection: redis.Redis) -> None:
    store = Store(connection)
    store.apply_batch(plug_in_at_home())
    connection.flushall()
    store.apply_batch(unplug(5))
    lost = store.epoch()
    assert not epoch.mark_reconciled(connection, "another", 7)
    assert epoch.mark_reconciled(connection, lost.id, 7)
    now = epoch.read(connection)
    assert now is not None
    assert not now.needs_reconcile
    assert now.reconciled_at_ms == 7


def test_redelivered_observations_in_one_epoch_emit_nothing_again(connection: redis.Redis) -> None:
    store = Store(connection)
    batch = observe(vehicle_event(USER, VEHICLE, START, charger=CHARGER, location=HOME))
    store.apply_batch(batch)
    assert store.apply_batch(batch).events == ()
