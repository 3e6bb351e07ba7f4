"""Delivery metrics (worker.metrics, plugwatch.redis_collector): the gauges are read from Redis at scrape time."""

from __future__ import annotations

import time

import redis
from prometheus_client import CollectorRegistry

from plugwatch import dead_letters as deadletters
from plugwatch import url_state as state
from plugwatch.redis_collector import DeliveryStateCollector
from tests.support.servers import free_port
from worker.metrics import DeliveryMetrics

URLS = ("http://a.example/hook", "http://b.example/hook", "http://c.example/hook")


def scrape(connection: redis.Redis) -> CollectorRegistry:
    registry = CollectorRegistry()
    DeliveryMetrics(registry)
    registry.register(DeliveryStateCollector(connection, URLS))
    return registry


def test_gauges_count_paused_and_disabled_urls_and_dead_letters(fake_redis: redis.Redis) -> None:
    now = time.time()
    state.record_failure(fake_redis, URLS[0], head="1-0", attempts=3, error="HTTP 503", paused_until=now + 60)
    state.record_failure(fake_redis, URLS[1], head="1-0", attempts=1, error="HTTP 503", paused_until=now - 1)
    state.disable(fake_redis, URLS[2], reason="HTTP 410", now=now)
    deadletters.add(fake_redis, URLS[2], b'{"id": "evt_1"}', reason="URL disabled", ttl=60, event_id="evt_1",
                    event_type="")
    registry = scrape(fake_redis)
    # URLS[1]'s pause is over but its head is not delivered yet (being retried): still paused
    assert registry.get_sample_value("plugwatch_downstream_paused_urls") == 2
    assert registry.get_sample_value("plugwatch_downstream_disabled_urls") == 1
    assert registry.get_sample_value("plugwatch_dead_letters") == 1


def test_every_attempt_outcome_is_exported_from_the_start(fake_redis: redis.Redis) -> None:
    registry = scrape(fake_redis)
    for outcome in ("success", "retry", "dead_letter", "disabled"):
        assert registry.get_sample_value("plugwatch_downstream_attempts_total", {"outcome": outcome}) == 0


def test_a_scrape_without_redis_skips_the_gauges_instead_of_failing() -> None:
    unreachable = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, retry=None)
    registry = scrape(unreachable)
    assert registry.get_sample_value("plugwatch_dead_letters") is None
    assert registry.get_sample_value("plugwatch_downstream_attempts_total", {"outcome": "success"}) == 0
