"""Arming: make sure exactly one drain per downstream URL is queued or running when its outbox has events.

The same pattern as ingest: `SET <lease key> queued NX PX` and, only if that succeeded, enqueue one RQ
job `worker.delivery.jobs.drain_outbox(url)` on `plugwatch-delivery`.  A running drainer replaces
"queued" with its own token and refreshes it (see `lease.py`), so `kick` while a drain is queued or
running does nothing: the drainer re-checks the outbox before it lets go of the lease.

`kick` is called by the ingest worker right after it committed events to the outboxes.  `pump` runs every
~1 s in each worker process and repairs everything else: a lost arming (a job that vanished, a drainer
killed with SIGKILL whose lease expired) and a paused URL whose pause is over (the breaker's probe).  In a
worker process both also start what they armed in this process's drainer threads at once (see `local.py`):
the RQ job may wait behind a long ingest drain, and while its "queued" lease waits, every kick finds the URL
armed and starts nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis
import structlog
from rq import Queue

from plugwatch import delivery_local as local
from plugwatch import keys
from plugwatch.settings import Settings
from plugwatch.url_state import UrlState, read_states

QUEUED = b"queued"
ARM_TTL_MS = 60_000  # a queued drain job that has not started within a minute is re-armed by `pump`
DRAIN_JOB_TIMEOUT = 60  # the job itself only hands the URL to a drainer thread; it never waits on HTTP
JOB_FAILURE_TTL = 7 * 24 * 3600

log = structlog.get_logger(__name__)


def kick(connection: redis.Redis, settings: Settings, urls: Iterable[str]) -> None:
    """Arm a drain for each URL that is not paused (call after committing events to their outboxes)."""
    unique = list(dict.fromkeys(urls))
    if not unique:
        return
    now = time.time()
    armed = arm(connection, [state.url for state in read_states(connection, unique) if not state.paused(now)])
    local.start_here(armed)


def pump(connection: redis.Redis, settings: Settings) -> None:
    """Re-arm every configured URL whose outbox has events, no drain queued or running, and no pause."""
    urls = list(settings.downstream_urls)
    if not urls:
        return
    pipe = connection.pipeline(transaction=False)
    pipe.hset(keys.DOWNSTREAM_URLS, mapping={keys.url_key(url): url for url in urls})
    for url in urls:
        pipe.hgetall(keys.downstream_state_key(url))
        pipe.exists(keys.downstream_lease_key(url))
        pipe.xlen(keys.outbox_stream(url))
    replies = pipe.execute()[1:]
    now = time.time()
    due = []
    for index, url in enumerate(urls):
        raw_state, leased, backlog = replies[3 * index: 3 * index + 3]
        state = UrlState.from_hash(url, raw_state)
        if backlog and not leased and not state.paused(now):
            due.append(url)
    if due:
        log.info("delivery.pump_rearmed", urls=len(due))
        local.start_here(arm(connection, due))


def arm(connection: redis.Redis, urls: list[str]) -> list[str]:
    """SET NX each URL's lease to "queued" and enqueue a drain job for each one that was free."""
    if not urls:
        return []
    pipe = connection.pipeline(transaction=False)
    for url in urls:
        pipe.set(keys.downstream_lease_key(url), QUEUED, nx=True, px=ARM_TTL_MS)
    armed = [url for url, ok in zip(urls, pipe.execute(), strict=True) if ok]
    queue = Queue(keys.DELIVERY_QUEUE, connection=connection)
    for url in armed:
        queue.enqueue(
            keys.DRAIN_OUTBOX_JOB, url, job_timeout=DRAIN_JOB_TIMEOUT, result_ttl=0,
            failure_ttl=JOB_FAILURE_TTL, description=f"drain outbox {keys.url_key(url)}",
        )
    return armed
