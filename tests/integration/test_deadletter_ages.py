"""A dead letter's age is true end to end: the drainer stamps the job with its own clock when it gives an
event up, and rq-dashboard's JSON (what its pages render as "Failed … ago" and "Age") shows those times."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry
from rq.job import Job

from plugwatch import dead_letters as deadletters
from plugwatch import keys
from plugwatch.outboxes import only
from plugwatch.settings import Settings
from tests.integration.test_delivery_drain import FAST, start
from tests.support.dashboard import running_dashboard
from tests.support.delivery import emit, make_event, subscribe
from tests.support.servers import wait_until
from tests.support.sinks import Reply, Sink
from worker import delivery
from worker.bootstrap import install
from worker.metrics import DeliveryMetrics

THREE_DAYS = 3 * 86400



def _only_dead_letter(connection: redis.Redis) -> Job:
    wait_until(lambda: len(deadletters.list_all(connection)) == 1, timeout=10)
    [letter] = deadletters.list_all(connection)
    return Job.fetch(letter.job_id, connection=connection)


def test_the_drainer_stamps_ended_at_when_it_gives_up_and_enqueued_at_when_the_event_was_queued(
    redis_url: str, sink: tuple[Sink, str]
) -> None:
    received, url = sink
    received.push(Reply(410, delay=1.0))  # the event waits a second in the outbox before it is given up (410)
    running = start(redis_url, (url,))
    try:
        before = datetime.now(UTC)
        running.send([make_event(1)])
        job = _only_dead_letter(running.connection)
        after = datetime.now(UTC)
    finally:
        running.context.close()
        install(None)
    assert job.enqueued_at is not None
    assert job.ended_at is not None
    slack = timedelta(milliseconds=50)  # the outbox id is Redis' clock
    assert before - slack <= job.enqueued_at <= job.created_at + slack
    assert job.ended_at - job.enqueued_at >= timedelta(seconds=1) - slack
    assert job.ended_at <= after


def test_the_drainer_uses_its_injected_clock_for_ended_at(redis_url: str, sink: tuple[Sink, str]) -> None:
    received, url = sink
    received.set_default(Reply(410))
    settings = Settings.from_env({**FAST, "REDIS_URL": redis_url}, require_enode_secret=False)
    settings = replace(settings, delivery=replace(settings.delivery, downstream_urls=(url,), downstream_key=b"k" * 32))
    connection = redis.Redis.from_url(redis_url)
    subscribe(connection, [url])  # as a worker's start-up does for DOWNSTREAM_WEBHOOK_URLS
    context = delivery.build(settings, connection=connection, metrics=DeliveryMetrics(CollectorRegistry()),
                             clock=lambda: time.time() + 3600)
    try:
        emit(connection, [make_event(1)], [url])
        context.threads.request(only(url))
        job = _only_dead_letter(connection)
    finally:
        context.close()
        connection.close()
    assert job.ended_at is not None
    assert job.ended_at - datetime.now(UTC) > timedelta(minutes=59)


@pytest.mark.slow
@pytest.mark.xdist_group("e2e")
def test_rq_dashboard_shows_an_old_dead_letter_as_old(real_redis: redis.Redis, redis_url: str,
                                                     tmp_path: Path) -> None:
    given_up = time.time() - THREE_DAYS
    job_id = deadletters.add(real_redis, "http://sink.example/hook", make_event(1), reason="HTTP 400", ttl=7 * 86400,
                             event_id="evt_veh-1_1", event_type="vehicle.plugged_in_at_home", now=given_up,
                             enqueued_at=given_up - 60)
    with running_dashboard(redis_url, tmp_path / "dashboard.log") as dashboard:
        listed = httpx.get(f"{dashboard}/0/data/jobs/{keys.DEAD_LETTER_QUEUE}/failed/8/asc/1.json", timeout=10)
        shown = httpx.get(f"{dashboard}/0/data/job/{job_id}.json", timeout=10).json()
    [row] = listed.json()["jobs"]
    assert row["id"] == job_id
    assert _instant(row["ended_at"]) == pytest.approx(given_up, abs=0.01)
    assert _instant(row["created_at"]) == pytest.approx(given_up - 60, abs=0.01)
    assert _instant(shown["ended_at"]) == pytest.approx(given_up, abs=0.01)
    assert _instant(shown["enqueued_at"]) == pytest.approx(given_up - 60, abs=0.01)
    assert shown["status"] == "failed"


def _instant(text: str | None) -> float:
    assert text, "the dashboard shows no time"
    return datetime.fromisoformat(text).timestamp()
