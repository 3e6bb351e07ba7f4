"""The per-process delivery context: one httpx.Client, the drainer threads, metrics, configuration.

Wiring, done once by the worker's `bootstrap(settings)` (tests build their own the same way):

    context = worker.delivery.build(settings, connection=redis_connection, metrics=...)   # no I/O
    context.kick(urls)      # after committing events: arm the URLs' drains, and start them here at once
    context.pump()          # every ~1 s: re-arm what should run (crash recovery, pauses that are over)
    context.close()         # at shutdown: stop drainers between attempts, close the client

The RQ jobs of `worker.jobs` reach it through the worker's one context (`worker.bootstrap.current()`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import httpx
import redis

from plugwatch import delivery_arming
from plugwatch.settings import DeliverySettings, Settings
from worker.delivery.drainer import AttemptMetrics, Tools, drain
from worker.delivery.threads import DrainerThreads

CLOSE_TIMEOUT_SECONDS = 5.0


@dataclass
class DeliveryContext:
    settings: Settings
    connection: redis.Redis
    client: httpx.Client
    metrics: AttemptMetrics
    threads: DrainerThreads

    tools: Tools

    @property
    def config(self) -> DeliverySettings:
        return self.settings.delivery

    def kick(self, urls: Iterable[str]) -> None:
        """Arm a drain for each URL that is not paused (call after committing events to their outboxes)."""
        self.start_here(delivery_arming.kick(self.connection, urls))

    def pump(self) -> None:
        """Re-arm every configured URL whose outbox waits with no drain queued or running and no pause."""
        self.start_here(delivery_arming.rearm(self.connection, self.config.downstream_urls))

    def start_here(self, urls: Iterable[str]) -> None:
        """Start drains this process armed in its own drainer threads now: their RQ jobs may wait behind a
        long ingest drain, and the queued job then finds the work done (or the lease held) and returns."""
        for url in urls:
            self.threads.request(url)

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Stop the drainers after their current attempt, waiting up to `timeout` s.  A drainer still
        waiting on a slow URL then gives up its lease, so another worker takes the URL over now rather
        than when the lease expires; the event it was sending is sent again (at least once)."""
        self.threads.close(timeout)
        if self.threads.active():
            self.tools.release_leases()
        else:
            self.client.close()


def build(
    settings: Settings,
    *,
    connection: redis.Redis,
    metrics: AttemptMetrics,
    clock: Callable[[], float] = time.time,
    jitter: Callable[[], float] = random.random,
) -> DeliveryContext:
    """The context for `settings.delivery`; no I/O (the HTTP client connects on first use)."""
    config = settings.delivery
    client = httpx.Client(
        timeout=httpx.Timeout(connect=config.connect_timeout, read=config.read_timeout,
                              write=config.read_timeout, pool=config.connect_timeout),
        follow_redirects=False,
    )
    tools = Tools(connection=connection, client=client, key=config.downstream_key or b"", config=config,
                  metrics=metrics, clock=clock, jitter=jitter)
    threads = DrainerThreads(partial(drain, tools), overdue=tools.overdue)
    return DeliveryContext(settings, connection, client, metrics, threads, tools)
