"""plugwatch.dead_letters: dead letters are replayable RQ failed jobs with a bounded TTL."""

from __future__ import annotations

import time

import pytest
import redis
from rq import Queue
from rq.job import Job

from plugwatch import dead_letters as deadletters
from plugwatch import keys
from plugwatch import url_state as state
from plugwatch.settings import DeliverySettings, Settings
from tests.support.delivery import subscribe

URL = "http://a.example/hook"
BODY = '{"id": "evt_1", "type": "vehicle.plugged_in_at_home", "data": {"ä": 1}}'.encode()


@pytest.fixture(params=["fake", "real"])
def connection(request: pytest.FixtureRequest) -> redis.Redis:
    client: redis.Redis = request.getfixturevalue("fake_redis" if request.param == "fake" else "real_redis")
    return client


@pytest.fixture
def settings(connection: redis.Redis) -> Settings:
    subscribe(connection, [URL])
    return Settings(delivery=DeliverySettings(downstream_urls=(URL,), downstream_key=b"k" * 32))


def add(connection: redis.Redis, body: bytes = BODY, url: str = URL) -> str:
    return deadletters.add(connection, url, body, reason="HTTP 400: bad", ttl=7 * 86400,
                           event_id="evt_1", event_type="vehicle.plugged_in_at_home")


def test_a_dead_letter_is_a_failed_job_on_the_dead_letter_queue_with_a_bounded_ttl(connection: redis.Redis) -> None:
    job_id = add(connection)
    registry = deadletters.registry(connection)
    assert registry.get_job_ids() == [job_id]
    expires = registry.get_expiration_time(Job.fetch(job_id, connection=connection)).timestamp()
    assert time.time() + 7 * 86400 - 60 < expires <= time.time() + 7 * 86400 + 1
    job = Job.fetch(job_id, connection=connection)
    assert (job.func_name, job.args, job.origin) == (keys.DEAD_LETTER_JOB, (URL, BODY.decode()), keys.DEAD_LETTER_QUEUE)
    assert 0 < connection.ttl(job.key) <= 7 * 86400
    assert keys.DEAD_LETTER_QUEUE in [queue.name for queue in Queue.all(connection=connection)]


def test_list_shows_the_reason_and_the_event(connection: redis.Redis) -> None:
    add(connection)
    add(connection, url="http://b.example/hook")
    [letter] = deadletters.list_all(connection, URL)
    assert (letter.url, letter.event_id, letter.event_type) == (URL, "evt_1", "vehicle.plugged_in_at_home")
    assert letter.event_json.encode() == BODY
    assert letter.reason == "HTTP 400: bad"
    assert len(deadletters.list_all(connection)) == 2


def test_replay_puts_the_same_bytes_back_into_the_outbox_and_arms_the_drain(
    connection: redis.Redis, settings: Settings
) -> None:
    job_id = add(connection)
    deadletters.replay(connection, connection, settings, job_id)
    [(_, fields)] = connection.xrange(keys.outbox_stream(URL))
    assert fields == {b"event": BODY}
    assert deadletters.list_all(connection) == []
    assert [job.args for job in Queue(keys.DELIVERY_QUEUE, connection=connection).get_jobs()] == [(URL,)]


def test_replay_is_refused_while_the_url_is_disabled(connection: redis.Redis, settings: Settings) -> None:
    job_id = add(connection)
    state.disable(connection, URL, reason="HTTP 410", now=time.time())
    with pytest.raises(deadletters.ReplayRefused, match="disabled"):
        deadletters.replay(connection, connection, settings, job_id)
    assert [letter.job_id for letter in deadletters.list_all(connection)] == [job_id]
    assert connection.xlen(keys.outbox_stream(URL)) == 0


def test_replay_is_refused_for_a_url_no_longer_subscribed(connection: redis.Redis) -> None:
    job_id = add(connection)
    with pytest.raises(deadletters.ReplayRefused, match="not subscribed"):
        deadletters.replay(connection, connection, Settings(), job_id)


def test_replay_of_an_unknown_id_raises_key_error(connection: redis.Redis, settings: Settings) -> None:
    with pytest.raises(KeyError):
        deadletters.replay(connection, connection, settings, "dl-nope")


def test_purge_deletes_all_or_one_urls_dead_letters(connection: redis.Redis) -> None:
    add(connection)
    add(connection, url="http://b.example/hook")
    assert deadletters.purge(connection, URL) == 1
    assert [letter.url for letter in deadletters.list_all(connection)] == ["http://b.example/hook"]
    assert deadletters.purge(connection) == 1
    assert deadletters.list_all(connection) == []


def test_a_body_that_is_not_utf8_survives_the_round_trip(connection: redis.Redis, settings: Settings) -> None:
    body = b'{"id": "evt_\xff"}'
    deadletters.replay(connection, connection, settings, add(connection, body))
    [(_, fields)] = connection.xrange(keys.outbox_stream(URL))
    assert fields[b"event"] == body
