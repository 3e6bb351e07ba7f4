"""`plugwatch status`: a snapshot of queues, dead letters, quarantine, heartbeat and downstream URLs."""

from __future__ import annotations

import json
import time

import pytest
import redis
from click.testing import CliRunner
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry

from cli import main
from ops.status import UrlHealth, read_status, render_text
from plugwatch import keys
from plugwatch.url_state import disable, record_failure, record_slow

NOW = 1_800_000_000.0
URL_A = "https://a.example/hooks/plugwatch"
URL_B = "https://b.example/hooks/plugwatch"


def _queue(status, label):
    return next(queue for queue in status.queues if queue.queue == label)


def _add_dead_letter(connection: redis.Redis) -> None:
    job = Job.create(keys.DEAD_LETTER_JOB, args=(URL_A, "{}"), connection=connection,
                     origin=keys.DEAD_LETTER_QUEUE)
    job.save()
    FailedJobRegistry(keys.DEAD_LETTER_QUEUE, connection=connection).add(job, ttl=3600, exc_string="boom")


def test_empty_redis_reports_every_queue_empty_and_no_heartbeat(fake_redis: redis.Redis) -> None:
    status = read_status(fake_redis, [], NOW)
    assert {queue.queue for queue in status.queues} >= {"ingest", *keys.ALL_QUEUES}
    assert all(queue.depth == 0 and queue.oldest_age_seconds == 0 for queue in status.queues)
    assert (status.dead_letters, status.quarantine, status.heartbeat, status.downstream) == (0, 0, None, ())
    assert "no heartbeat received yet" in render_text(status)


def test_no_worker_needs_attention(fake_redis: redis.Redis) -> None:
    status = read_status(fake_redis, [], NOW)
    assert status.workers == 0
    assert status.problems == ["no worker is registered"]
    assert "  - no worker is registered" in render_text(status)


def test_a_backlog_over_60_seconds_needs_attention(fake_redis: redis.Redis) -> None:
    fake_redis.xadd(keys.INGEST_STREAM, {"d": "a", "b": b"[]", "t": 0}, id=f"{int((NOW - 61) * 1000)}-0")
    assert "ingest: oldest entry waits 61s" in read_status(fake_redis, [], NOW).problems


def test_ingest_backlog_depth_and_oldest_age_come_from_the_stream(fake_redis: redis.Redis) -> None:
    oldest_ms = int((NOW - 90) * 1000)
    fake_redis.xadd(keys.INGEST_STREAM, {"d": "a", "b": b"[]", "t": oldest_ms}, id=f"{oldest_ms}-0")
    fake_redis.xadd(keys.INGEST_STREAM, {"d": "b", "b": b"[]", "t": oldest_ms + 5}, id=f"{oldest_ms + 5000}-0")
    ingest = _queue(read_status(fake_redis, [], NOW), "ingest")
    assert (ingest.depth, ingest.oldest_age_seconds, ingest.failed_jobs) == (2, 90.0, None)


def test_rq_queue_depth_and_age_of_the_oldest_job(fake_redis: redis.Redis) -> None:
    Queue(keys.DELIVERY_QUEUE, connection=fake_redis).enqueue("os.getcwd")
    delivery = _queue(read_status(fake_redis, [], time.time() + 30), keys.DELIVERY_QUEUE)
    assert delivery.depth == 1
    assert 29 <= delivery.oldest_age_seconds <= 60
    assert delivery.failed_jobs == 0


def test_outbox_of_each_configured_url_is_a_queue(fake_redis: redis.Redis) -> None:
    fake_redis.xadd(keys.outbox_stream(URL_A), {"event": "{}"})
    status = read_status(fake_redis, [URL_A], NOW)
    assert _queue(status, f"outbox:{keys.url_key(URL_A)}").depth == 1


def test_dead_letters_are_counted_and_need_attention(fake_redis: redis.Redis) -> None:
    _add_dead_letter(fake_redis)
    status = read_status(fake_redis, [], NOW)
    assert status.dead_letters == 1
    assert _queue(status, keys.DEAD_LETTER_QUEUE).failed_jobs == 1
    assert "1 dead letters" in status.problems


def test_quarantine_entries_are_counted(fake_redis: redis.Redis) -> None:
    for index in range(3):
        fake_redis.xadd(keys.QUARANTINE_STREAM, {"d": str(index), "b": b"x", "reason": "invalid_json", "at": "t"})
    assert read_status(fake_redis, [], NOW).quarantine == 3


def test_heartbeat_age_and_pending_events(fake_redis: redis.Redis) -> None:
    fake_redis.hset(keys.HEARTBEAT, mapping={"at": NOW - 42, "pending_events": 7, "created_at": "x"})
    status = read_status(fake_redis, [], NOW)
    assert status.heartbeat is not None
    assert (status.heartbeat.age_seconds, status.heartbeat.at, status.heartbeat.pending_events) == (42, NOW - 42, 7)
    assert "last heartbeat 42s ago" in render_text(status)
    assert "pendingEvents 7" in render_text(status)


@pytest.mark.parametrize(("stored", "shown"), [("0.5", "0.5"), ("1E3", "1000"), ("2.25e-1", "0.225")])
def test_a_non_integer_pending_events_is_shown_as_a_number(fake_redis: redis.Redis, stored: str, shown: str) -> None:
    """Enode types pendingEvents as a JSON number; the receiver stores it as written."""
    fake_redis.hset(keys.HEARTBEAT, mapping={"at": NOW - 1, "pending_events": stored, "created_at": "x"})
    status = read_status(fake_redis, [], NOW)
    assert f"pendingEvents {shown}" in render_text(status)
    assert json.loads(json.dumps(status.as_dict()))["heartbeat"]["pending_events"] == float(stored)


