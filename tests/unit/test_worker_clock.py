"""The drain and Enode's clocks: receipt time from the ingest entry, skewed timestamps counted, and an
instant Python cannot represent quarantined as its one event (never a poisoned delivery).

Every test runs against fakeredis and against the suite's private redis-server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
import redis
from prometheus_client import CollectorRegistry

from plugwatch import keys, quarantine
from plugwatch.settings import CoreSettings, ProcessSettings, Settings
from tests.support.event_schema import stream_events
from tests.support.eventlog import START, Delivery, action_event, charger_event, feed, vehicle_event
from worker.bootstrap import WorkerContext, bootstrap
from worker.core import decode_state
from worker.core.memory import action_key
from worker.ingest import drain as ingest
from worker.ingest.entries import received_at_ms

USER, VEHICLE, CHARGER, HOME = "usr-1", "veh-1", "chg-1", "loc-home"
RECEIVED_MS = int((START + timedelta(hours=1)).timestamp() * 1000)


@pytest.fixture(params=["fake_redis", "real_redis"])
def connection(request: pytest.FixtureRequest) -> redis.Redis:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


@pytest.fixture
def context(connection: redis.Redis) -> Iterator[WorkerContext]:
    settings = Settings(process=ProcessSettings(redis_url="redis://unused"),
                        core=CoreSettings(action_memory_seconds=3600, max_clock_skew_seconds=60))
    built = bootstrap(settings, registry=CollectorRegistry(), connection=connection, consumer="c1")
    yield built
    built.close()


def delivery(delivery_id: str, *events: dict[str, Any]) -> Delivery:
    return Delivery(delivery_id, orjson.dumps(list(events)))


def emitted(connection: redis.Redis) -> list[dict[str, Any]]:
    return stream_events(connection)


def sample(context: WorkerContext, name: str, **labels: str) -> float:
    return context.metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_far_future_timestamp_is_clamped_to_the_entry_receipt_time_and_counted(
        context: WorkerContext, connection: redis.Redis) -> None:
    skewed = vehicle_event(USER, VEHICLE, START + timedelta(days=365 * 70), charger=CHARGER, location=HOME)
    feed(connection, [delivery("d1", charger_event(USER, CHARGER, START, vehicle=None, location=HOME), skewed)],
         received_ms=RECEIVED_MS)

    ingest.drain(context)

    [event] = emitted(connection)
    assert event["type"] == "vehicle.plugged_in_at_home"
    assert event["occurredAt"] == "2025-03-14T07:00:00.000Z", "the entry's t, not 2095"
    assert sample(context, "plugwatch_worker_clock_skew_total", kind="vehicle") == 1
    assert sample(context, "plugwatch_worker_clock_skew_total", kind="charger") == 0


def test_a_year_10000_instant_quarantines_its_event_alone(context: WorkerContext, connection: redis.Redis) -> None:
    broken = vehicle_event("usr-2", "veh-2", START, charger=CHARGER, location=HOME)
    broken["vehicle"]["chargeState"]["lastUpdated"] = "9999-12-31T23:59:59-23:59"
    good = [charger_event(USER, CHARGER, START, vehicle=None, location=HOME),
            vehicle_event(USER, VEHICLE, START, charger=CHARGER, location=HOME)]
    feed(connection, [delivery("d1", good[0], broken, good[1])], received_ms=RECEIVED_MS)

    ingest.drain(context)
    ingest.drain(context)  # nothing is left to retry: the delivery was processed, not poisoned

    [entry] = quarantine.entries(connection)
    assert (entry.delivery_id, entry.event_index) == ("d1", 1)
    assert "lastUpdated" in entry.reason
    assert [event["userId"] for event in emitted(connection)] == [USER]
    assert connection.xlen(keys.INGEST_STREAM) == 0
    assert connection.get(keys.user_state_key("usr-2")) is None


def test_the_action_memory_is_measured_in_the_entries_receipt_times(
        context: WorkerContext, connection: redis.Redis) -> None:
    """Settings' PLUGWATCH_ACTION_MEMORY_SECONDS (here an hour) reaches the core through the store."""
    def failed(action_id: str, minute: int) -> dict[str, Any]:
        return action_event(USER, action_id, START + timedelta(minutes=minute), target_type="vehicle",
                            target=VEHICLE, kind="START", state="FAILED", failure="NO_RESPONSE")

    feed(connection, [delivery("d1", failed("a1", 0))], received_ms=RECEIVED_MS)
    feed(connection, [delivery("d2", failed("a1", 0))], received_ms=RECEIVED_MS + 60_000)  # a repeat
    feed(connection, [delivery("d3", failed("a2", 1))], received_ms=RECEIVED_MS + 3_662_000)
    ingest.drain(context)

    assert [event["data"]["actionId"] for event in emitted(connection)] == ["a1", "a2"]
    state = decode_state(connection.get(keys.user_state_key(USER)))  # type: ignore[arg-type]
    assert state.actions == {action_key("a2"): (RECEIVED_MS + 3_662_000) // 1000}, "a1 (last at +60 s) is forgotten"


def test_an_entry_without_a_usable_receipt_time_is_taken_as_received_now() -> None:
    before = int(time.time() * 1000)
    assert received_at_ms({b"t": b"1741939200000"}) == 1_741_939_200_000
    for fields in ({}, {b"t": b"soon"}):
        assert before <= received_at_ms(fields) <= int(time.time() * 1000)
