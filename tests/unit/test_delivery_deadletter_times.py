"""plugwatch.dead_letters: a dead letter's RQ job carries when it was given up (`ended_at`) and when its
event entered the outbox (`created_at`, `enqueued_at`), so rq-dashboard's "Failed … ago" and "Age" are true."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from rq.job import Job

from plugwatch import dead_letters as deadletters

URL = "http://a.example/hook"
BODY = b'{"id": "evt_1", "type": "vehicle.plugged_in_at_home"}'
THREE_DAYS = 3 * 86400


@pytest.fixture(params=["fake", "real"])
def connection(request: pytest.FixtureRequest) -> redis.Redis:
    client: redis.Redis = request.getfixturevalue("fake_redis" if request.param == "fake" else "real_redis")
    return client


def add(connection: redis.Redis, **times: float) -> Job:
    job_id = deadletters.add(connection, URL, BODY, reason="HTTP 400: bad", ttl=7 * 86400, event_id="evt_1",
                             event_type="vehicle.plugged_in_at_home", **times)
    return Job.fetch(job_id, connection=connection)


def at(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def test_ended_at_is_the_time_the_event_was_given_up(connection: redis.Redis) -> None:
    given_up = time.time() - THREE_DAYS
    job = add(connection, now=given_up)
    assert job.ended_at is not None
    assert abs(job.ended_at - at(given_up)) < timedelta(milliseconds=1)
    [letter] = deadletters.list_all(connection)
    assert abs(datetime.fromisoformat(letter.dead_lettered_at) - at(given_up)) < timedelta(milliseconds=1)


def test_created_and_enqueued_at_are_when_the_event_entered_the_outbox(connection: redis.Redis) -> None:
    given_up = time.time() - THREE_DAYS
    queued = given_up - 86400
    job = add(connection, now=given_up, enqueued_at=queued)
    assert job.enqueued_at is not None
    assert abs(job.enqueued_at - at(queued)) < timedelta(milliseconds=1)
    assert abs(job.created_at - at(queued)) < timedelta(milliseconds=1)
    assert job.ended_at is not None
    assert job.ended_at - job.enqueued_at == pytest.approx(timedelta(days=1), abs=timedelta(milliseconds=1))


def test_without_times_every_timestamp_is_now(connection: redis.Redis) -> None:
    before = at(time.time())
    job = add(connection)
    after = at(time.time())
    assert job.ended_at is not None
    assert job.enqueued_at is not None
    for stamp in (job.created_at, job.enqueued_at, job.ended_at):
        assert before - timedelta(milliseconds=1) <= stamp <= after + timedelta(milliseconds=1)


def test_an_outbox_time_after_the_give_up_time_is_not_shown_as_later(connection: redis.Redis) -> None:
    """Stream ids carry Redis' clock, `now` the worker's: a skew never makes a job enqueued after it ended."""
    given_up = time.time() - 10
    job = add(connection, now=given_up, enqueued_at=given_up + 2)
    assert job.enqueued_at is not None
    assert job.ended_at is not None
    assert job.created_at <= job.ended_at
    assert job.enqueued_at <= job.ended_at
