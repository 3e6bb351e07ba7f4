"""A worker process serves its Prometheus metrics (names are a contract) on PLUGWATCH_METRICS_PORT."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from plugwatch import ingest_arming
from tests.support.eventlog import START, Delivery, charger_event, feed, vehicle_event
from tests.support.servers import free_port, wait_until
from tests.support.workers import drained, start_worker

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


def test_worker_metrics_count_events_emissions_and_queues(redis_url: str, real_redis: redis.Redis,
                                                          tmp_path: Path) -> None:
    at = START + timedelta(minutes=1)
    events = [charger_event("usr-1", "chg-1", at, vehicle="veh-1", location="home"),
              vehicle_event("usr-1", "veh-1", at, charger="chg-1", location="home"),
              {"event": "user:vehicle:updated", "createdAt": "2025-03-14T18:00:00Z", "version": "2024-10-01"}]
    feed(real_redis, [Delivery("d1", orjson.dumps(events))])
    ingest_arming.arm(real_redis, real_redis)
    port = free_port()
    worker = start_worker(redis_url, tmp_path / "worker.log", PLUGWATCH_METRICS_PORT=str(port))
    try:
        wait_until(lambda: drained(real_redis), timeout=20, message="the worker did not drain")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        worker.stop()

    for line in ('plugwatch_worker_events_total{kind="vehicle",outcome="applied"} 1.0',
                 'plugwatch_worker_events_total{kind="charger",outcome="applied"} 1.0',
                 'plugwatch_worker_events_total{kind="vehicle",outcome="quarantined"} 1.0',
                 'plugwatch_emitted_events_total{type="vehicle.plugged_in_at_home"} 1.0',
                 "plugwatch_worker_deliveries_total 1.0",
                 "plugwatch_worker_store_conflicts_total 0.0",
                 "plugwatch_worker_ordered_entries_total 0.0",
                 'plugwatch_queue_depth{queue="ingest"} 0.0',
                 "plugwatch_quarantine_entries 1.0"):
        assert line in text, line
    assert "plugwatch_worker_batch_seconds_count 1.0" in text
