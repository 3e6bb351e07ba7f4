"""Dead letters: events a URL would not take, kept as failed RQ jobs on `plugwatch-dead-letters`.

Each dead letter is a job `worker.jobs.deliver_dead_letter(url, event_json)` placed straight in
the queue's FailedJobRegistry with a failure TTL (default 7 days) and, as its exception text, why it was
given up.  rq-dashboard lists them; its Requeue button re-runs the job in a worker, and so does
`plugwatch dead-letters replay`, in-process: the event's exact JSON goes back to the end of the URL's
outbox (same id, same bytes) and is delivered like any other event, with retries.

The jobs live in RQ's Redis (`queues`: RQ_REDIS_URL, default REDIS_URL), where rq-dashboard finds them; the
outbox and the subscription they go back to live in the data Redis (`connection`).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.registry import FailedJobRegistry
from rq.results import Result

from plugwatch import keys, outboxes, subscriptions
from plugwatch.delivery_arming import kick
from plugwatch.outboxes import Outbox
from plugwatch.settings import Settings
from plugwatch.url_state import read_state

REPLAY_JOB_TIMEOUT = 60


class ReplayRefused(Exception):
    """The dead letter cannot be replayed now (its URL is disabled or no longer subscribed)."""


@dataclass(frozen=True)
class DeadLetter:
    job_id: str
    url: str
    event_json: str
    event_id: str
    event_type: str
    reason: str
    dead_lettered_at: str


def registry(queues: redis.Redis) -> FailedJobRegistry:
    return FailedJobRegistry(keys.DEAD_LETTER_QUEUE, connection=queues)


def add(
    queues: redis.Redis, url: str, body: bytes, *, reason: str, ttl: int, event_id: str, event_type: str,
    now: float | None = None, enqueued_at: float | None = None,
) -> str:
    """Keep `body` for `url` as a failed, replayable job; returns the job id.

    `now` (unix seconds; the current time if not given) is when the event was given up: the job's `ended_at`,
    which rq-dashboard shows as "Failed … ago".  `enqueued_at` is when the event entered the URL's outbox
    (default `now`): the job's `created_at` and `enqueued_at`, the dashboard's "Age"."""
    ended = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    queued = ended if enqueued_at is None else datetime.fromtimestamp(enqueued_at, UTC)
    job = Job.create(
        keys.DEAD_LETTER_JOB, args=(url, body.decode("utf-8", "surrogateescape")), connection=queues,
        id=f"dl-{keys.url_key(url)}-{uuid.uuid4().hex[:16]}", origin=keys.DEAD_LETTER_QUEUE,
        status=JobStatus.FAILED, timeout=REPLAY_JOB_TIMEOUT, failure_ttl=ttl, result_ttl=ttl,
        description=f"{event_type or 'event'} {event_id or '?'} -> {url}",
        meta={"url": url, "event_id": event_id, "event_type": event_type, "reason": reason,
              "at": ended.isoformat(timespec="microseconds")},
    )
    job.created_at = job.enqueued_at = min(queued, ended)
    job.ended_at = ended
    queue = Queue(keys.DEAD_LETTER_QUEUE, connection=queues)
    pipe = queues.pipeline()
    pipe.sadd(Queue.redis_queues_keys, queue.key)  # so rq-dashboard lists the queue
    job.save(pipeline=pipe)
    registry(queues).add(job, ttl=ttl, exc_string=reason, pipeline=pipe)
    Result.create_failure(job, ttl, exc_string=reason, pipeline=pipe)
    pipe.execute()
    return job.id


def list_all(queues: redis.Redis, url: str | None = None) -> list[DeadLetter]:
    """Dead letters, oldest first; only `url`'s when given."""
    ids = registry(queues).get_job_ids()
    letters = [_from_job(job) for job in Job.fetch_many(ids, connection=queues) if job is not None]
    return sorted((letter for letter in letters if url is None or letter.url == url),
                  key=lambda letter: letter.dead_lettered_at)


def requeue_event(connection: redis.Redis, queues: redis.Redis, settings: Settings, url: str,
                  event_json: str) -> list[Outbox]:
    """Put the event back at the end of `url`'s outbox (in its user's partition) and arm its drain (what a
    replay does); return the outboxes this armed (a worker starts them in its own drainer threads)."""
    if not subscriptions.is_active(connection, url):
        raise ReplayRefused(f"{url} is not subscribed (any more): plugwatch subscriptions list")
    if read_state(connection, url).disabled:
        raise ReplayRefused(f"{url} is disabled; re-enable it first: plugwatch dead-letters enable {url}")
    body = event_json.encode("utf-8", "surrogateescape")
    box = outboxes.for_event(url, body, settings.process.partitions)
    connection.xadd(box.stream, {"event": body})
    return kick(connection, queues, [box])


def replay(connection: redis.Redis, queues: redis.Redis, settings: Settings, job_id: str) -> DeadLetter:
    """Replay one dead letter in this process and remove it; raises KeyError or ReplayRefused."""
    job = Job.fetch(job_id, connection=queues) if queues.exists(Job.key_for(job_id)) else None
    if job is None or job.origin != keys.DEAD_LETTER_QUEUE:
        raise KeyError(job_id)
    letter = _from_job(job)
    requeue_event(connection, queues, settings, letter.url, letter.event_json)
    registry(queues).remove(job, delete_job=True)
    return letter


def purge(queues: redis.Redis, url: str | None = None) -> int:
    """Delete dead letters (all, or `url`'s); returns how many."""
    letters = list_all(queues, url)
    dead_letters = registry(queues)
    for letter in letters:
        dead_letters.remove(letter.job_id, delete_job=True)
    return len(letters)


def _from_job(job: Job) -> DeadLetter:
    url, event_json = job.args
    meta = job.meta or {}
    latest = job.latest_result()
    reason = latest.exc_string if latest is not None and latest.exc_string else meta.get("reason", "")
    return DeadLetter(
        job_id=job.id, url=url, event_json=event_json, event_id=meta.get("event_id", ""),
        event_type=meta.get("event_type", ""), reason=(reason or "").strip(), dead_lettered_at=meta.get("at", ""),
    )
