"""Through the real drain job: a vehicle webhook naming an unknown charger -> look-up -> at-home event.

Needs the worker wiring of `worker.enode.hooks` (a `WorkerContext.enode` field, built by `bootstrap`,
called by `worker.ingest.drain` after each batch and by the pump); skipped until that wiring exists.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import redis
from prometheus_client import CollectorRegistry

from plugwatch import keys
from simulator.fake_enode import FakeEnode
from tests.support.enode_fixtures import enode_settings
from tests.support.enode_objects import charger, vehicle
from tests.support.event_schema import stream_events
from tests.support.servers import ThreadedUvicorn
from worker.bootstrap import bootstrap
from worker.enode.observe import as_event
from worker.ingest import drain as ingest

pytest_plugins = ("tests.support.enode_fixtures",)

UPDATED = "2025-03-14T18:02:05.000Z"


def deliver(connection: redis.Redis, delivery_id: str, vehicle_updated: str) -> None:
    """One delivery in the ingest stream, as the receiver writes it: v1 plugged into c1, at L1."""
    obj = vehicle("v1", "u1", plugged_in_charger_id="c1", location_id="L1", updated=vehicle_updated)
    event = as_event("vehicle", obj, datetime.now(UTC))
    connection.xadd(keys.INGEST_STREAM, {"d": delivery_id, "b": orjson.dumps([event]),
                                         "t": int(time.time() * 1000)})


def emitted(connection: redis.Redis) -> list[dict[str, Any]]:
    return stream_events(connection)


def test_drain_looks_up_an_unknown_charger_once_and_emits_at_home(
        fake: FakeEnode, server: ThreadedUvicorn, real_redis: redis.Redis, redis_url: str) -> None:
    fake.chargers["c1"] = charger("c1", "u1", location_id="L1", plugged_in_vehicle_id="v1", updated=UPDATED)
    registry = CollectorRegistry()
    context = bootstrap(enode_settings(server.url, redis_url=redis_url), registry=registry,
                        connection=real_redis, consumer="test")
    try:
        deliver(real_redis, "d1", UPDATED)
        drained = ingest.drain(context)
        assert [(e["type"], e["vehicleId"], e["chargerId"], e["locationId"]) for e in emitted(real_redis)] == [
            ("vehicle.plugged_in_at_home", "v1", "c1", "L1")]
        assert drained.emitted == 1
        assert registry.get_sample_value("plugwatch_emitted_events_total",
                                         {"type": "vehicle.plugged_in_at_home"}) == 1
        deliver(real_redis, "d2", "2025-03-14T18:10:00.000Z")
        ingest.drain(context)
        assert [c.path for c in fake.api_calls()] == ["/chargers/c1"]  # known now: no second call
        context.enode.pump()
        assert registry.get_sample_value("plugwatch_reconcile_suggested") == 0
    finally:
        context.close()
