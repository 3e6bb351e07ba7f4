"""The per-process delivery context: one httpx.Client, the drainer threads, metrics, configuration.

Wiring, done once by the worker's `bootstrap(settings)`:

    context = worker.delivery.build(settings, connection=redis_connection)   # no I/O
    worker.delivery.install(context)      # the RQ jobs in this process find it with current()
    ...run the RQ worker...
    context.close()                       # at shutdown: stop drainers between attempts, close the client

Tests build their own context the same way (with a fresh prometheus CollectorRegistry).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import httpx
import redis
import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from plugwatch import delivery_local as local
from plugwatch.settings import Settings
from worker.delivery.config import DeliveryConfig
from worker.delivery.drainer import Tools, drain
from worker.delivery.metrics import DeliveryMetrics, DeliveryStateCollector
from worker.delivery.threads import DrainerThreads

CLOSE_TIMEOUT_SECONDS = 5.0

log = structlog.get_logger(__name__)


@dataclass
class DeliveryContext:
    settings: Settings
    config: DeliveryConfig
    connection: redis.Redis
    client: httpx.Client
    metrics: DeliveryMetrics
    threads: DrainerThreads

    tools: Tools

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
    connection: redis.Redis | None = None,
    environ: Mapping[str, str] | None = None,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.time,
    jitter: Callable[[], float] = random.random,
) -> DeliveryContext:
    """Build the context; `environ` (default `os.environ`) supplies the PLUGWATCH_DELIVERY_* tuning."""
    config = DeliveryConfig.from_settings(settings, os.environ if environ is None else environ)
    if connection is None:
        connection = redis.Redis.from_url(settings.redis_url, socket_timeout=max(5.0, settings.redis_timeout_seconds))
    client = httpx.Client(
        timeout=httpx.Timeout(connect=config.connect_timeout, read=config.read_timeout,
                              write=config.read_timeout, pool=config.connect_timeout),
        follow_redirects=False,
    )
    registry = REGISTRY if registry is None else registry
    metrics = DeliveryMetrics(registry)
    registry.register(DeliveryStateCollector(connection, settings.downstream_urls))
    tools = Tools(connection=connection, client=client, key=settings.downstream_key or b"", config=config,
                  metrics=metrics, clock=clock, jitter=jitter)
    threads = DrainerThreads(partial(drain, tools))
    return DeliveryContext(settings, config, connection, client, metrics, threads, tools)


_installed: list[DeliveryContext] = []


def install(context: DeliveryContext | None) -> None:
    """Make `context` the one this process's delivery jobs use (None uninstalls it)."""
    _installed[:] = [] if context is None else [context]
    local.set_starter(None if context is None else context.threads.request)


def current() -> DeliveryContext:
    """The installed context; if the process never installed one, build it from the environment (logged)."""
    if not _installed:
        log.warning("delivery.context_built_from_environment",
                    hint="the worker bootstrap should call worker.delivery.build(...) and install(...)")
        install(build(Settings.from_env(os.environ, require_enode_secret=False)))
    return _installed[0]
