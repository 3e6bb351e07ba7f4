"""Arming the ingest drain: one RQ drain job per slot queued or running while the ingest stream has work.

    arm(connection, queues, slot=0, into=...) -> job id | None   win the slot's armed key, enqueue its drain job
    enqueue_after_arming(connection, queues, slot=0, into=...)   the enqueue alone, for a caller that won the
                                                       key already (the receiver: its ingest Lua call sets it)
    arming_lost(queues, ttl_ms, running_ttl_ms)        the pump's test for an arming no drain took up
    requeue(pipe, delivery_id, body, now=...)     an operator's replay onto the ingest stream

`into` is the partition (`plugwatch.partitions.Layout`; the one partition by default): each partition has its
ingest stream, its armed keys and its drain jobs, `drain_ingest(slot, partition)`.

The armed key (`Layout.armed_key(slot)`; slot 0 is `plugwatch:ingest:armed`, the receiver's) has two
TTLs, kept here together because the pump tells them apart (`connection` is the data Redis, holding the key;
`queues` is RQ's, holding the job: the same client unless RQ_REDIS_URL names another Redis):
- an arming (the receiver's Lua call, `arm`: the pump, a drain re-arming itself or, under a backlog, a
  helper slot) sets it for ARMED_TTL_MS; only the caller that wins that SET enqueues the RQ job
  `worker.jobs.drain_ingest(slot)` (RQ costs a few ms per job; one job drains many deliveries);
- the running drain refreshes it to `IngestSettings.armed_ttl_ms` (PLUGWATCH_INGEST_ARMED_TTL_SECONDS, 20 s)
  with each read, shorter than ARMED_TTL_MS, and deletes it when it ends.
So a key longer-lived than `armed_ttl_ms` whose arming is a few seconds old while no drain job is queued is
an arming whose job vanished (a worker took it and died): `arming_lost`, and the pump re-arms at once.
"""

from __future__ import annotations

import contextlib
import uuid

import redis
from rq import Queue, Retry

from plugwatch import keys
from plugwatch.partitions import UNPARTITIONED, Layout

ARMED_TTL_MS = 60_000
LOST_ARMING_AFTER_MS = 3_000  # a dequeued drain job starts within milliseconds
DRAIN_JOB_TIMEOUT_SECONDS = 60
DRAIN_JOB_RESULT_TTL_SECONDS = 60
DRAIN_JOB_FAILURE_TTL_SECONDS = 7 * 24 * 3600


def enqueue_drain(queues: redis.Redis, slot: int = 0, into: Layout = UNPARTITIONED) -> str:
    """Enqueue one drain job on the ingest queue (call after winning the armed key); return its job id."""
    job = Queue(keys.INGEST_QUEUE, connection=queues).enqueue_call(
        keys.DRAIN_INGEST_JOB,
        args=(slot, into.partition) if into.partition else (slot,) if slot else (),
        job_id=f"drain-ingest-{uuid.uuid4().hex}",
        timeout=DRAIN_JOB_TIMEOUT_SECONDS,
        result_ttl=DRAIN_JOB_RESULT_TTL_SECONDS,
        failure_ttl=DRAIN_JOB_FAILURE_TTL_SECONDS,
        retry=Retry(max=3, interval=[1, 5, 15]),
    )
    return str(job.id)


def enqueue_after_arming(connection: redis.Redis, queues: redis.Redis, slot: int = 0,
                         into: Layout = UNPARTITIONED) -> str:
    """Enqueue the drain job for an armed key we own; on failure release the key so the pump re-arms."""
    try:
        return enqueue_drain(queues, slot, into)
    except redis.RedisError:
        with contextlib.suppress(redis.RedisError):  # else the key expires within ARMED_TTL_MS
            connection.delete(into.armed_key(slot))
        raise


def arm(connection: redis.Redis, queues: redis.Redis, slot: int = 0, into: Layout = UNPARTITIONED) -> str | None:
    """Arm and enqueue a drain job for `slot` unless one is armed already; return the new job id, if any."""
    if not connection.set(into.armed_key(slot), "1", nx=True, px=ARMED_TTL_MS):
        return None
    return enqueue_after_arming(connection, queues, slot, into)


def arming_lost(queues: redis.Redis, ttl_ms: int, running_ttl_ms: int) -> bool:
    """Armed (the key has `ttl_ms` left), but its job vanished: a worker took the job and died before the
    drain started. If the arming is more than a few seconds old and no drain job is queued, nobody will take
    it up until it expires: don't wait for that."""
    armed_for = ARMED_TTL_MS - ttl_ms
    if ttl_ms <= running_ttl_ms or armed_for < LOST_ARMING_AFTER_MS:
        return False
    return Queue(keys.INGEST_QUEUE, connection=queues).count == 0


MAKE_WAY_MS = 50  # with several partitions, how often an idle drain (ingest or delivery) looks for waiting jobs
_DRAIN_QUEUES = tuple(Queue.redis_queue_namespace_prefix + name for name in (keys.INGEST_QUEUE, keys.DELIVERY_QUEUE))


def drains_waiting(queues: redis.Redis) -> bool:
    """Drain jobs (ingest or delivery) wait in their queues for a worker (two LLENs, one round trip): with
    several partitions an idle drain then ends its wait and makes way for them."""
    pipe = queues.pipeline(transaction=False)
    for key in _DRAIN_QUEUES:
        pipe.llen(key)
    return any(pipe.execute())


def requeue(pipe: redis.client.Pipeline, delivery_id: str, body: bytes, *, now: float, replay_of: str,
            into: Layout = UNPARTITIONED) -> None:
    """Queue on `pipe` an append of the delivery to the ingest stream, bypassing dedupe (operator replays);
    `replay_of` is the quarantine entry it comes from (field `q`: the worker names it if it quarantines again).

    The caller executes the pipeline (a MULTI, with whatever must happen atomically alongside) and then
    calls `arm`.
    """
    pipe.xadd(into.ingest_stream, {"d": delivery_id, "b": body, "t": int(now * 1000), "q": replay_of})
