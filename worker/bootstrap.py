"""The one place a worker process is wired: `bootstrap(settings, options) -> WorkerContext`.

RQ calls job functions by dotted path with only the job's arguments, so a job reaches the process's
objects through `current()`, which returns the context `install()` was given at start-up (by
`python -m worker`, or by a test that builds its own context with fakes). Building the context does no I/O:
the Redis client connects on first use.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import redis
from prometheus_client import REGISTRY, CollectorRegistry

from plugwatch import keys
from plugwatch.enode.hooks import EnodeHooks, build_hooks
from plugwatch.redis_metrics import QueueSpec, RedisCollector, StreamQueue, default_queues
from plugwatch.settings import Settings, positive_float, seconds_or_off  # Settings' own parsing rules
from worker import delivery
from worker.metrics import WorkerMetrics
from worker.store import Store


@dataclass(frozen=True)
class DrainOptions:
    """How an ingest drain job behaves (see `worker.ingest`); from PLUGWATCH_INGEST_* variables."""

    batch_entries: int = 200  # ingest entries (deliveries) read and committed together
    budget_seconds: float = 5.0  # a drain job stops after this long and re-arms a successor
    idle_wait_ms: int = 500  # an emptied drain waits this long for the next delivery before it ends (0: no wait)
    claim_idle_ms: int = 15_000  # entries pending this long belong to a dead drainer: claim them
    max_deliveries: int = 5  # an entry claimed more often than this is quarantined as poison
    armed_ttl_ms: int = 20_000  # a running drain keeps its armed key alive this long (crash recovery time)
    max_drainers: int = 4  # concurrent drain jobs under a backlog (one per worker process at most)
    consumer_idle_ms: int = 3_600_000  # forget consumer-group members idle this long with nothing pending

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DrainOptions:
        return cls(
            batch_entries=int(positive_float(environ, "PLUGWATCH_INGEST_BATCH", cls.batch_entries)),
            budget_seconds=positive_float(environ, "PLUGWATCH_INGEST_BUDGET_SECONDS", cls.budget_seconds),
            idle_wait_ms=int(1000 * seconds_or_off(environ, "PLUGWATCH_INGEST_IDLE_WAIT_SECONDS",
                                                    cls.idle_wait_ms / 1000)),
            claim_idle_ms=int(1000 * positive_float(environ, "PLUGWATCH_INGEST_CLAIM_IDLE_SECONDS",
                                             cls.claim_idle_ms / 1000)),
            max_deliveries=int(positive_float(environ, "PLUGWATCH_INGEST_MAX_DELIVERIES", cls.max_deliveries)),
            armed_ttl_ms=int(1000 * positive_float(environ, "PLUGWATCH_INGEST_ARMED_TTL_SECONDS",
                                            cls.armed_ttl_ms / 1000)),
            max_drainers=int(positive_float(environ, "PLUGWATCH_INGEST_MAX_DRAINERS", cls.max_drainers)),
            consumer_idle_ms=int(1000 * positive_float(environ, "PLUGWATCH_INGEST_CONSUMER_IDLE_SECONDS",
                                                        cls.consumer_idle_ms / 1000)),
        )


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    connection: redis.Redis
    store: Store
    metrics: WorkerMetrics
    delivery: delivery.DeliveryContext
    enode: EnodeHooks  # look-ups of unknown chargers after a batch, reconcile advice in the pump
    options: DrainOptions = field(default_factory=DrainOptions)
    consumer: str = "worker"  # this process's consumer name in the ingest consumer group


def bootstrap(settings: Settings, environ: Mapping[str, str] | None = None, *,
              registry: CollectorRegistry = REGISTRY, connection: redis.Redis | None = None,
              consumer: str | None = None) -> WorkerContext:
    """Build everything a worker process needs from `settings` and the PLUGWATCH_INGEST_* / _DELIVERY_*
    tuning variables in `environ`; tests pass their own registry and connection (e.g. fakeredis)."""
    environ = {} if environ is None else environ
    if connection is None:
        connection = redis.Redis.from_url(settings.redis_url, health_check_interval=30)
    registry.register(RedisCollector(connection, queues=_queues_with_outboxes(settings.downstream_urls)))
    store = Store.from_settings(connection, settings)
    return WorkerContext(
        settings=settings,
        connection=connection,
        store=store,
        metrics=WorkerMetrics.create(registry),
        delivery=delivery.build(settings, connection=connection, environ=environ, registry=registry),
        enode=build_hooks(settings, connection, store, registry),
        options=DrainOptions.from_env(environ),
        consumer=consumer or f"{socket.gethostname()}-{os.getpid()}",
    )


def _queues_with_outboxes(urls: Sequence[str]) -> Callable[[redis.Redis], Iterable[QueueSpec]]:
    def queues(connection: redis.Redis) -> Iterable[QueueSpec]:
        outboxes = [StreamQueue(f"outbox:{keys.url_key(url)}", keys.outbox_stream(url)) for url in urls]
        return [*default_queues(connection), *outboxes]

    return queues


_installed: list[WorkerContext] = []


def install(context: WorkerContext) -> None:
    """Make `context` (and its delivery context) the one RQ jobs of this process use."""
    _installed[:] = [context]
    delivery.install(context.delivery)


def current() -> WorkerContext:
    if not _installed:
        raise RuntimeError("no WorkerContext installed: start workers with `python -m worker`")
    return _installed[0]
