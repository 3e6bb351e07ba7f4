"""Arming: make sure exactly one drain per downstream URL is queued or running when its outbox has events.

    kick(connection, queues, urls) -> armed     after committing events to the URLs' outboxes
    rearm(connection, queues, urls) -> armed    every ~1 s (the worker's pump): whatever should run and does not
    arm(connection, queues, urls) -> armed      the step both take; backlog(connection, url): what waits

The same pattern as ingest: `SET <lease key> queued NX PX` and, only if that succeeded, enqueue one RQ
job `worker.jobs.drain_outbox(url)` on `plugwatch-delivery`.  A running drainer replaces "queued" with its
own token and refreshes it (see `worker.delivery.lease`), so `kick` while a drain is queued or running does
nothing: the drainer re-checks the outbox before it lets go of the lease. The lease is data (`connection`,
REDIS_URL); the job is RQ's (`queues`, RQ_REDIS_URL: the same client unless that names another Redis).

`kick` is called right after events were committed to the outboxes (by the ingest worker, reconcile, a
dead-letter replay).  `rearm` repairs everything else: a lost arming (a job that vanished, a drainer
killed with SIGKILL whose lease expired) and a paused URL whose pause is over (the breaker's probe).  Both
return the URLs they armed: a worker process starts those in its own drainer threads at once
(`worker.delivery.context.DeliveryContext.kick`), since the RQ job may wait behind a long ingest drain, and
while its "queued" lease waits, every kick finds the URL armed and starts nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable

import redis
import structlog
from rq import Queue

from plugwatch import keys
from plugwatch.url_state import UrlState, read_states

QUEUED = b"queued"
ARM_TTL_MS = 60_000  # a queued drain job that has not started within a minute is re-armed by `rearm`
DRAIN_JOB_TIMEOUT = 60  # the job itself only hands the URL to a drainer thread; it never waits on HTTP
JOB_FAILURE_TTL = 7 * 24 * 3600

log = structlog.get_logger(__name__)


def kick(connection: redis.Redis, queues: redis.Redis, urls: Iterable[str]) -> list[str]:
    """Arm a drain for each URL that is not paused (call after committing events to their outboxes)."""
    unique = list(dict.fromkeys(urls))
    if not unique:
        return []
    now = time.time()
    return arm(connection, queues, [state.url for state in read_states(connection, unique) if not state.paused(now)])


def rearm(connection: redis.Redis, queues: redis.Redis, urls: Iterable[str]) -> list[str]:
    """Re-arm every subscribed URL whose outbox has events, no drain queued or running, and no pause."""
    urls = list(urls)
    if not urls:
        return []
    pipe = connection.pipeline(transaction=False)
    for url in urls:
        pipe.hgetall(keys.downstream_state_key(url))
        pipe.exists(keys.downstream_lease_key(url))
        pipe.xlen(keys.outbox_stream(url))
    replies = pipe.execute()
    now = time.time()
    due = []
    for index, url in enumerate(urls):
        raw_state, leased, waiting = replies[3 * index: 3 * index + 3]
        state = UrlState.from_hash(url, raw_state)
        if waiting and not leased and not state.paused(now):
            due.append(url)
    if not due:
        return []
    log.info("delivery.pump_rearmed", urls=len(due))
    return arm(connection, queues, due)


def arm(connection: redis.Redis, queues: redis.Redis, urls: list[str]) -> list[str]:
    """SET NX each URL's lease to "queued" and enqueue a drain job for each one that was free. An enqueue
    that fails (RQ's Redis down) releases the "queued" leases of the jobs not enqueued, so the next pump
    re-arms them rather than waiting ARM_TTL_MS for the leases to expire; the error is raised."""
    if not urls:
        return []
    pipe = connection.pipeline(transaction=False)
    for url in urls:
        pipe.set(keys.downstream_lease_key(url), QUEUED, nx=True, px=ARM_TTL_MS)
    armed = [url for url, ok in zip(urls, pipe.execute(), strict=True) if ok]
    queue = Queue(keys.DELIVERY_QUEUE, connection=queues)
    for index, url in enumerate(armed):
        try:
            queue.enqueue(
                keys.DRAIN_OUTBOX_JOB, url, job_timeout=DRAIN_JOB_TIMEOUT, result_ttl=0,
                failure_ttl=JOB_FAILURE_TTL, description=f"drain outbox {keys.url_key(url)}",
            )
        except redis.RedisError:
            _release_queued(connection, armed[index:])
            raise
    return armed


_RELEASE_QUEUED = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def _release_queued(connection: redis.Redis, urls: list[str]) -> None:
    """Delete the leases still "queued" (never one a drainer took over meanwhile); else they expire."""
    with contextlib.suppress(redis.RedisError):
        pipe = connection.pipeline(transaction=False)
        for url in urls:
            pipe.eval(_RELEASE_QUEUED, 1, keys.downstream_lease_key(url), QUEUED)
        pipe.execute()


def backlog(connection: redis.Redis, url: str) -> int:
    """Events waiting in `url`'s outbox, read or not (finished entries are deleted)."""
    return int(connection.xlen(keys.outbox_stream(url)))
