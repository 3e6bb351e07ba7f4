"""The receiver's own Prometheus metrics, in a registry per app (tests build many apps)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram

from plugwatch.enode_signature import SignatureFailure
from plugwatch.ingest_protocol import QuarantineReason
from plugwatch.redis_collector import RedisCollector
from plugwatch.redis_health import RedisHealthCollector

_ENQUEUE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Outcome(enum.StrEnum):
    """How a POST /webhooks/enode ended (the `outcome` label and log field)."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    HEARTBEAT = "heartbeat"
    TEST = "test"
    UNAUTHORIZED = "unauthorized"
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"
    BAD_REQUEST = "bad_request"


@dataclass(frozen=True)
class ReceiverMetrics:
    registry: CollectorRegistry
    requests: Counter
    signature_failures: Counter
    enqueue_seconds: Histogram
    quarantined_events: Counter  # system events the receiver quarantined alone, by reason

    @classmethod
    def create(cls, connection: redis.Redis, queues: redis.Redis | None = None, partitions: int = 1) -> ReceiverMetrics:
        """A fresh registry with the receiver's metrics and the Redis-backed collector (read at scrape);
        `queues`: RQ's Redis, when it is not `connection`'s."""
        registry = CollectorRegistry()
        requests = Counter("plugwatch_receiver_requests", "Webhook deliveries by outcome", ["outcome"],
                           registry=registry)
        failures = Counter("plugwatch_receiver_signature_failures", "Refused signatures by reason",
                           ["reason"], registry=registry)
        enqueue = Histogram("plugwatch_receiver_enqueue_seconds", "Time of the ingest Redis call",
                            buckets=_ENQUEUE_BUCKETS, registry=registry)
        quarantined = Counter("plugwatch_receiver_quarantined_events",
                              "System events quarantined alone (their delivery went on), by reason", ["reason"],
                              registry=registry)
        for event_reason in (QuarantineReason.UNKNOWN_VERSION, QuarantineReason.INVALID_HEARTBEAT):
            quarantined.labels(event_reason.value)
        for outcome in Outcome:
            requests.labels(outcome.value)
        for reason in SignatureFailure:
            failures.labels(reason.value)
        registry.register(RedisCollector(connection, rq_connection=queues, partitions=partitions))
        registry.register(RedisHealthCollector(connection))
        return cls(registry, requests, failures, enqueue, quarantined)
