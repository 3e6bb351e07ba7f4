"""worker.jobs: RQ runs the job functions by dotted path; jobs enqueued under the paths they had before the
restructure (queued drains, dead letters kept for 7 days) still run in a worker (`WorkerJob`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from prometheus_client import CollectorRegistry
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from plugwatch import keys
from plugwatch.settings import DeliverySettings, ProcessSettings, Settings
from tests.support.delivery import subscribe
from worker import jobs
from worker.bootstrap import WorkerContext, bootstrap, install

URL = "http://sink.example/hook"
EVENT = '{"id": "evt_1", "type": "vehicle.plugged_in_at_home"}'


@pytest.fixture
def context(real_redis: redis.Redis, redis_url: str) -> Iterator[WorkerContext]:
    settings = Settings(process=ProcessSettings(redis_url=redis_url),
                        delivery=DeliverySettings(downstream_urls=(URL,), downstream_key=b"k" * 32))
    built = bootstrap(settings, registry=CollectorRegistry(), connection=real_redis, consumer="test")
    subscribe(real_redis, [URL])  # as `python -m worker` does at start-up
    install(built)
    yield built
    install(None)
    built.close()


@pytest.mark.parametrize("old_path", sorted(jobs.MOVED))
def test_every_moved_path_resolves_to_the_function_the_key_names_now(real_redis: redis.Redis, old_path: str) -> None:
    job = jobs.WorkerJob.create(old_path, connection=real_redis)
    assert job.func is getattr(jobs, jobs.MOVED[old_path].rpartition(".")[2])
    assert jobs.MOVED[old_path].startswith("worker.jobs.")


def test_a_dead_letter_kept_from_before_the_move_is_replayed_by_a_worker(
        real_redis: redis.Redis, context: WorkerContext) -> None:
    """rq-dashboard's Requeue of a dead letter whose job names `worker.delivery.jobs.deliver_dead_letter`."""
    job = Job.create("worker.delivery.jobs.deliver_dead_letter", args=(URL, EVENT), connection=real_redis,
                     origin=keys.DEAD_LETTER_QUEUE, status=JobStatus.FAILED, failure_ttl=600)
    pipe = real_redis.pipeline()
    job.save(pipeline=pipe)
    FailedJobRegistry(keys.DEAD_LETTER_QUEUE, connection=real_redis).add(job, ttl=600, exc_string="HTTP 400",
                                                                         pipeline=pipe)
    pipe.execute()
    FailedJobRegistry(keys.DEAD_LETTER_QUEUE, connection=real_redis).requeue(job.id)

    SimpleWorker([keys.DEAD_LETTER_QUEUE], connection=real_redis, job_class=jobs.WorkerJob).work(burst=True)

    [(_, fields)] = real_redis.xrange(keys.outbox_stream(URL))
    assert fields[b"event"] == EVENT.encode()
    assert Queue(keys.DELIVERY_QUEUE, connection=real_redis).count == 1  # its drain, armed as any replay's
    assert FailedJobRegistry(keys.DEAD_LETTER_QUEUE, connection=real_redis).count == 0
