"""`plugwatch events replay`: the events `plugwatch:events` holds for a window go to a URL again, same ids and
bytes, through its outbox and a real `python -m worker` process (real redis-server, real uvicorn sink)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import redis
from click.testing import CliRunner

from cli import main as cli
from plugwatch import delivery_arming, keys
from plugwatch.settings import whsec_key
from tests.conftest import TEST_DOWNSTREAM_SECRET
from tests.support import eventlog
from tests.support.delivery import start_worker, subscribe
from tests.support.servers import Process, base_env, wait_until
from tests.support.sinks import Sink
from tests.unit.test_signing import spec_verify

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

T0 = datetime(2025, 3, 14, 6, 0, tzinfo=UTC)  # the stream's entries below are committed a minute apart from here


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def env(redis_url: str, real_redis: redis.Redis, sink: tuple[Sink, str]) -> dict[str, str]:
    # subscribed as the worker's start-up will do it (the CLI may run before the worker is up)
    subscribe(real_redis, [sink[1]], whsec_key("DOWNSTREAM_WEBHOOK_SECRET", TEST_DOWNSTREAM_SECRET))
    return base_env(REDIS_URL=redis_url, DOWNSTREAM_WEBHOOK_URLS=sink[1],
                    DOWNSTREAM_WEBHOOK_SECRET=TEST_DOWNSTREAM_SECRET, PLUGWATCH_METRICS_PORT="0",
                    PLUGWATCH_PUMP_INTERVAL_SECONDS="0.2")


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[Process]:
    process = start_worker(env, tmp_path / "worker.log")
    yield process
    process.stop(timeout=10)


def replay(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli, ["events", "replay", *args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def core_events(count: int) -> list[bytes]:
    """Events as the core emits them (real ids, every type), at least `count`."""
    log = eventlog.generate(7, users=8, events_per_user=60)
    bodies = eventlog.reference(log)[1]
    assert len(bodies) >= count
    return bodies[:count]


def commit_a_minute_apart(connection: redis.Redis, bodies: list[bytes]) -> None:
    start_ms = int(T0.timestamp() * 1000)
    for index, body in enumerate(bodies):
        connection.xadd(keys.EVENTS_STREAM, {"event": body}, id=f"{start_ms + index * 60_000}-0")


def delivered(connection: redis.Redis, sink: Sink, url: str, count: int) -> list[bytes]:
    """Wait until `url` has nothing waiting and the sink accepted `count` requests; every request signed."""
    wait_until(lambda: len(sink.accepted()) >= count and delivery_arming.backlog(connection, url) == 0, timeout=30)
    assert all(spec_verify(TEST_DOWNSTREAM_SECRET, r.headers, r.body) for r in sink.requests)
    assert all(r.webhook_id == orjson.loads(r.body)["id"] for r in sink.requests)
    return [r.body for r in sink.requests]


def same_per_vehicle(got: list[bytes], wanted: list[bytes]) -> bool:
    """The same bodies, and each vehicle's (or, without one, each user's) in the same order: what parallel
    delivery keeps (different vehicles' events may interleave)."""
    def by_key(bodies: list[bytes]) -> dict[str, list[bytes]]:
        order: dict[str, list[bytes]] = {}
        for body in bodies:
            event = orjson.loads(body)
            order.setdefault(event["vehicleId"] or f"user:{event['userId']}", []).append(body)
        return order
    return sorted(got) == sorted(wanted) and by_key(got) == by_key(wanted)


def test_replay_since_resends_exactly_the_windows_events_with_identical_bytes(
    real_redis: redis.Redis, sink: tuple[Sink, str], env: dict[str, str], worker: Process,
) -> None:
    received, url = sink
    bodies = core_events(30)
    commit_a_minute_apart(real_redis, bodies)
    since, until = _iso(T0 + timedelta(minutes=10)), _iso(T0 + timedelta(minutes=20))

    output = replay(env, "--url", url, "--since", since, "--until", until)

    assert output.startswith("queued 10 events from 2025-03-14T06:10:00.000Z to 2025-03-14T06:20:00.000Z"), output
    assert same_per_vehicle(delivered(real_redis, received, url, 10), bodies[10:20])  # [since, until)


def test_replay_with_type_sends_only_that_type(
    real_redis: redis.Redis, sink: tuple[Sink, str], env: dict[str, str], worker: Process,
) -> None:
    received, url = sink
    bodies = core_events(120)
    commit_a_minute_apart(real_redis, bodies)
    wanted = {"control.failed", "vehicle.unplugged_from_home"}
    expected = [body for body in bodies if orjson.loads(body)["type"] in wanted]
    assert 0 < len(expected) < len(bodies)

    output = replay(env, "--url", url, "--since", _iso(T0), "--type", "control.failed",
                    "--type", "vehicle.unplugged_from_home")

    assert output.startswith(f"queued {len(expected)} events of type control.failed, vehicle.unplugged_from_home")
    assert same_per_vehicle(delivered(real_redis, received, url, len(expected)), expected)


def test_events_the_worker_delivered_are_sent_again_with_the_same_ids_and_bytes(
    real_redis: redis.Redis, sink: tuple[Sink, str], env: dict[str, str], worker: Process,
) -> None:
    """The whole path: Enode deliveries in, events committed and delivered live, then replayed by `--since 1h`."""
    received, url = sink
    log = eventlog.generate(11, users=5, events_per_user=30)
    expected = eventlog.reference(log, eventlog.epoch_config(real_redis))[1]
    eventlog.feed(real_redis, eventlog.batch(log, size=(1, 5), rng=random.Random(11)))
    live = delivered(real_redis, received, url, len(expected))
    assert sorted(live) == sorted(expected)

    output = replay(env, "--url", url, "--since", "1h")

    assert output.startswith(f"queued {len(expected)} events from "), output
    everything = delivered(real_redis, received, url, 2 * len(expected))
    assert same_per_vehicle(everything[len(live):], live)  # same events, same bytes, each vehicle's in order


def test_an_empty_window_says_so_and_queues_nothing(
    real_redis: redis.Redis, sink: tuple[Sink, str], env: dict[str, str],
) -> None:
    _, url = sink
    commit_a_minute_apart(real_redis, core_events(5))
    output = replay(env, "--url", url, "--since", _iso(T0 + timedelta(hours=1)))
    assert output == "no events in plugwatch:events from 2025-03-14T07:00:00.000Z to now; nothing queued\n"
    assert delivery_arming.backlog(real_redis, url) == 0
