"""The per-process delivery context: the drainer threads (each with its own HTTP session), metrics, configuration.

Wiring, done once by the worker's `bootstrap(settings)` (tests build their own the same way):

    context = worker.delivery.build(settings, connection=redis_connection, queues=rq_connection, metrics=...)
    context.kick(outboxes)  # after committing events: arm the outboxes' drains, and start them here at once
    context.pump()          # every ~1 s: re-arm what should run (crash recovery, pauses that are over),
                            # refresh the subscriptions, forget removed URLs once drained
    context.close()         # at shutdown: stop drainers between attempts

The RQ jobs of `worker.jobs` reach it through the worker's one context (`worker.bootstrap.current()`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import redis
import structlog

from plugwatch import delivery_arming, outboxes, subscriptions
from plugwatch.outboxes import Outbox
from plugwatch.settings import DeliverySettings, Settings
from plugwatch.subscription_cache import SubscriptionCache
from worker.delivery.drainer import AttemptMetrics, Tools, drain
from worker.delivery.threads import DrainerThreads

CLOSE_TIMEOUT_SECONDS = 5.0

log = structlog.get_logger(__name__)


@dataclass
class DeliveryContext:
    settings: Settings
    connection: redis.Redis
    queues: redis.Redis  # RQ's Redis: the drain jobs and dead letters (`connection` unless RQ_REDIS_URL differs)
    metrics: AttemptMetrics
    threads: DrainerThreads

    tools: Tools
    subscriptions: SubscriptionCache  # the URLs to drain and their signing keys (`plugwatch.subscriptions`)

    @property
    def config(self) -> DeliverySettings:
        return self.settings.delivery

    @property
    def partitions(self) -> int:
        return self.settings.process.partitions

    def kick(self, boxes: Iterable[Outbox]) -> None:
        """Arm a drain for each outbox whose URL is not paused (call after committing events to them)."""
        self.start_here(delivery_arming.kick(self.connection, self.queues, boxes))

    def kick_subscribed(self) -> None:
        """Arm every outbox of every active subscription (after a commit whose reached outboxes are unknown,
        e.g. a look-up)."""
        self.kick(outboxes.of_urls(self.subscriptions.active(), self.partitions))

    def pump(self) -> None:
        """Re-arm every outbox of a subscribed URL that waits with no drain queued or running and no pause,
        and forget removed URLs whose outboxes have drained."""
        self.subscriptions.refresh(force=True)
        self.start_here(delivery_arming.rearm(self.connection, self.queues,
                                              outboxes.of_urls(self.subscriptions.urls(), self.partitions)))
        for url in self.subscriptions.removed():
            if subscriptions.forget_if_drained(self.connection, url):
                log.info("subscriptions.forgotten", url=url, hint="removed and drained")

    def start_here(self, boxes: Iterable[Outbox]) -> None:
        """Start drains this process armed in its own drainer threads now: their RQ jobs may wait behind a
        long ingest drain, and the queued job then finds the work done (or the lease held) and returns."""
        for box in boxes:
            self.threads.request(box)

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Stop the drainers after their current attempt, waiting up to `timeout` s.  A drainer still
        waiting on a slow URL then gives up its lease, so another worker takes the URL over now rather
        than when the lease expires; the event it was sending is sent again (at least once)."""
        self.threads.close(timeout)
        if self.threads.active():
            self.tools.release_leases()


def build(
    settings: Settings,
    *,
    connection: redis.Redis,
    metrics: AttemptMetrics,
    queues: redis.Redis | None = None,
    clock: Callable[[], float] = time.time,
    jitter: Callable[[], float] = random.random,
) -> DeliveryContext:
    """The context for `settings.delivery`; no I/O (each drain opens its own HTTP session: a slow URL holds
    only its own connections, at most `concurrency` of them). `queues` defaults to `connection` (one Redis)."""
    queues = connection if queues is None else queues
    config = settings.delivery
    cache = SubscriptionCache(connection, fallback_key=config.downstream_key, clock=clock)
    tools = Tools(connection=connection, queues=queues, signing_keys=cache.signing_keys, config=config,
                  metrics=metrics, clock=clock, jitter=jitter)
    threads = DrainerThreads(partial(drain, tools), overdue=tools.overdue)
    return DeliveryContext(settings, connection, queues, metrics, threads, tools, cache)
