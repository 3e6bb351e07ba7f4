"""plugwatch.redis_collector: queue depth and age, quarantine size, Enode heartbeat, read at scrape."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from rq import Queue

from plugwatch import ingest_arming, keys, quarantine
from plugwatch.redis_collector import RedisCollector, RQQueue, StreamQueue, default_queues
from tests.support.servers import free_port


def scrape(connection: redis.Redis, **kwargs: Any) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    registry.register(RedisCollector(connection, **kwargs))
    samples = {}
    for family in registry.collect():
        for sample in family.samples:
            samples[(sample.name, sample.labels.get("queue", ""))] = sample.value
    return samples


def test_empty_redis_reports_zero_depths_and_no_heartbeat(real_redis: redis.Redis) -> None:
    samples = scrape(real_redis, clock=lambda: 1000.0)
    for queue in ("ingest", *keys.ALL_QUEUES):
        assert samples[("plugwatch_queue_depth", queue)] == 0
        assert samples[("plugwatch_queue_oldest_age_seconds", queue)] == 0
    assert samples[("plugwatch_quarantine_entries", "")] == 0
    assert samples[("plugwatch_redis_up", "")] == 1
    assert ("plugwatch_enode_heartbeat_age_seconds", "") not in samples


def test_stream_depth_and_age_of_the_oldest_entry(real_redis: redis.Redis) -> None:
    real_redis.xadd(keys.INGEST_STREAM, {"d": "a"}, id="1000000-0")
    real_redis.xadd(keys.INGEST_STREAM, {"d": "b"}, id="1005000-0")
    samples = scrape(real_redis, clock=lambda: 1010.0)
    assert samples[("plugwatch_queue_depth", "ingest")] == 2
    assert samples[("plugwatch_queue_oldest_age_seconds", "ingest")] == 10.0


def test_rq_queue_depth_and_age_of_the_oldest_job(real_redis: redis.Redis) -> None:
    ingest_arming.enqueue_drain(real_redis)
    ingest_arming.enqueue_drain(real_redis)
    job_id = Queue(keys.INGEST_QUEUE, connection=real_redis).job_ids[0]
    enqueued_at = Queue(keys.INGEST_QUEUE, connection=real_redis).fetch_job(job_id).enqueued_at.timestamp()
    samples = scrape(real_redis, clock=lambda: enqueued_at + 42)
    assert samples[("plugwatch_queue_depth", keys.INGEST_QUEUE)] == 2
    assert abs(samples[("plugwatch_queue_oldest_age_seconds", keys.INGEST_QUEUE)] - 42) < 0.01


def test_heartbeat_age_pending_events_and_quarantine_size(real_redis: redis.Redis) -> None:
    real_redis.hset(keys.HEARTBEAT, mapping={"at": "990.5", "pending_events": "12", "created_at": "x"})
    quarantine.add(real_redis, "d", b"x", "invalid_json", now=1.0)
    samples = scrape(real_redis, clock=lambda: 1000.0)
    assert samples[("plugwatch_enode_heartbeat_age_seconds", "")] == 9.5
    assert samples[("plugwatch_enode_pending_events", "")] == 12
    assert samples[("plugwatch_quarantine_entries", "")] == 1


@pytest.mark.parametrize(("stored", "gauge"), [("0.5", 0.5), ("1E3", 1000.0), ("1e400", float("inf"))])
def test_the_pending_events_gauge_reads_any_json_number(real_redis: redis.Redis, stored: str, gauge: float) -> None:
    real_redis.hset(keys.HEARTBEAT, mapping={"at": "990.5", "pending_events": stored, "created_at": "x"})
    assert scrape(real_redis, clock=lambda: 1000.0)[("plugwatch_enode_pending_events", "")] == gauge


def test_more_queues_can_be_added(fake_redis: redis.Redis) -> None:
    """Ops add e.g. outbox streams by passing their own list of queues."""
    fake_redis.xadd("plugwatch:outbox:abc", {"event": "{}"})
    fake_redis.rpush("rq:queue:custom", "job-without-hash")
    samples = scrape(fake_redis, queues=lambda conn: [*default_queues(conn),
                                                         StreamQueue("outbox:abc", "plugwatch:outbox:abc"),
                                                         RQQueue("custom")])
    assert samples[("plugwatch_queue_depth", "outbox:abc")] == 1
    assert samples[("plugwatch_queue_depth", "custom")] == 1
    assert samples[("plugwatch_queue_oldest_age_seconds", "custom")] == 0  # no job hash: age unknown


def test_redis_down_yields_up_zero_and_no_other_samples() -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    assert scrape(client) == {("plugwatch_redis_up", ""): 0}


def test_registering_the_collector_does_not_touch_redis() -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    registry = CollectorRegistry()
    registry.register(RedisCollector(fakeredis.FakeRedis(server=server)))  # would raise if it read Redis
    assert b"plugwatch_redis_up 0.0" in generate_latest(registry)


def test_rq_queues_are_read_from_rqs_redis_and_the_streams_from_the_data_redis() -> None:
    data, rq = fakeredis.FakeRedis(server=fakeredis.FakeServer()), fakeredis.FakeRedis(server=fakeredis.FakeServer())
    data.xadd(keys.INGEST_STREAM, {"d": "a"}, id="1000000-0")
    data.xadd(keys.QUARANTINE_STREAM, {"d": "q"})
    ingest_arming.enqueue_drain(rq)
    ingest_arming.enqueue_drain(rq)
    enqueued_at = Queue(keys.INGEST_QUEUE, connection=rq).jobs[0].enqueued_at.timestamp()
    samples = scrape(data, rq_connection=rq, clock=lambda: enqueued_at + 3)
    assert samples[("plugwatch_queue_depth", "ingest")] == 1  # the stream, in the data Redis
    assert samples[("plugwatch_queue_depth", keys.INGEST_QUEUE)] == 2  # the jobs, in RQ's
    assert samples[("plugwatch_queue_oldest_age_seconds", keys.INGEST_QUEUE)] == pytest.approx(3, abs=0.01)
    assert samples[("plugwatch_quarantine_entries", "")] == 1
    assert scrape(data, clock=lambda: enqueued_at)[("plugwatch_queue_depth", keys.INGEST_QUEUE)] == 0


def test_an_rq_redis_that_is_down_is_a_scrape_with_redis_up_0(real_redis: redis.Redis) -> None:
    down = redis.Redis(port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2)
    samples = scrape(real_redis, rq_connection=down)
    assert samples == {("plugwatch_redis_up", ""): 0}
