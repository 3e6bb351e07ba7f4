"""Prometheus collectors that read plugwatch's state from Redis at scrape time (receiver, worker, status).

Every process reads the same truth, so aggregate these gauges with `max`, never `sum`.

`RedisCollector`:

    plugwatch_queue_depth{queue}               entries/jobs waiting (stream: XLEN; RQ queue: LLEN); the ingest
                                               stream is `ingest`, with partitions `ingest:<n>` each
    plugwatch_queue_oldest_age_seconds{queue}  age of the oldest waiting one (0 when empty)
    plugwatch_quarantine_entries               entries in the quarantine stream
    plugwatch_enode_heartbeat_age_seconds      now - time of the last system:heartbeat (absent before one)
    plugwatch_enode_pending_events             Enode's pendingEvents from that heartbeat
    plugwatch_redis_up                         1 when the scrape could read Redis, else 0

Queues are described by `StreamQueue` (a stream whose processed entries are deleted, like the ingest
stream) and `RQQueue`; pass `queues=` a callable returning them to add more (`queues_with_outboxes`).
RQ's queues are read through `rq_connection` (RQ_REDIS_URL's Redis), the rest through `connection`; one
client (the default) when both are the same Redis.
The collector is synchronous (prometheus_client calls it from the scraping thread) and never raises:
a Redis error yields `plugwatch_redis_up 0` and no other samples.

`DeliveryStateCollector` (the worker's):

    plugwatch_downstream_paused_urls           URLs whose breaker is open (paused or retrying its head)
    plugwatch_downstream_disabled_urls         URLs disabled by a 410 (until re-enabled)
    plugwatch_downstream_slow_urls             URLs whose read timeout is raised (they answer slowly)
    plugwatch_dead_letters                     dead letters kept (RQ failed jobs, dead-letter queue)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry
from rq.utils import utcparse

from plugwatch import keys
from plugwatch.outboxes import of_urls
from plugwatch.partitions import layouts
from plugwatch.url_state import read_states

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StreamQueue:
    label: str
    key: str


@dataclass(frozen=True)
class RQQueue:
    name: str

    @property
    def label(self) -> str:
        return self.name

    @property
    def key(self) -> str:
        return Queue.redis_queue_namespace_prefix + self.name


QueueSpec = StreamQueue | RQQueue


def default_queues(_connection: redis.Redis | None = None, partitions: int = 1) -> Sequence[QueueSpec]:
    """The ingest stream (`ingest`; with partitions, each partition's: `ingest:<n>`) and every RQ queue of
    keys.ALL_QUEUES."""
    streams = [StreamQueue("ingest" if partitions == 1 else f"ingest:{into.partition}", into.ingest_stream)
               for into in layouts(partitions)]
    return (*streams, *(RQQueue(name) for name in keys.ALL_QUEUES))


Urls = Sequence[str] | Callable[[redis.Redis], Sequence[str]]  # fixed, or read at each scrape


def _urls(urls: Urls, connection: redis.Redis) -> Sequence[str]:
    return urls(connection) if callable(urls) else urls


def queues_with_outboxes(urls: Urls, partitions: int = 1) -> Callable[[redis.Redis], Iterable[QueueSpec]]:
    """The default queues and the outbox stream of each downstream URL (`outbox:<url key>`; with partitions,
    `outbox:<url key>:<n>` each); `urls` may be a function of the connection (e.g.
    `plugwatch.subscriptions.known_urls`), read at each scrape."""

    def queues(connection: redis.Redis) -> Iterable[QueueSpec]:
        boxes = [StreamQueue(f"outbox:{box.name}", box.stream)
                 for box in of_urls(_urls(urls, connection), partitions)]
        return [*default_queues(connection, partitions), *boxes]

    return queues


class RedisCollector(Collector):
    def __init__(
        self,
        connection: redis.Redis,
        *,
        rq_connection: redis.Redis | None = None,
        queues: Callable[[redis.Redis], Iterable[QueueSpec]] | None = None,
        clock: Callable[[], float] = time.time,
        partitions: int = 1,
    ) -> None:
        """`partitions`: PLUGWATCH_PARTITIONS (the quarantine entries of every partition are counted; the
        heartbeat is partition 0's); `queues` defaults to `default_queues` of that many partitions."""
        self._connection = connection
        self._rq = connection if rq_connection is None else rq_connection
        self._queues = queues or functools.partial(default_queues, partitions=partitions)
        self._layouts = layouts(partitions)
        self._clock = clock

    def describe(self) -> Iterable[Metric]:
        """Names only: registering the collector must not touch Redis."""
        return _families()

    def collect(self) -> Iterable[Metric]:
        families = _families()
        up = families[-1]
        try:
            self._fill(families)
        except (redis.RedisError, OSError) as error:
            log.warning("metrics.redis_unavailable", error=repr(error))
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return families

    def _fill(self, families: list[GaugeMetricFamily]) -> None:
        depth, oldest, quarantine, heartbeat_age, pending, _up = families
        specs = list(self._queues(self._connection))
        pipe, rq_pipe = self._connection.pipeline(transaction=False), self._rq.pipeline(transaction=False)
        for spec in specs:
            if isinstance(spec, StreamQueue):
                pipe.xlen(spec.key)
                pipe.xrange(spec.key, count=1)
            else:
                rq_pipe.llen(spec.key)
                rq_pipe.lindex(spec.key, 0)
        for into in self._layouts:
            pipe.xlen(into.quarantine_stream)
        pipe.hmget(self._layouts[0].heartbeat, ["at", "pending_events"])
        data, rq = iter(pipe.execute()), iter(rq_pipe.execute())  # (a scrape: two round trips are nothing)
        replies = []  # (size, head) per spec, each from its own Redis
        for spec in specs:
            source = data if isinstance(spec, StreamQueue) else rq
            replies.append((next(source), next(source)))
        now = self._clock()
        ages = self._oldest_ages(specs, [head for _, head in replies], now)
        for spec, (size, _), age in zip(specs, replies, ages, strict=True):
            depth.add_metric([spec.label], int(size))
            oldest.add_metric([spec.label], age)
        quarantine.add_metric([], sum(int(next(data)) for _ in self._layouts))
        at, pending_events = next(data)
        if at is not None:
            heartbeat_age.add_metric([], max(0.0, now - float(at)))
        pending_value = number_or_none(pending_events)
        if pending_value is not None:
            pending.add_metric([], pending_value)

    def _oldest_ages(self, specs: Sequence[QueueSpec], heads: Sequence[Any], now: float) -> list[float]:
        """Age of each queue's oldest entry: from the stream id, or the RQ job's enqueued_at."""
        ages = [0.0] * len(specs)
        job_heads: list[tuple[int, bytes]] = []
        for i, (spec, head) in enumerate(zip(specs, heads, strict=True)):
            if isinstance(spec, StreamQueue) and head:
                entry_id = head[0][0]
                ages[i] = max(0.0, now - int(entry_id.split(b"-")[0]) / 1000)
            elif isinstance(spec, RQQueue) and head is not None:
                job_heads.append((i, head))
        if job_heads:
            pipe = self._rq.pipeline(transaction=False)
            for _, job_id in job_heads:
                pipe.hget(Job.key_for(job_id.decode()), "enqueued_at")
            for (i, _), enqueued_at in zip(job_heads, pipe.execute(), strict=True):
                if enqueued_at:
                    ages[i] = max(0.0, now - utcparse(enqueued_at.decode()).timestamp())
        return ages


def number_or_none(value: bytes | str | None) -> float | None:
    """A number the receiver stored as text (the heartbeat's `pendingEvents`: `7`, `0.5`, `1E3`); None if absent
    or unreadable."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _families() -> list[GaugeMetricFamily]:
    return [
        GaugeMetricFamily("plugwatch_queue_depth", "Entries or jobs waiting in a queue", labels=["queue"]),
        GaugeMetricFamily("plugwatch_queue_oldest_age_seconds", "Age of the oldest waiting entry or job",
                          labels=["queue"]),
        GaugeMetricFamily("plugwatch_quarantine_entries", "Entries in the quarantine stream"),
        GaugeMetricFamily("plugwatch_enode_heartbeat_age_seconds", "Seconds since Enode's last heartbeat"),
        GaugeMetricFamily("plugwatch_enode_pending_events", "pendingEvents of Enode's last heartbeat"),
        GaugeMetricFamily("plugwatch_redis_up", "1 when the last scrape could read Redis"),
    ]


class DeliveryStateCollector(Collector):
    """Gauges read from Redis at scrape time (register with a registry; nothing is read before a scrape)."""

    def __init__(self, connection: redis.Redis, urls: Urls, rq_connection: redis.Redis | None = None) -> None:
        self.connection = connection
        self.urls = urls
        self.rq_connection = connection if rq_connection is None else rq_connection

    def collect(self) -> Iterator[Metric]:
        try:
            states = read_states(self.connection, _urls(self.urls, self.connection))
            dead = FailedJobRegistry(keys.DEAD_LETTER_QUEUE, connection=self.rq_connection).count
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
