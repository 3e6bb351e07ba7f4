"""What the ingest drain needs from its process, as the drain sees it (`worker.bootstrap.WorkerContext` is
the one implementation; tests and benchmarks build it with `bootstrap` too).

Declared here, not imported from the bootstrap, so that the worker's composition root stays on top: it
imports `worker.ingest`, never the other way round.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Protocol

import redis
from prometheus_client import Counter

from plugwatch.settings import IngestSettings, Settings
from worker.core import EmittedEvent, Observation
from worker.delivery import DeliveryContext
from worker.ingest.store import BatchResult, Store


class IngestMetrics(Protocol):
    """What a drain records (`worker.metrics.WorkerMetrics`)."""

    @property
    def events(self) -> Counter: ...  # labels: kind, outcome

    def record_batch(self, counts: collections.Counter[tuple[str, str]], result: BatchResult, *,
                     deliveries: int, seconds: float, ordered: int = 0) -> None: ...

    def record_emitted(self, events: Sequence[EmittedEvent]) -> None: ...

    def record_skewed(self, observations: Sequence[Observation]) -> None: ...


class AfterBatch(Protocol):
    """The Enode look-up after a committed batch (`worker.enode.hooks.EnodeHooks`)."""

    def after_batch(self, committed: BatchResult) -> BatchResult | None: ...


class IngestContext(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def options(self) -> IngestSettings: ...

    @property
    def connection(self) -> redis.Redis: ...

    @property
    def queues(self) -> redis.Redis: ...  # RQ's Redis (the drain jobs): `connection` unless RQ_REDIS_URL differs

    @property
    def store(self) -> Store: ...

    @property
    def metrics(self) -> IngestMetrics: ...

    @property
    def delivery(self) -> DeliveryContext: ...

    @property
    def enode(self) -> AfterBatch: ...

    @property
    def consumer(self) -> str: ...  # this process's consumer name in the ingest consumer group
