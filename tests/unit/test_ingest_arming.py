"""plugwatch.ingest_arming: one RQ drain job per armed key, enqueued by dotted path; a failed enqueue lets go."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from rq import Queue
from rq.job import Job

from plugwatch import ingest_arming, keys


def test_enqueue_drain_creates_a_bounded_rq_job_by_dotted_path(real_redis: redis.Redis) -> None:
    job_id = ingest_arming.enqueue_drain(real_redis)
    assert Queue(keys.INGEST_QUEUE, connection=real_redis).job_ids == [job_id]
    job = Job.fetch(job_id, connection=real_redis)
    assert job.func_name == keys.DRAIN_INGEST_JOB
    assert (job.timeout, job.result_ttl, job.failure_ttl) == (60, 60, 7 * 24 * 3600)
    assert job.retries_left == 3


def test_arm_enqueues_once_until_the_armed_key_goes(real_redis: redis.Redis) -> None:
    first = ingest_arming.arm(real_redis, real_redis)
    assert first is not None
    assert ingest_arming.arm(real_redis, real_redis) is None
    real_redis.delete(keys.INGEST_ARMED)
    assert ingest_arming.arm(real_redis, real_redis) not in (None, first)
    assert Queue(keys.INGEST_QUEUE, connection=real_redis).count == 2


class _FailingQueuePush(redis.Redis):
    """A client whose pipelines fail (RQ enqueues in a pipeline) but whose plain commands work."""

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        raise redis.ConnectionError("redis went away")


def test_a_failed_enqueue_releases_the_armed_key_for_the_pump(redis_url: str) -> None:
    client = _FailingQueuePush.from_url(redis_url)
    client.set(keys.INGEST_ARMED, "1")
    with pytest.raises(redis.ConnectionError):
        ingest_arming.enqueue_after_arming(client, client)
    assert not client.exists(keys.INGEST_ARMED)
    client.close()


def test_drains_waiting_counts_ingest_and_delivery_jobs_only(real_redis: redis.Redis) -> None:
    """What makes an idle drain with several partitions end its wait: a job in either drain queue."""
    assert not ingest_arming.drains_waiting(real_redis)
    Queue(keys.DEAD_LETTER_QUEUE, connection=real_redis).enqueue("builtins.print")
    assert not ingest_arming.drains_waiting(real_redis)
    Queue(keys.DELIVERY_QUEUE, connection=real_redis).enqueue(keys.DRAIN_OUTBOX_JOB, "http://x/hook")
    assert ingest_arming.drains_waiting(real_redis)
    Queue(keys.DELIVERY_QUEUE, connection=real_redis).empty()
    assert not ingest_arming.drains_waiting(real_redis)
    ingest_arming.enqueue_drain(real_redis)
    assert ingest_arming.drains_waiting(real_redis)
