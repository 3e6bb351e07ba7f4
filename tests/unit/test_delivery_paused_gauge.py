"""plugwatch_downstream_paused_urls counts a URL from its head event's first failure until it recovers, not
only while a pause lies ahead: a scrape during the retry itself (up to the read timeout against a hanging
sink, or the pump's gap before a long pause is resumed) must not reset PlugwatchDownstreamUrlPaused's `for:`."""

from __future__ import annotations

import time

import redis
from prometheus_client import CollectorRegistry

from plugwatch import url_state as state
from plugwatch.redis_collector import DeliveryStateCollector

URL = "http://a.example/hook"


def paused_urls(connection: redis.Redis) -> float | None:
    registry = CollectorRegistry()
    registry.register(DeliveryStateCollector(connection, (URL,)))
    return registry.get_sample_value("plugwatch_downstream_paused_urls")


def fail(connection: redis.Redis, *, paused_until: float) -> None:
    state.record_failure(connection, URL, head="1-0", attempts=2, error="timed out", paused_until=paused_until)


def test_a_url_retrying_its_head_after_the_pause_is_still_paused(fake_redis: redis.Redis) -> None:
    fail(fake_redis, paused_until=time.time() - 1)
    assert paused_urls(fake_redis) == 1


def test_a_url_in_its_pause_is_paused(fake_redis: redis.Redis) -> None:
    fail(fake_redis, paused_until=time.time() + 60)
    assert paused_urls(fake_redis) == 1


def test_a_url_that_delivered_again_is_not_paused(fake_redis: redis.Redis) -> None:
    fail(fake_redis, paused_until=time.time() - 1)
    state.record_success(fake_redis, URL)
    assert paused_urls(fake_redis) == 0


def test_a_url_whose_head_was_dead_lettered_is_not_paused_once_the_pause_is_over(fake_redis: redis.Redis) -> None:
    fail(fake_redis, paused_until=time.time() - 1)
    state.forget_head(fake_redis, URL)
    assert paused_urls(fake_redis) == 0


def test_a_disabled_url_is_counted_as_disabled_not_paused(fake_redis: redis.Redis) -> None:
    fail(fake_redis, paused_until=time.time() + 60)
    state.disable(fake_redis, URL, reason="HTTP 410", now=time.time())
    assert paused_urls(fake_redis) == 0


def test_a_url_never_failing_is_not_paused(fake_redis: redis.Redis) -> None:
    assert paused_urls(fake_redis) == 0
