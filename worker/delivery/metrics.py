"""Delivery metrics.  Counters and the latency histogram are per process; the gauges (paused and disabled
URLs, dead letters) are read from Redis at scrape time, so every worker process reports the same truth.

    plugwatch_downstream_attempts_total{outcome}   outcome: success, retry, dead_letter, disabled
    plugwatch_downstream_latency_seconds            now - occurredAt when an event was delivered
    plugwatch_downstream_paused_urls                URLs whose breaker is open (paused or retrying its head)
    plugwatch_downstream_disabled_urls              URLs disabled by a 410 (until re-enabled)
    plugwatch_downstream_slow_urls                  URLs whose read timeout is raised (they answer slowly)
    plugwatch_dead_letters                          dead letters kept (RQ failed jobs, dead-letter queue)
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import redis
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from rq.registry import FailedJobRegistry

from plugwatch import keys
from worker.delivery.policy import Outcome
from worker.delivery.state import read_states

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)

log = structlog.get_logger(__name__)


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "plugwatch_downstream_attempts", "Delivery attempts to downstream URLs, by outcome.",
            ["outcome"], registry=registry,
        )
        for outcome in Outcome:
            self.attempts.labels(outcome.value)
        self.latency = Histogram(
            "plugwatch_downstream_latency_seconds",
            "Seconds from an event's occurredAt to its successful delivery.",
            buckets=LATENCY_BUCKETS, registry=registry,
        )


class DeliveryStateCollector(Collector):
    """Gauges read from Redis at scrape time (register with a registry; nothing is read before a scrape)."""

    def __init__(self, connection: redis.Redis, urls: tuple[str, ...]) -> None:
        self.connection = connection
        self.urls = urls

    def collect(self) -> Iterator[Metric]:
        try:
            states = read_states(self.connection, self.urls)
            dead = FailedJobRegistry(keys.DEAD_LETTER_QUEUE, connection=self.connection).count
        except redis.RedisError as error:
            log.warning("delivery.metrics_unavailable", error=str(error))
            return
        now = time.time()
        yield GaugeMetricFamily("plugwatch_downstream_paused_urls", "Downstream URLs paused by the breaker.",
                                value=sum(1 for s in states if s.failing(now)))
        yield GaugeMetricFamily("plugwatch_downstream_disabled_urls", "Downstream URLs disabled (410 Gone).",
                                value=sum(1 for s in states if s.disabled))
        yield GaugeMetricFamily("plugwatch_downstream_slow_urls",
                                "Downstream URLs answering slower than the base read timeout (timeout raised).",
                                value=sum(1 for s in states if s.slow and not s.disabled))
        yield GaugeMetricFamily("plugwatch_dead_letters", "Dead letters kept in the dead-letter queue.",
                                value=dead)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # describing would need Redis; an empty description keeps registration I/O-free
