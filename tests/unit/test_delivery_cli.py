"""`plugwatch dead-letters ...` against a real redis-server (the CLI connects via REDIS_URL)."""

from __future__ import annotations

import time

import orjson
import pytest
import redis
from click.testing import CliRunner

from cli import main as cli
from plugwatch import dead_letters as deadletters
from plugwatch import keys
from plugwatch import url_state as state
from plugwatch.signing import decode_secret
from tests.conftest import TEST_DOWNSTREAM_SECRET
from tests.support.delivery import subscribe

URL_A = "http://a.example/hook"
URL_B = "http://b.example/hook"


@pytest.fixture
def env(redis_url: str, real_redis: redis.Redis) -> dict[str, str]:
    subscribe(real_redis, [URL_A, URL_B], decode_secret(TEST_DOWNSTREAM_SECRET))  # as a worker's start-up does
    return {"REDIS_URL": redis_url, "DOWNSTREAM_WEBHOOK_URLS": f"{URL_A},{URL_B}",
            "DOWNSTREAM_WEBHOOK_SECRET": TEST_DOWNSTREAM_SECRET}


def run(env: dict[str, str], *args: str, exit_code: int = 0) -> str:
    result = CliRunner().invoke(cli, ["dead-letters", *args], env=env)
    assert result.exit_code == exit_code, result.output
    return result.output


def letter(connection: redis.Redis, url: str, number: int) -> str:
    body = orjson.dumps({"id": f"evt_{number}", "type": "control.failed"})
    return deadletters.add(connection, url, body, reason=f"HTTP 400: no {number}", ttl=600,
                           event_id=f"evt_{number}", event_type="control.failed")


def test_list_shows_each_dead_letter_and_json_includes_the_event(real_redis: redis.Redis, env: dict[str, str]) -> None:
    job_a, job_b = letter(real_redis, URL_A, 1), letter(real_redis, URL_B, 2)
    listing = run(env, "list")
    assert job_a in listing
    assert job_b in listing
    assert "HTTP 400: no 1" in listing
    [line] = run(env, "list", "--url", URL_B, "--json").strip().splitlines()[:1]
    record = orjson.loads(line)
    assert (record["job_id"], record["event"]["id"], record["url"]) == (job_b, "evt_2", URL_B)


def test_replay_one_by_id_puts_it_back_in_its_outbox(real_redis: redis.Redis, env: dict[str, str]) -> None:
    job_a, job_b = letter(real_redis, URL_A, 1), letter(real_redis, URL_B, 2)
    assert "replayed" in run(env, "replay", job_a)
    assert [entry[1][b"event"] for entry in real_redis.xrange(keys.outbox_stream(URL_A))] == [
        orjson.dumps({"id": "evt_1", "type": "control.failed"})]
    assert [d.job_id for d in deadletters.list_all(real_redis)] == [job_b]


def test_replay_all_and_a_refusal_is_reported_with_a_failing_exit(real_redis: redis.Redis, env: dict[str, str]) -> None:
    letter(real_redis, URL_A, 1)
    refused = letter(real_redis, URL_B, 2)
    state.disable(real_redis, URL_B, reason="HTTP 410", now=time.time())
    output = run(env, "replay", "--all", exit_code=1)
    assert "refused" in output
    assert "1 of 2" in output
    assert [d.job_id for d in deadletters.list_all(real_redis)] == [refused]


def test_replay_needs_exactly_one_selection(env: dict[str, str]) -> None:
    run(env, "replay", exit_code=2)
    run(env, "replay", "--all", "--url", URL_A, exit_code=2)


def test_purge_asks_unless_yes(real_redis: redis.Redis, env: dict[str, str]) -> None:
    letter(real_redis, URL_A, 1)
    letter(real_redis, URL_B, 2)
    run(env, "purge", exit_code=1)  # no answer on stdin: aborted
    assert len(deadletters.list_all(real_redis)) == 2
    assert "1 dead letters deleted" in run(env, "purge", "--url", URL_A, "--yes")
    assert [d.url for d in deadletters.list_all(real_redis)] == [URL_B]


def test_urls_shows_state_and_enable_reenables(real_redis: redis.Redis, env: dict[str, str]) -> None:
    state.disable(real_redis, URL_A, reason="HTTP 410 (410 Gone) on event evt_1", now=time.time())
    state.record_failure(real_redis, URL_B, head="1-0", attempts=3, error="HTTP 503", paused_until=time.time() + 60)
    lines = dict(line.split("\t", 1) for line in run(env, "urls").splitlines())
    assert lines[URL_A].startswith("disabled since")
    assert lines[URL_B].startswith("paused until")
    assert "after 3 attempts: HTTP 503" in lines[URL_B]
    state.record_slow(real_redis, URL_B, read_timeout=30.0, at=time.time())
    lines = dict(line.split("\t", 1) for line in run(env, "urls").splitlines())
    assert "HTTP 503 (slow: read timeout raised to 30 s)" in lines[URL_B]
    state.record_success(real_redis, URL_B)
    lines = dict(line.split("\t", 1) for line in run(env, "urls").splitlines())
    assert lines[URL_B].startswith("slow: read timeout raised to 30 s, last slow answer 20")
    assert "enabled" in run(env, "enable", URL_A)
    assert not state.read_state(real_redis, URL_A).disabled
    run(env, "enable", "http://unknown.example/hook", exit_code=1)
