"""Arming: make sure exactly one drain per outbox (a downstream URL's, in one partition: `plugwatch.outboxes`)
is queued or running when the outbox has events.

    kick(connection, queues, outboxes) -> armed     after committing events to the outboxes
    rearm(connection, queues, outboxes) -> armed    every ~1 s (the worker's pump): whatever should run and does not
    arm(connection, queues, outboxes) -> armed      the step both take; backlog(connection, url, partitions)

The same pattern as ingest: `SET <lease key> queued NX PX` and, only if that succeeded, enqueue one RQ
job `worker.jobs.drain_outbox(url[, partition])` on `plugwatch-delivery`.  A running drainer replaces "queued" with its
own token and refreshes it (see `worker.delivery.lease`), so `kick` while a drain is queued or running does
nothing: the drainer re-checks the outbox before it lets go of the lease. The lease is data (`connection`,
REDIS_URL); the job is RQ's (`queues`, RQ_REDIS_URL: the same client unless that names another Redis).

`kick` is called right after events were committed to the outboxes (by the ingest worker, reconcile, a
dead-letter replay).  `rearm` repairs everything else: a lost arming (a job that vanished, a drainer
killed with SIGKILL whose lease expired) and a paused URL whose pause is over (the breaker's probe).  Both
return the outboxes they armed: a worker process starts those in its own drainer threads at once
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
from plugwatch.outboxes import Outbox, of_urls
from plugwatch.url_state import UrlState, read_states

QUEUED = b"queued"
ARM_TTL_MS = 60_000  # a queued drain job that has not started within a minute is re-armed by `rearm`
DRAIN_JOB_TIMEOUT = 60  # the job itself only hands the URL to a drainer thread; it never waits on HTTP
JOB_FAILURE_TTL = 7 * 24 * 3600

log = structlog.get_logger(__name__)


def kick(connection: redis.Redis, queues: redis.Redis, outboxes: Iterable[Outbox]) -> list[Outbox]:
    """Arm a drain for each outbox whose URL is not paused (call after committing events to them)."""
    unique = list(dict.fromkeys(outboxes))
    if not unique:
        return []
    now = time.time()
    paused = {state.url for state in read_states(connection, list(dict.fromkeys(box.url for box in unique)))
              if state.paused(now)}
    return arm(connection, queues, [box for box in unique if box.url not in paused])


def rearm(connection: redis.Redis, queues: redis.Redis, outboxes: Iterable[Outbox]) -> list[Outbox]:
    """Re-arm every outbox that has events, no drain queued or running, and whose URL is not paused (the pump
    passes every outbox of every subscribed URL)."""
    boxes = list(outboxes)
    if not boxes:
        return []
    urls = list(dict.fromkeys(box.url for box in boxes))
    pipe = connection.pipeline(transaction=False)  # one round trip: the URLs' states, then each outbox's
    for url in urls:
        pipe.hgetall(keys.downstream_state_key(url))
    for box in boxes:
        pipe.exists(box.lease)
        pipe.xlen(box.stream)
    replies = pipe.execute()
    states = {url: UrlState.from_hash(url, raw) for url, raw in zip(urls, replies, strict=False)}
    waiting = replies[len(urls):]
    now = time.time()
    due = [box for index, box in enumerate(boxes)
           if waiting[2 * index + 1] and not waiting[2 * index] and not states[box.url].paused(now)]
    if not due:
        return []
    log.info("delivery.pump_rearmed", outboxes=len(due))
    return arm(connection, queues, due)


def arm(connection: redis.Redis, queues: redis.Redis, outboxes: list[Outbox]) -> list[Outbox]:
    """SET NX each outbox's lease to "queued" and enqueue a drain job for each one that was free. An enqueue
    that fails (RQ's Redis down) releases the "queued" leases of the jobs not enqueued, so the next pump
    re-arms them rather than waiting ARM_TTL_MS for the leases to expire; the error is raised."""
    if not outboxes:
        return []
    pipe = connection.pipeline(transaction=False)
    for box in outboxes:
        pipe.set(box.lease, QUEUED, nx=True, px=ARM_TTL_MS)
    armed = [box for box, ok in zip(outboxes, pipe.execute(), strict=True) if ok]
    queue = Queue(keys.DELIVERY_QUEUE, connection=queues)
    for index, box in enumerate(armed):
        try:
            queue.enqueue(
                keys.DRAIN_OUTBOX_JOB, *job_args(box), job_timeout=DRAIN_JOB_TIMEOUT, result_ttl=0,
                failure_ttl=JOB_FAILURE_TTL, description=f"drain outbox {box.name}",
            )
        except redis.RedisError:
            _release_queued(connection, armed[index:])
            raise
    return armed


def job_args(box: Outbox) -> tuple[str] | tuple[str, int]:
    """The arguments of `worker.jobs.drain_outbox`: the URL, and the partition unless it is 0."""
    return (box.url, box.partition) if box.partition else (box.url,)


_RELEASE_QUEUED = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def _release_queued(connection: redis.Redis, outboxes: list[Outbox]) -> None:
    """Delete the leases still "queued" (never one a drainer took over meanwhile); else they expire."""
    with contextlib.suppress(redis.RedisError):
        pipe = connection.pipeline(transaction=False)
        for box in outboxes:
            # (execute_command: a cluster pipeline's eval() takes no script; EVAL is routed by its key)
            pipe.execute_command("EVAL", _RELEASE_QUEUED, 1, box.lease, QUEUED)  # type: ignore[no-untyped-call]
        pipe.execute()


def backlog(connection: redis.Redis, url: str, partitions: int = 1) -> int:
    """Events waiting for `url` in its outboxes, read or not (finished entries are deleted)."""
    pipe = connection.pipeline(transaction=False)
    for box in of_urls([url], partitions):
        pipe.xlen(box.stream)
    return sum(int(length) for length in pipe.execute())
