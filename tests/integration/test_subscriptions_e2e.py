"""Subscriptions end to end: `plugwatch subscriptions` against real `python -m worker` processes, a real
redis-server and real HTTP sinks (uvicorn); events enter as Enode deliveries on the ingest stream, so the
worker's own commit routes them.  Signatures are checked with the `standardwebhooks` package."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
import redis
from click.testing import CliRunner
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from cli import main as cli
from plugwatch import dead_letters as deadletters
from plugwatch import keys, subscriptions
from tests.conftest import TEST_DOWNSTREAM_SECRET
from tests.support.delivery import start_worker
from tests.support.eventlog import batch, epoch_config, feed, generate, reference
from tests.support.servers import Process, base_env, wait_until
from tests.support.sinks import Received, Reply, Sink, SinkServer

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

SECRET_A = TEST_DOWNSTREAM_SECRET
AT_HOME = "vehicle.plugged_in_at_home,vehicle.unplugged_from_home"
FAILURES = "control.failed,control.failure_streak"
PROBE_SEEDS = itertools.count(1000)


@pytest.fixture
def sinks() -> Iterator[tuple[Sink, Sink, SinkServer, SinkServer]]:
    first, second = Sink(), Sink()
    with SinkServer(first) as one, SinkServer(second) as two:
        yield first, second, one, two


@pytest.fixture
def urls(sinks: tuple[Sink, Sink, SinkServer, SinkServer]) -> tuple[str, str]:
    return sinks[2].url + "/hook", sinks[3].url + "/hook"


@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    return base_env(REDIS_URL=redis_url, PLUGWATCH_METRICS_PORT="0", PLUGWATCH_PUMP_INTERVAL_SECONDS="0.2",
                    PLUGWATCH_DELIVERY_BACKOFF_BASE_SECONDS="0.05", PLUGWATCH_DELIVERY_BACKOFF_MAX_SECONDS="0.3",
                    PLUGWATCH_DELIVERY_INLINE_WAIT_SECONDS="0.5")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.stop(timeout=10)


def worker(workers: list[Process], env: dict[str, str], tmp_path: Path, **overrides: str) -> Process:
    process = start_worker({**env, **overrides}, tmp_path / f"worker-{len(workers)}.log")
    workers.append(process)
    return process


def plugwatch(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def send_log(connection: redis.Redis, seed: int, users: int = 8) -> list[bytes]:
    """Put a generated Enode log on the ingest stream (as the receiver does); return what it must emit."""
    events = generate(seed, users=users, events_per_user=30)
    feed(connection, batch(events, size=(1, 8), rng=random.Random(seed)))
    _, emitted = reference(events, epoch_config(connection))
    return emitted


def of_types(events: list[bytes], types: str) -> dict[str, bytes]:
    wanted = types.split(",")
    return {orjson.loads(body)["id"]: body for body in events if orjson.loads(body)["type"] in wanted}


def verifies(secret: str, received: Received) -> bool:
    try:
        Webhook(secret).verify(received.body, received.headers)
    except WebhookVerificationError:
        return False
    return True


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def test_two_subscriptions_with_their_own_secrets_and_filters_each_receive_exactly_their_events(
    real_redis: redis.Redis, sinks: tuple, urls: tuple[str, str], env: dict[str, str], workers: list[Process],
    tmp_path: Path,
) -> None:
    at_home, failures, _, _ = sinks
    plugwatch(env, "subscriptions", "add", urls[0], "--types", AT_HOME, "--secret", SECRET_A)
    secret_b = last_line(plugwatch(env, "subscriptions", "add", urls[1], "--types", FAILURES))
    assert secret_b.startswith("whsec_")
    assert secret_b != SECRET_A
    worker(workers, env, tmp_path)
    emitted = send_log(real_redis, seed=3)
    expected_a, expected_b = of_types(emitted, AT_HOME), of_types(emitted, FAILURES)
    assert expected_a
    assert expected_b
    at_home.wait_for(len(expected_a), accepted=True, timeout=60)
    failures.wait_for(len(expected_b), accepted=True, timeout=60)
    wait_until(lambda: real_redis.xlen(keys.EVENTS_STREAM) == len(emitted), timeout=30)
    assert {r.webhook_id: r.body for r in at_home.requests} == expected_a
    assert {r.webhook_id: r.body for r in failures.requests} == expected_b
    assert all(verifies(SECRET_A, r) and not verifies(secret_b, r) for r in at_home.requests)
    assert all(verifies(secret_b, r) and not verifies(SECRET_A, r) for r in failures.requests)
    listing = [orjson.loads(line) for line in plugwatch(env, "subscriptions", "list", "--json").splitlines()]
    assert {(row["url"], row["state"], row["backlog"]) for row in listing} == {(urls[0], "active", 0),
                                                                                (urls[1], "active", 0)}
    assert secret_b not in plugwatch(env, "subscriptions", "list", "--json")


def test_add_rotate_and_remove_take_effect_on_a_running_worker(
    real_redis: redis.Redis, sinks: tuple, urls: tuple[str, str], env: dict[str, str], workers: list[Process],
    tmp_path: Path,
) -> None:
    first, second, _, _ = sinks
    plugwatch(env, "subscriptions", "add", urls[0], "--secret", SECRET_A)
    worker(workers, env, tmp_path)
    one = send_log(real_redis, seed=11, users=2)
    first.wait_for(len(one), accepted=True, timeout=30)

    secret_b = last_line(plugwatch(env, "subscriptions", "add", urls[1]))  # while the worker runs
    two = send_log(real_redis, seed=12, users=2)
    second.wait_for(len(two), accepted=True, timeout=30)
    assert {r.body for r in second.requests} == set(two)
    assert all(verifies(secret_b, r) for r in second.requests)

    new_secret = last_line(plugwatch(env, "subscriptions", "rotate-secret", urls[0]))
    probe_until(real_redis, first, lambda r: len(signatures(r)) == 2)  # the worker's keys follow in ~1 s
    start = len(first.requests)
    three = send_log(real_redis, seed=13, users=2)
    received = first.wait_for(start + len(three), timeout=30)[start:]
    assert {r.body for r in received} == set(three)
    for request in received:  # both signatures, the new one first; each key alone verifies
        assert len(signatures(request)) == 2
        assert verifies(new_secret, request)
        assert verifies(SECRET_A, request)
        assert verifies(new_secret, only_signature(request, 0))
        assert verifies(SECRET_A, only_signature(request, 1))

    plugwatch(env, "subscriptions", "rotate-secret", urls[0], "--expire-old")
    probe_until(real_redis, first, lambda r: len(signatures(r)) == 1)
    start = len(first.requests)
    four = send_log(real_redis, seed=14, users=2)
    received = first.wait_for(start + len(four), timeout=30)[start:]
    assert all(verifies(new_secret, r) and not verifies(SECRET_A, r) for r in received)

    wait_until(lambda: real_redis.xlen(keys.outbox_stream(urls[1])) == 0, timeout=30)  # four reached it too
    assert "removed" in plugwatch(env, "subscriptions", "remove", urls[1])
    before = len(second.requests)
    start = len(first.requests)
    five = send_log(real_redis, seed=15, users=2)
    first.wait_for(start + len(five), timeout=30)
    wait_until(lambda: real_redis.xlen(keys.INGEST_STREAM) == 0, timeout=20)
    assert len(second.requests) == before  # committed after the removal: never routed to it
    wait_until(lambda: urls[1] not in plugwatch(env, "subscriptions", "list"), timeout=10)


def signatures(received: Received) -> list[str]:
    return received.headers["webhook-signature"].split(" ")


def only_signature(received: Received, index: int) -> Received:
    """The request as if it carried only its `index`-th signature."""
    headers = {**received.headers, "webhook-signature": signatures(received)[index]}
    return replace(received, headers=headers)


def probe_until(connection: redis.Redis, sink: Sink, done: Callable[[Received], bool]) -> None:
    """Send small logs until the sink receives a request for which `done` holds (a worker's view of the
    subscriptions follows a change within about a second; the test does not time it)."""
    for _ in range(40):
        seed = next(PROBE_SEEDS)  # a new log each time: a log already applied emits nothing again
        start = len(sink.requests)
        expected = len(send_log(connection, seed=seed, users=1))
        received = sink.wait_for(start + expected, timeout=30)[start:]
        if received and done(received[-1]):
            return
    raise AssertionError("the worker never took up the change")


def test_302_then_401_for_a_while_then_200_receives_every_event_and_410_still_disables(
    real_redis: redis.Redis, sinks: tuple, urls: tuple[str, str], env: dict[str, str], workers: list[Process],
    tmp_path: Path,
) -> None:
    flaky, gone, _, _ = sinks
    flaky.push(*[Reply(302, headers={"location": "http://127.0.0.1:9/elsewhere"})] * 4, *[Reply(401)] * 4)
    gone.set_default(Reply(410))
    plugwatch(env, "subscriptions", "add", urls[0], "--secret", SECRET_A)
    plugwatch(env, "subscriptions", "add", urls[1], "--secret", SECRET_A)
    worker(workers, env, tmp_path)
    emitted = send_log(real_redis, seed=21, users=3)
    accepted = flaky.wait_for(len(emitted), accepted=True, timeout=60)
    assert sorted(r.body for r in accepted) == sorted(emitted)
    assert [r.status for r in flaky.requests[:8]] == [302] * 4 + [401] * 4
    assert [r.path for r in flaky.requests] == ["/hook"] * len(flaky.requests)  # the redirect is not followed
    assert deadletters.list_all(real_redis, urls[0]) == []
    wait_until(lambda: len(deadletters.list_all(real_redis, urls[1])) == len(emitted), timeout=30)
    # the first 410 disables the URL; what was already in flight beside it (parallel delivery) is all it got
    assert 1 <= len(gone.requests) <= 16
    assert {r.status for r in gone.requests} == {410}
    rows = {row["url"]: row for row in map(orjson.loads, plugwatch(env, "subscriptions", "list", "--json").split())}
    assert rows[urls[1]]["state"] == "disabled"
    assert rows[urls[1]]["dead_letters"] == len(emitted)


@pytest.mark.parametrize("purge", [False, True])
def test_a_removed_url_drains_or_purges_its_backlog_and_is_then_forgotten(
    real_redis: redis.Redis, sinks: tuple, urls: tuple[str, str], env: dict[str, str], workers: list[Process],
    tmp_path: Path, purge: bool,
) -> None:
    sink, other, server, _ = sinks
    server.down()
    plugwatch(env, "subscriptions", "add", urls[0], "--secret", SECRET_A)
    plugwatch(env, "subscriptions", "add", urls[1], "--secret", SECRET_A)
    worker(workers, env, tmp_path)
    emitted = send_log(real_redis, seed=31, users=3)
    other.wait_for(len(emitted), accepted=True, timeout=30)
    assert real_redis.xlen(keys.outbox_stream(urls[0])) == len(emitted)
    wait_until(lambda: urls[0] in plugwatch(env, "status"), timeout=10)

    output = plugwatch(env, "subscriptions", "remove", urls[0], *(["--purge"] if purge else []))
    if purge:
        assert f"purged {len(emitted)} waiting events" in output
    else:
        assert f"{len(emitted)} waiting events are still delivered" in output
    server.up()
    if not purge:
        received = sink.wait_for(len(emitted), accepted=True, timeout=30)
        assert sorted(r.body for r in received) == sorted(emitted)
        assert _by_order_key([r.body for r in received]) == _by_order_key(emitted)  # each vehicle's in order
    wait_until(lambda: urls[0] not in plugwatch(env, "subscriptions", "list"), timeout=20)
    if purge:
        assert sink.requests == []
    assert subscriptions.known_urls(real_redis) == [urls[1]]
    for command in (["status"], ["status", "--check"], ["dead-letters", "urls"]):
        result = CliRunner().invoke(cli, command, env=env)
        assert urls[0] not in result.output, (command, result.output)
    assert urls[1] in plugwatch(env, "dead-letters", "urls")


def test_legacy_env_urls_are_subscribed_and_a_rolling_deploy_that_adds_a_url_loses_no_events(
    real_redis: redis.Redis, sinks: tuple, urls: tuple[str, str], env: dict[str, str], workers: list[Process],
    tmp_path: Path,
) -> None:
    """One worker started with DOWNSTREAM_WEBHOOK_URLS=A, the next with A,B: both deliver to both, since
    the commit routes by the stored subscriptions, not by the URLs a process was started with."""
    first, second, _, _ = sinks
    legacy = {"DOWNSTREAM_WEBHOOK_SECRET": SECRET_A}
    worker(workers, env, tmp_path, DOWNSTREAM_WEBHOOK_URLS=urls[0], **legacy)
    wait_until(lambda: subscriptions.active_urls(real_redis) == [urls[0]], timeout=20)
    worker(workers, env, tmp_path, DOWNSTREAM_WEBHOOK_URLS=",".join(urls), **legacy)
    wait_until(lambda: subscriptions.active_urls(real_redis) == sorted(urls), timeout=20)
    emitted = send_log(real_redis, seed=41, users=20)
    for sink in (first, second):
        received = sink.wait_for(len(emitted), accepted=True, timeout=60)
        assert {r.body for r in received} == set(emitted)
        assert all(verifies(SECRET_A, r) for r in received)


def _by_order_key(bodies: list[bytes]) -> dict[str, list[bytes]]:
    """Each vehicle's (or, without one, each user's) events in the order given: what parallel delivery keeps."""
    order: dict[str, list[bytes]] = {}
    for body in bodies:
        event = orjson.loads(body)
        order.setdefault(event["vehicleId"] or f"user:{event['userId']}", []).append(body)
    return order
