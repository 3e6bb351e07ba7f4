"""Look-up of chargers plugwatch has never seen: a fake Enode on a real port, the store on a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis

from plugwatch import keys
from plugwatch.settings import Settings
from simulator.fake_enode import FakeEnode
from tests.support.enode_fixtures import enode_settings
from tests.support.enode_objects import charger, vehicle
from tests.support.servers import ThreadedUvicorn
from worker.core import Observation
from worker.enode.lookup import ChargerLookup
from worker.enode.observe import observations
from worker.ingest.store import Store

AT = datetime(2025, 3, 14, 18, 2, 5, tzinfo=UTC)
UPDATED = "2025-03-14T18:02:05.000Z"

pytest_plugins = ("tests.support.enode_fixtures",)


@pytest.fixture
def fake() -> FakeEnode:
    fake = FakeEnode()
    fake.chargers["c1"] = charger("c1", "u1", location_id="L1", plugged_in_vehicle_id="v1", updated=UPDATED)
    return fake


@pytest.fixture
def store(real_redis: redis.Redis) -> Store:
    return Store(real_redis)


@pytest.fixture
def lookup(server: ThreadedUvicorn, real_redis: redis.Redis, store: Store,
           redis_url: str) -> Iterator[ChargerLookup]:
    settings = enode_settings(server.url, redis_url=redis_url)
    built = ChargerLookup.from_settings(settings, real_redis, store, deliver=lambda: None)
    assert built is not None
    yield built
    built.close()


def plugged_in(vehicle_id: str = "v1", charger_id: str = "c1") -> list[Observation]:
    """A vehicle webhook: plugged into `charger_id`, at Location L1."""
    return observations("vehicle", [vehicle(vehicle_id, "u1", plugged_in_charger_id=charger_id,
                                            location_id="L1", updated=UPDATED)], AT)


def test_an_unknown_charger_is_fetched_once_and_at_home_follows(
        fake: FakeEnode, store: Store, lookup: ChargerLookup) -> None:
    committed = store.apply_batch(plugged_in())
    assert committed.events == ()  # the charger's Location is unknown: no at-home yet
    result = lookup.after_batch(committed, datetime.now(UTC))
    assert result is not None
    [event] = result.events
    assert (event.type.value, event.vehicle_id, event.charger_id, event.location_id) == (
        "vehicle.plugged_in_at_home", "v1", "c1", "L1")
    assert [c.path for c in fake.api_calls()] == ["/chargers/c1"]


def test_a_known_charger_is_not_fetched(fake: FakeEnode, store: Store, lookup: ChargerLookup) -> None:
    store.apply_batch(observations("charger", [fake.chargers["c1"]], AT))
    committed = store.apply_batch(plugged_in())
    assert len(committed.events) == 1  # at home straight from the webhooks
    assert lookup.after_batch(committed, datetime.now(UTC)) is None
    assert fake.api_calls() == []


def test_an_unknown_charger_is_looked_up_at_most_once_per_ttl_across_lookups(
        fake: FakeEnode, store: Store, lookup: ChargerLookup, real_redis: redis.Redis) -> None:
    """A charger Enode does not return (404) stays unknown; the rate limit still allows one call."""
    batch = plugged_in(charger_id="c-gone")
    committed = store.apply_batch(batch)
    for _ in range(3):
        assert lookup.after_batch(committed, datetime.now(UTC)) is None
    assert [c.path for c in fake.api_calls()] == ["/chargers/c-gone"]
    assert 0 < real_redis.ttl(keys.enode_lookup_key("c-gone")) <= 15 * 60


def test_a_failing_api_skips_the_lookup_without_raising(
        fake: FakeEnode, store: Store, lookup: ChargerLookup) -> None:
    fake.fail("GET", "/chargers/c1", 503, times=10)
    batch = plugged_in()
    committed = store.apply_batch(batch)
    assert lookup.after_batch(committed, datetime.now(UTC)) is None
    assert len(fake.calls("GET", "/chargers/c1")) == 2  # the look-up's short retry policy


def test_without_credentials_there_is_no_lookup(real_redis: redis.Redis, store: Store) -> None:
    assert ChargerLookup.from_settings(Settings(), real_redis, store, deliver=lambda: None) is None



def many_plugged_in(fake: FakeEnode, count: int) -> list[Observation]:
    """`count` vehicles of u1, each plugged into its own charger Enode knows (at L1) and plugwatch does not."""
    batch: list[Observation] = []
    for n in range(count):
        fake.chargers[f"c{n}"] = charger(f"c{n}", "u1", location_id="L1", plugged_in_vehicle_id=f"v{n}",
                                         updated=UPDATED)
        batch += plugged_in(f"v{n}", f"c{n}")
    return batch


def test_one_call_fetches_at_most_max_fetches_and_the_rest_come_with_a_later_batch(
        fake: FakeEnode, store: Store, lookup: ChargerLookup) -> None:
    batch = many_plugged_in(fake, 7)
    committed = store.apply_batch(batch)
    first = lookup.after_batch(committed, datetime.now(UTC))
    assert len(fake.api_calls()) == 5
    second = lookup.after_batch(committed, datetime.now(UTC))
    assert len(fake.api_calls()) == 7
    assert lookup.after_batch(committed, datetime.now(UTC)) is None
    assert first is not None
    assert second is not None
    assert len(first.events) + len(second.events) == 7  # every vehicle is at home, once
    assert sorted(c.path for c in fake.api_calls()) == sorted(f"/chargers/c{n}" for n in range(7))


def test_a_transient_failure_ends_the_calls_lookups_and_the_next_batch_goes_on(
        fake: FakeEnode, store: Store, lookup: ChargerLookup) -> None:
    batch = many_plugged_in(fake, 3)
    committed = store.apply_batch(batch)
    fake.fail("GET", "/chargers/c0", 503, times=2)
    assert lookup.after_batch(committed, datetime.now(UTC)) is None
    assert [c.path for c in fake.api_calls()] == ["/chargers/c0", "/chargers/c0"]
    result = lookup.after_batch(committed, datetime.now(UTC))
    assert result is not None
    assert sorted(e.vehicle_id or "" for e in result.events) == ["v1", "v2"]  # c0 waits for its TTL