def test_paused_and_disabled_urls_are_named_with_their_reason(fake_redis: redis.Redis) -> None:
    record_failure(fake_redis, URL_A, head="1-0", attempts=3, error="HTTP 503", paused_until=NOW + 60)
    disable(fake_redis, URL_B, reason="HTTP 410 Gone", now=NOW - 5)
    fake_redis.hset(keys.DOWNSTREAM_URLS, keys.url_key(URL_B), URL_B)  # registered by a worker, not configured
    status = read_status(fake_redis, [URL_A], NOW)
    health = {url.url: (url.health, url.reason) for url in status.downstream}
    assert health == {URL_A: (UrlHealth.PAUSED, "HTTP 503"), URL_B: (UrlHealth.DISABLED, "HTTP 410 Gone")}
    text = render_text(status)
    assert f"PAUSED   {URL_A}" in text
    assert f"DISABLED {URL_B}" in text
    assert status.problems == ["no worker is registered", f"paused: {URL_A}", f"disabled: {URL_B}"]


def test_a_slow_url_is_shown_with_its_raised_read_timeout_but_is_no_problem_by_itself(
    fake_redis: redis.Redis,
) -> None:
    """It delivers, only slowly: a backlog it builds up is a problem through the queue-age check."""
    record_slow(fake_redis, URL_A, read_timeout=60.0, at=NOW - 30)
    status = read_status(fake_redis, [URL_A], NOW)
    (url,) = status.downstream
    assert (url.health, url.read_timeout_seconds) == (UrlHealth.SLOW, 60.0)
    assert url.reason == "answers slowly (last slow answer 30s ago)"
    assert f"SLOW     {URL_A} [{keys.url_key(URL_A)}]: answers slowly (last slow answer 30s ago) " \
           "(read timeout raised to 60 s)" in render_text(status)
    assert status.problems == ["no worker is registered"]
    assert status.as_dict()["downstream"][0]["read_timeout_seconds"] == 60.0


def test_a_slow_url_waiting_for_its_retry_is_paused_and_shows_its_read_timeout(fake_redis: redis.Redis) -> None:
    record_failure(fake_redis, URL_A, head="1-0", attempts=1, error="ReadTimeout: no answer within 15 s",
                   paused_until=NOW + 1, read_timeout=30.0, slow_at=NOW)
    status = read_status(fake_redis, [URL_A], NOW)
    (url,) = status.downstream
    assert (url.health, url.read_timeout_seconds) == (UrlHealth.PAUSED, 30.0)
    assert "ReadTimeout: no answer within 15 s (read timeout raised to 30 s)" in render_text(status)
    assert f"paused: {URL_A}" in status.problems


def test_pause_that_is_over_reads_as_ok(fake_redis: redis.Redis) -> None:
    record_failure(fake_redis, URL_A, head="1-0", attempts=1, error="HTTP 503", paused_until=NOW - 1)
    (url,) = read_status(fake_redis, [URL_A], NOW).downstream
    assert (url.health, url.paused_until, url.reason) == (UrlHealth.OK, None, "")


def test_a_standing_reconcile_suggestion_is_a_problem(fake_redis: redis.Redis) -> None:
    assert read_status(fake_redis, [], NOW).reconcile_suggested is None
    fake_redis.hset(keys.RECONCILE_SUGGESTED, mapping={"at": NOW - 60, "reason": "no Enode heartbeat for 1900 s"})
    status = read_status(fake_redis, [], NOW)
    assert status.reconcile_suggested == "no Enode heartbeat for 1900 s"
    assert "reconcile suggested (no Enode heartbeat for 1900 s): plugwatch enode reconcile" in status.problems


def test_cli_json_against_a_real_redis(redis_url: str, real_redis: redis.Redis) -> None:
    _add_dead_letter(real_redis)
    real_redis.xadd(keys.INGEST_STREAM, {"d": "a", "b": b"[]", "t": 0})
    result = CliRunner().invoke(main, ["status", "--json"], env={"REDIS_URL": redis_url,
                                                                 "DOWNSTREAM_WEBHOOK_URLS": ""})
    assert result.exit_code == 0, result.output
    snapshot = json.loads(result.output)
    assert snapshot["dead_letters"] == 1
    assert {q["queue"]: q["depth"] for q in snapshot["queues"]}["ingest"] == 1
    assert snapshot["needs_attention"] is True
    assert "1 dead letters" in snapshot["problems"]


def test_cli_check_exits_2_when_something_needs_attention(redis_url: str, real_redis: redis.Redis) -> None:
    _add_dead_letter(real_redis)
    result = CliRunner().invoke(main, ["status", "--check"], env={"REDIS_URL": redis_url})
    assert result.exit_code == 2
    assert "dead letters   1" in result.output


@pytest.mark.timeout(30)
def test_cli_reports_unreachable_redis_and_exits_1() -> None:
    from tests.support.servers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    result = CliRunner().invoke(main, ["status"], env={"REDIS_URL": url})
    assert result.exit_code == 1
    assert result.output.startswith(f"plugwatch: cannot reach Redis at {url} (REDIS_URL): ")
    assert len(result.output.splitlines()) == 1
