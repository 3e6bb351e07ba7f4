"""`plugwatch events replay`: its times, its type filter, and the one-line refusals (exit 2) of anything it
cannot do as asked, against a real redis-server (the CLI connects via REDIS_URL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import redis
from click.testing import CliRunner

from cli import main as cli
from ops import events_replay
from plugwatch import delivery_arming, keys, subscriptions
from plugwatch import url_state as state
from tests.conftest import TEST_DOWNSTREAM_SECRET
from tests.support.delivery import make_event, subscribe
from tests.support.event_schema import EVENTS_SCHEMA
from worker.core import EventType

URL = "http://a.example/hook"
NOW_MS = int(datetime(2025, 3, 14, 12, 0, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
def env(redis_url: str, real_redis: redis.Redis) -> dict[str, str]:
    subscribe(real_redis, [URL])  # as the worker's start-up does for DOWNSTREAM_WEBHOOK_URLS
    return {"REDIS_URL": redis_url, "DOWNSTREAM_WEBHOOK_URLS": URL, "DOWNSTREAM_WEBHOOK_SECRET": TEST_DOWNSTREAM_SECRET}


@pytest.mark.parametrize(("text", "expected"), [
    ("2h", NOW_MS - 2 * 3_600_000),
    ("90s", NOW_MS - 90_000),
    ("30m", NOW_MS - 1_800_000),
    ("1.5d", NOW_MS - 129_600_000),
    ("1w", NOW_MS - 604_800_000),
    ("2025-03-14T06:00:00Z", NOW_MS - 6 * 3_600_000),
    ("2025-03-14T07:00:00+01:00", NOW_MS - 6 * 3_600_000),
    ("2025-03-14T06:00:00", NOW_MS - 6 * 3_600_000),  # no offset: UTC
    ("2025-03-14", NOW_MS - 12 * 3_600_000),
    ("2025-03-14T11:59:59.250Z", NOW_MS - 750),
])
def test_times_are_iso_8601_or_that_long_ago(text: str, expected: int) -> None:
    assert events_replay.parse_time(text, NOW_MS) == expected


@pytest.mark.parametrize("text", ["yesterday", "2 hours", "-2h", "2x", "", "2025-13-01"])
def test_other_times_are_refused(text: str) -> None:
    with pytest.raises(events_replay.ReplayError, match="neither an ISO-8601 time nor a duration"):
        events_replay.parse_time(text, NOW_MS)


def test_the_replayable_types_are_the_cores_and_the_catalogs() -> None:
    catalog = json.loads(EVENTS_SCHEMA.read_text())["properties"]["type"]["enum"]
    assert sorted(events_replay.EVENT_TYPES) == sorted(t.value for t in EventType) == sorted(catalog)


def test_a_destination_is_an_active_subscription_and_its_filter_bounds_the_types(fake_redis: redis.Redis) -> None:
    assert events_replay.subscribed_types(fake_redis, URL) is None
    subscriptions.add(fake_redis, URL, types=("control.failed",), key=b"k" * 32, now=0)
    assert events_replay.subscribed_types(fake_redis, URL) == ("control.failed",)
    assert events_replay.replay_types(frozenset(), ("control.failed",)) == {"control.failed"}
    assert events_replay.replay_types(frozenset({"control.failed"}), ()) == {"control.failed"}
    with pytest.raises(events_replay.ReplayError, match="not among the types this URL is subscribed to"):
        events_replay.replay_types(frozenset({"vehicle.plugged_in_at_home"}), ("control.failed",))
    subscriptions.remove(fake_redis, URL, now=1)
    assert events_replay.subscribed_types(fake_redis, URL) is None


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "2h"], "--url and --since are required"),
    (["--url", URL], "--url and --since are required"),
    (["--url", URL, "--since", "yesterday"], "'yesterday' is neither an ISO-8601 time nor a duration"),
    (["--url", URL, "--since", "2h", "--until", "3h"], "--until must be later than --since"),
    (["--url", URL, "--since", "2h", "--type", "vehicle.plugged_in"], "unknown event type 'vehicle.plugged_in'"),
    (["--url", URL, "--sinse", "2h"], "No such option '--sinse'"),
    (["--url", URL, "--since"], "Option '--since' requires an argument"),
    (["--url", "http://b.example/hook", "--since", "2h"], "http://b.example/hook is not subscribed"),
])
def test_what_cannot_be_done_is_one_line_and_exit_2(
    real_redis: redis.Redis, env: dict[str, str], args: list[str], message: str,
) -> None:
    real_redis.xadd(keys.EVENTS_STREAM, {"event": make_event(1)})
    result = CliRunner().invoke(cli, ["events", "replay", *args], env=env)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith("plugwatch events replay: "), result.stderr
    assert message in result.stderr, result.stderr
    assert delivery_arming.backlog(real_redis, URL) == 0


def test_a_disabled_url_is_refused_until_enabled(real_redis: redis.Redis, env: dict[str, str]) -> None:
    body = make_event(1)
    real_redis.xadd(keys.EVENTS_STREAM, {"event": body})
    state.disable(real_redis, URL, reason="HTTP 410", now=0)
    refused = CliRunner().invoke(cli, ["events", "replay", "--url", URL, "--since", "1h"], env=env)
    assert (refused.exit_code, refused.stderr) == (2, f"plugwatch events replay: {URL} is disabled; re-enable it "
                                                      f"first: plugwatch dead-letters enable {URL}\n")
    state.enable(real_redis, URL)
    queued = CliRunner().invoke(cli, ["events", "replay", "--url", URL, "--since", "1h"], env=env)
    assert queued.exit_code == 0, queued.output
    assert queued.stdout.startswith("queued 1 events from "), queued.stdout
    assert [fields[b"event"] for _, fields in real_redis.xrange(keys.outbox_stream(URL))] == [body]


def test_a_window_older_than_the_stream_says_what_it_still_holds(real_redis: redis.Redis, env: dict[str, str]) -> None:
    body = make_event(1)
    real_redis.xadd(keys.EVENTS_STREAM, {"event": body}, id="1741975200000-0")  # 2025-03-14T18:00:00Z
    result = CliRunner().invoke(cli, ["events", "replay", "--url", URL, "--since", "2025-03-14T17:00:00Z"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stderr == ("note: plugwatch:events holds nothing older than 2025-03-14T18:00:00.000Z "
                             "(PLUGWATCH_EVENTS_STREAM_MAXLEN=100000)\n")
    assert result.stdout.startswith("queued 1 events from 2025-03-14T17:00:00.000Z to now for " + URL)
    assert [fields[b"event"] for _, fields in real_redis.xrange(keys.outbox_stream(URL))] == [body]


def test_paging_through_a_long_window_keeps_stream_order(real_redis: redis.Redis) -> None:
    bodies = [make_event(n) for n in range(2 * events_replay.PAGE + 5)]
    pipe = real_redis.pipeline()
    for index, body in enumerate(bodies):
        pipe.xadd(keys.EVENTS_STREAM, {"event": body}, id=f"{NOW_MS}-{index}")  # one millisecond, many entries
    pipe.execute()
    done = events_replay.replay(real_redis, URL, events_replay.Window(NOW_MS, NOW_MS + 1), queues=real_redis)
    assert (done.queued, done.first_id, done.last_id) == (len(bodies), f"{NOW_MS}-0", f"{NOW_MS}-{len(bodies) - 1}")
    assert [fields[b"event"] for _, fields in real_redis.xrange(keys.outbox_stream(URL))] == bodies
