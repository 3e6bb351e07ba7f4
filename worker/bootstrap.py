"""The one place a worker process is wired: `bootstrap(settings) -> WorkerContext`, and its one `current()`.

RQ calls job functions (`worker.jobs`) by dotted path with only the job's arguments, so a job reaches the
process's objects through `current()`, which returns the context `install()` was given at start-up (by
`python -m worker`, or by a test that builds its own context with fakes). Building the context does no I/O:
the Redis client and the HTTP clients connect on first use.

Nothing below this module imports it: the worker's packages (`ingest`, `delivery`, `enode`) take what they
need as arguments, and `WorkerContext` provides it (see `worker.ingest.ports`).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from functools import partial

import redis
from prometheus_client import REGISTRY, CollectorRegistry

from plugwatch import partitions, redis_clients, subscriptions
from plugwatch.epoch import EpochCollector
from plugwatch.redis_collector import DeliveryStateCollector, RedisCollector, queues_with_outboxes
from plugwatch.redis_health import RedisHealthCollector
from plugwatch.settings import IngestSettings, Settings
from worker import delivery
from worker.enode.hooks import EnodeHooks, build_hooks
from worker.ingest.store import Store
from worker.metrics import DeliveryMetrics, WorkerMetrics


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    connection: redis.Redis  # the data Redis (REDIS_URL)
    queues: redis.Redis  # RQ's Redis for enqueueing and dead letters (RQ_REDIS_URL; `connection` if the same)
    store: Store
    metrics: WorkerMetrics
    delivery: delivery.DeliveryContext
    enode: EnodeHooks  # look-ups of unknown chargers after a batch, reconcile advice in the pump
    consumer: str = "worker"  # this process's consumer name in the ingest consumer group

    @property
    def options(self) -> IngestSettings:
        """How this process's ingest drains behave."""
        return self.settings.ingest

    def close(self) -> None:
        """At shutdown: stop the drainer threads between attempts, close the HTTP clients."""
        self.delivery.close()
        self.enode.close()

    def close_redis(self) -> None:
        """Close the Redis clients (after `close`)."""
        redis_clients.close_both(self.connection, self.queues)


def bootstrap(settings: Settings, *, registry: CollectorRegistry = REGISTRY, connection: redis.Redis | None = None,
              consumer: str | None = None, queues: redis.Redis | None = None) -> WorkerContext:
    """Build everything a worker process needs from `settings`; tests pass their own registry and connection
    (e.g. fakeredis), and `queues` for RQ's Redis (default: `connection` when given, else RQ_REDIS_URL's)."""
    if connection is None:
        connection = redis_clients.worker(settings)
        queues = redis_clients.worker_queues(settings, connection) if queues is None else queues
    queues = connection if queues is None else queues
    partitions = settings.process.partitions
    registry.register(RedisCollector(connection, rq_connection=queues, partitions=partitions,
                                     queues=queues_with_outboxes(subscriptions.known_urls, partitions)))
    registry.register(DeliveryStateCollector(connection, subscriptions.known_urls, rq_connection=queues))
    registry.register(RedisHealthCollector(connection))
    registry.register(EpochCollector(connection, partitions))
    store = Store.from_settings(connection, settings)
    store.on_state_lost = partial(ensure_env_subscriptions, connection, settings)
    deliveries = delivery.build(settings, connection=connection, queues=queues, metrics=DeliveryMetrics(registry))
    return WorkerContext(
        settings=settings,
        connection=connection,
        queues=queues,
        store=store,
        metrics=WorkerMetrics.create(registry),
        delivery=deliveries,
        enode=build_hooks(settings, connection, store, registry, deliver=deliveries.kick_subscribed),
        consumer=consumer or f"{socket.gethostname()}-{os.getpid()}",
    )


_installed: list[WorkerContext] = []


def install(context: WorkerContext | None) -> None:
    """Make `context` the one RQ jobs of this process use (None uninstalls it)."""
    _installed[:] = [] if context is None else [context]


def current() -> WorkerContext:
    if not _installed:
        raise RuntimeError("no WorkerContext installed: start workers with `python -m worker`")
    return _installed[0]


def ensure_env_subscriptions(connection: redis.Redis, settings: Settings) -> list[str]:
    """`DOWNSTREAM_WEBHOOK_URLS` with `DOWNSTREAM_WEBHOOK_SECRET`: each URL a subscription of every type
    (`plugwatch.subscriptions.ensure_from_env`); at start-up, and again after Redis lost its state."""
    delivery_settings = settings.delivery
    # After a wipe the recorded partition count is gone too: record it again first, so that the subscriptions
    # are written into every partition's copy of the routes (`subscriptions.save` writes the recorded count's).
    partitions.check_count(connection, settings.process.partitions)
    return subscriptions.ensure_from_env(connection, delivery_settings.downstream_urls,
                                         delivery_settings.downstream_key, now=time.time(),
                                         overlap=delivery_settings.secret_overlap_seconds)
