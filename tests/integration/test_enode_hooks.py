"""The worker's entry points into the Enode area: look-up after a batch, reconcile advice in the pump."""

from __future__ import annotations

from datetime import UTC, datetime

import fakeredis
import pytest
import redis
from prometheus_client import CollectorRegistry
from redis.backoff import NoBackoff
from redis.retry import Retry

from plugwatch import keys
from plugwatch.settings import Settings
from simulator.fake_enode import FakeEnode
from tests.support.enode_fixtures import enode_settings
from tests.support.enode_objects import charger, vehicle
from tests.support.servers import ThreadedUvicorn, free_port
from worker.core import Observation
from worker.enode.hooks import build_hooks
from worker.enode.observe import observations
from worker.ingest.store import Store

UPDATED = "2025-03-14T18:02:05.000Z"
pytest_plugins = ("tests.support.enode_fixtures",)


@pytest.fixture
def fake() -> FakeEnode:
    fake = FakeEnode()
    fake.chargers["c1"] = charger("c1", "u1", location_id="L1", plugged_in_vehicle_id="v1", updated=UPDATED)
    return fake


def plugged_in_batch() -> list[Observation]:
    objects = [vehicle("v1", "u1", plugged_in_charger_id="c1", location_id="L1", updated=UPDATED)]
    return observations("vehicle", objects, datetime.fromisoformat(UPDATED))


def test_after_batch_looks_up_the_unknown_charger_and_the_at_home_event_reaches_the_stream(
        fake: FakeEnode, server: ThreadedUvicorn, real_redis: redis.Redis, redis_url: str) -> None:
    store = Store(real_redis)
    hooks = build_hooks(enode_settings(server.url, redis_url=redis_url), real_redis, store, CollectorRegistry(),
                        deliver=lambda: None)
    result = hooks.after_batch(store.apply_batch(plugged_in_batch()))
    hooks.close()
    assert result is not None
    assert [e.type.value for e in result.events] == ["vehicle.plugged_in_at_home"]
    assert real_redis.xlen(keys.EVENTS_STREAM) == 1
    assert len(fake.calls("GET", "/chargers/c1")) == 1


def test_without_credentials_after_batch_does_nothing(real_redis: redis.Redis) -> None:
    hooks = build_hooks(Settings(), real_redis, Store(real_redis), CollectorRegistry(), deliver=lambda: None)
    assert hooks.lookup is None
    assert hooks.after_batch(Store(real_redis).apply_batch(plugged_in_batch())) is None


def test_a_crashing_lookup_or_pump_is_logged_not_raised(server: ThreadedUvicorn) -> None:
    """Redis is unreachable: the look-up cannot claim its rate limit and the advisor cannot read the heartbeat."""
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    settings = enode_settings(server.url)
    registry = CollectorRegistry()
    hooks = build_hooks(settings, dead, Store(dead), registry, deliver=lambda: None)
    committed = Store(fakeredis.FakeRedis()).apply_batch(plugged_in_batch())  # a vehicle on an unknown charger
    assert hooks.after_batch(committed) is None
    hooks.pump()
    assert registry.get_sample_value("plugwatch_reconcile_suggested") == 0
    hooks.close()


def test_pump_exports_the_reconcile_suggestion(real_redis: redis.Redis) -> None:
    registry = CollectorRegistry()
    hooks = build_hooks(Settings(), real_redis, Store(real_redis), registry, deliver=lambda: None)
    real_redis.hset(keys.HEARTBEAT, mapping={"at": datetime.now(UTC).timestamp() - 7200, "pending_events": 0})
    hooks.pump()
    assert registry.get_sample_value("plugwatch_reconcile_suggested") == 1
