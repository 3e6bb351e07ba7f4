"""Every metric a worker process counts itself (names are a contract: Grafana and alerts are built on them).

    WorkerMetrics     plugwatch_worker_events_total{kind,outcome}, plugwatch_emitted_events_total{type},
                      plugwatch_worker_deliveries_total, plugwatch_worker_batch_seconds,
                      plugwatch_worker_store_conflicts_total,
                      plugwatch_worker_ordered_entries_total                        (the ingest drain)
    DeliveryMetrics   plugwatch_downstream_attempts_total{outcome}: success, retry, dead_letter, disabled;
                      plugwatch_downstream_latency_seconds: now - occurredAt when delivered   (the drainers)

Built per process by `bootstrap`, into a registry it is given (tests pass a fresh `CollectorRegistry`), beside
the gauges every process reads from Redis at scrape time (`plugwatch.redis_collector`: queues, quarantine,
heartbeat, paused and disabled URLs, dead letters) and the reconcile advice (`worker.enode.suggest`).
Labels are closed sets only: observation kind, outcome, emitted event type; never user or device ids.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from worker.core import EmittedEvent, Observation
from worker.delivery.policy import Outcome
from worker.ingest.store import BatchResult

BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


@dataclass(frozen=True)
class WorkerMetrics:
    events: Counter  # labels: kind (vehicle|charger|action|system|other), outcome
    emitted: Counter  # labels: type
    deliveries: Counter
    batch_seconds: Histogram
    store_conflicts: Counter
    ordered: Counter  # older pending entries whose observations of a batch's users were applied first
    clock_skew: Counter  # labels: kind (vehicle|charger|action)
    registry: CollectorRegistry
    state_lost: Counter | None = None  # commits that found the epoch marker gone or replaced

    def record_batch(self, counts: collections.Counter[tuple[str, str]], result: BatchResult, *,
                     deliveries: int, seconds: float, ordered: int = 0) -> None:
        """One processed batch: `counts` of (observation kind, outcome), what the store did, how long, and how
        many older pending entries of its users went first (`worker.ingest.order`)."""
        for (kind, outcome), number in counts.items():
            self.events.labels(kind, outcome).inc(number)
        self.record_emitted(result.events)
        self.store_conflicts.inc(result.conflicts)
        self.ordered.inc(ordered)
        if self.state_lost is not None:
            self.state_lost.inc(result.state_lost)
        self.deliveries.inc(deliveries)
        self.batch_seconds.observe(seconds)

    def record_skewed(self, observations: Sequence[Observation]) -> None:
        """Observations with an Enode timestamp clamped to their receipt time (too far in the future)."""
        for kind, number in collections.Counter(o.kind for o in observations if o.skewed).items():
            self.clock_skew.labels(kind).inc(number)

    def record_emitted(self, events: Sequence[EmittedEvent]) -> None:
        for event_type, number in collections.Counter(event.type.value for event in events).items():
            self.emitted.labels(event_type).inc(number)

    @classmethod
    def create(cls, registry: CollectorRegistry) -> WorkerMetrics:
        return cls(
            events=Counter(
                "plugwatch_worker_events_total",
                "Enode events processed, by observation kind and outcome "
                "(applied, stale, duplicate, ignored, quarantined)",
                ["kind", "outcome"], registry=registry,
            ),
            emitted=Counter("plugwatch_emitted_events_total", "Events emitted downstream, by type",
                            ["type"], registry=registry),
            deliveries=Counter("plugwatch_worker_deliveries_total",
                               "Enode deliveries (ingest stream entries) processed", registry=registry),
            batch_seconds=Histogram("plugwatch_worker_batch_seconds",
                                    "Time to process one batch of deliveries (read, apply, commit)",
                                    buckets=BATCH_BUCKETS, registry=registry),
            store_conflicts=Counter("plugwatch_worker_store_conflicts_total",
                                    "State commits refused because another worker changed a user first",
                                    registry=registry),
            ordered=Counter("plugwatch_worker_ordered_entries_total",
                            "Older ingest entries another drain still held (read, not committed) whose observations "
                            "of a batch's users were applied before the batch, keeping each user's order",
                            registry=registry),
            clock_skew=Counter("plugwatch_worker_clock_skew_total",
                               "Enode events with a timestamp further ahead of their receipt than "
                               "PLUGWATCH_MAX_CLOCK_SKEW_SECONDS, clamped to the receipt time, by kind",
                               ["kind"], registry=registry),
            registry=registry,
            state_lost=Counter("plugwatch_state_lost_total",
                               "Commits that found Redis's epoch marker gone or replaced: Redis lost plugwatch's "
                               "state (run `plugwatch enode reconcile`)", registry=registry),
        )


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
