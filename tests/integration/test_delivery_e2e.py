"""Delivery end to end: real `python -m worker` processes, real redis-server, real HTTP sinks (uvicorn).

Events enter the outboxes as the ingest worker's commit puts them there (XADD + `kick`).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from click.testing import CliRunner
from prometheus_client import CollectorRegistry
from rq import SimpleWorker
from rq.registry import FailedJobRegistry

from cli import main as cli
from plugwatch import dead_letters as deadletters
from plugwatch import delivery_arming, keys
from plugwatch.settings import DeliverySettings, ProcessSettings, Settings
from plugwatch.signing import decode_secret
from tests.conftest import TEST_DOWNSTREAM_SECRET
from tests.support.delivery import emit, first_arrivals_by_vehicle, interleaved, make_event, start_worker, subscribe
from tests.support.servers import Process, base_env, wait_until
from tests.support.sinks import Reply, Sink, SinkServer
from tests.unit.test_signing import spec_verify
from worker.bootstrap import bootstrap, install

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


@pytest.fixture
def sinks() -> Iterator[tuple[Sink, Sink, SinkServer, SinkServer]]:
    first, second = Sink(), Sink()
    with SinkServer(first) as one, SinkServer(second) as two:
        yield first, second, one, two


@pytest.fixture
def urls(sinks: tuple[Sink, Sink, SinkServer, SinkServer]) -> tuple[str, str]:
    return sinks[2].url + "/hook", sinks[3].url + "/hook"


@pytest.fixture
def env(redis_url: str, urls: tuple[str, str]) -> dict[str, str]:
    return base_env(
        REDIS_URL=redis_url, DOWNSTREAM_WEBHOOK_URLS=",".join(urls),
        DOWNSTREAM_WEBHOOK_SECRET=TEST_DOWNSTREAM_SECRET, PLUGWATCH_METRICS_PORT="0",
        PLUGWATCH_PUMP_INTERVAL_SECONDS="0.2", PLUGWATCH_DELIVERY_BACKOFF_BASE_SECONDS="0.05",
        PLUGWATCH_DELIVERY_BACKOFF_MAX_SECONDS="0.5",
    )


@pytest.fixture
def settings(redis_url: str, urls: tuple[str, str]) -> Settings:
    return Settings(process=ProcessSettings(redis_url=redis_url),
                    delivery=DeliverySettings(downstream_urls=urls,
                                              downstream_key=decode_secret(TEST_DOWNSTREAM_SECRET)))


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.stop(timeout=10)


def run(workers: list[Process], env: dict[str, str], tmp_path: Path, **overrides: str) -> Process:
    process = start_worker({**env, **overrides}, tmp_path / f"worker-{len(workers)}.log")
    workers.append(process)
    return process


def cli_run(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_10s_sink_does_not_delay_a_healthy_sink_by_more_than_1s(
    real_redis: redis.Redis, settings: Settings, sinks: tuple, urls: tuple[str, str], env: dict[str, str],
    workers: list[Process], tmp_path: Path,
) -> None:
    """One worker process, default timeouts: the slow URL holds only its own drainer thread."""
    slow, healthy, _, _ = sinks
    slow.set_default(Reply(200, delay=10))
    run(workers, env, tmp_path)
    emit(real_redis, [make_event(0)], urls)
    slow.wait_for(1, timeout=20)
    healthy.wait_for(1, timeout=20)
    for number in range(1, 6):  # while the slow sink sits on its request
        sent_at = time.time()
        emit(real_redis, [make_event(number)], urls)
        received = healthy.wait_for(number + 1, timeout=5)
        assert received[-1].at - sent_at < 1.0, f"healthy sink waited {received[-1].at - sent_at:.2f}s"
        time.sleep(0.3)
    assert len(slow.requests) == 1


def test_a_sink_slower_than_the_read_timeout_gets_each_event_at_most_the_documented_attempts(
    real_redis: redis.Redis, settings: Settings, sinks: tuple, urls: tuple[str, str], env: dict[str, str],
    workers: list[Process], tmp_path: Path,
) -> None:
    """Two worker processes; the sink answers 200 after 1.2 s, the base read timeout is 0.5 s (README:
    at most 1 + ceil(log2(max / base)) arrivals per event; here 4).  It used to get the head event again
    and again while the others waited, and the URL read "ok"."""
    slow, healthy, _, _ = sinks
    slow.set_default(Reply(200, delay=1.2))
    tuning = {"PLUGWATCH_DELIVERY_READ_TIMEOUT_SECONDS": "0.5", "PLUGWATCH_DELIVERY_READ_TIMEOUT_MAX_SECONDS": "4"}
    for _ in range(2):
        run(workers, env, tmp_path, **tuning)
    events = [make_event(n) for n in range(5)]
    emit(real_redis, events, urls)
    healthy.wait_for(5, timeout=20)
    wait_until(lambda: delivery_arming.backlog(real_redis, urls[0]) == 0, timeout=40, message="the slow sink lags")
    ids = [r.webhook_id for r in slow.requests]
    assert max(ids.count(event_id) for event_id in ids) <= 4, ids
    assert len(ids) - len(events) <= 3, ids
    assert list(dict.fromkeys(ids)) == [f"evt_veh-1_{n}" for n in range(5)], ids
    assert sorted({r.body for r in slow.requests}) == sorted(events)
    full = {**env, **tuning}
    shown = {line.split("\t")[0]: line.split("\t")[1] for line in cli_run(full, "dead-letters", "urls").splitlines()}
    assert shown[urls[0]].startswith("slow: read timeout raised to "), shown
    assert shown[urls[1]] == "ok"
    assert f"SLOW     {urls[0]}" in cli_run(full, "status")
    raised = [orjson.loads(line) for process in workers for line in process.output().splitlines()
              if '"delivery.read_timeout_raised"' in line]
    assert [line["read_timeout"] for line in raised][:1] == [1.0]


def test_sigkill_during_delivery_loses_nothing(
    real_redis: redis.Redis, settings: Settings, sinks: tuple, urls: tuple[str, str], env: dict[str, str],
    workers: list[Process], tmp_path: Path,
) -> None:
    sink, _, _, _ = sinks
    sink.set_default(Reply(200, delay=1.0))
    fast = {"PLUGWATCH_DELIVERY_CONNECT_TIMEOUT_SECONDS": "0.5", "PLUGWATCH_DELIVERY_READ_TIMEOUT_SECONDS": "2"}
    first = run(workers, env, tmp_path, **fast)
    events = [make_event(n) for n in range(6)]
    emit(real_redis, events, [urls[0]])
    sink.wait_for(3, timeout=20)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    in_flight = {r.webhook_id for r in sink.requests}
    sink.set_default(Reply(200))
    run(workers, env, tmp_path, **fast)
    wait_until(lambda: {r.webhook_id for r in sink.requests} >= {f"evt_veh-1_{n}" for n in range(6)},
               timeout=30, message="not every event arrived after the restart")
    wait_until(lambda: delivery_arming.backlog(real_redis, urls[0]) == 0, timeout=10)
    ids = [r.webhook_id for r in sink.requests]
    duplicated = {event_id for event_id in ids if ids.count(event_id) > 1}
    assert duplicated <= in_flight  # at least once: only what was on the wire at the kill may come twice
    assert len(duplicated) <= 1
    bodies = {r.webhook_id: r.body for r in sink.requests}
    assert sorted(bodies.values()) == sorted(events)


def test_a_sink_down_for_a_while_receives_every_event_once_back(
    real_redis: redis.Redis, settings: Settings, sinks: tuple, urls: tuple[str, str], env: dict[str, str],
    workers: list[Process], tmp_path: Path,
) -> None:
    """Pauses longer than a drainer waits inline are resumed by the worker's pump."""
    sink, other, server, _ = sinks
    server.down()
    run(workers, env, tmp_path, PLUGWATCH_DELIVERY_INLINE_WAIT_SECONDS="0.1",
        PLUGWATCH_DELIVERY_BACKOFF_BASE_SECONDS="0.3", PLUGWATCH_DELIVERY_BACKOFF_MAX_SECONDS="1")
    events = [make_event(n) for n in range(10)]
    emit(real_redis, events[:5], urls)
    other.wait_for(5, timeout=20)
    time.sleep(2)
    emit(real_redis, events[5:], urls)
    other.wait_for(10, timeout=20)
    server.up()
    received = sink.wait_for(10, timeout=30)
    assert [r.body for r in received] == events
    assert all(spec_verify(TEST_DOWNSTREAM_SECRET, r.headers, r.body) for r in received)


def test_a_400_past_the_max_age_dead_letters_then_cli_replay_delivers_the_same_id_and_body(
    real_redis: redis.Redis, settings: Settings, sinks: tuple, urls: tuple[str, str], env: dict[str, str],
    workers: list[Process], tmp_path: Path,
) -> None:
    """A 400 is retried like any failure; an event still refused after the max age is dead-lettered."""
    sink, other, _, _ = sinks
    sink.set_default(Reply(400, body=b"unknown type"))
    run(workers, env, tmp_path, PLUGWATCH_DELIVERY_MAX_AGE_SECONDS="1")
    events = [make_event(1), make_event(2)]
    emit(real_redis, events, urls)
    other.wait_for(2, timeout=20)
    wait_until(lambda: len(deadletters.list_all(real_redis)) == 2, timeout=20)
    listing = cli_run(env, "dead-letters", "list", "--url", urls[0])
    assert "evt_veh-1_1" in listing
    assert "HTTP 400: unknown type" in listing

    sink.set_default(Reply(200))  # the consumer fixed its bug
    cli_run(env, "dead-letters", "replay", "--url", urls[0])
    accepted = sink.wait_for(2, accepted=True, timeout=20)
    assert [(r.webhook_id, r.body) for r in accepted] == [("evt_veh-1_1", events[0]), ("evt_veh-1_2", events[1])]
    assert all(spec_verify(TEST_DOWNSTREAM_SECRET, r.headers, r.body) for r in accepted)
    assert deadletters.list_all(real_redis) == []
    assert len(other.requests) == 2


def test_410_disables_one_url_others_keep_receiving_and_enable_replays(
    real_redis: redis.Redis, settings: Settings, sinks: tuple, urls: tuple[str, str], env: dict[str, str],
    workers: list[Process], tmp_path: Path,
) -> None:
    gone, other, _, _ = sinks
    gone.set_default(Reply(410))
    process = run(workers, env, tmp_path)
    emit(real_redis, [make_event(n) for n in range(3)], urls)
    other.wait_for(3, timeout=20)
    wait_until(lambda: len(deadletters.list_all(real_redis, urls[0])) == 3, timeout=20)
    emit(real_redis, [make_event(3)], urls)
    other.wait_for(4, timeout=20)
    assert len(gone.requests) == 1, gone.requests
    assert "disabled since" in cli_run(env, "dead-letters", "urls")
    wait_until(lambda: "delivery.url_disabled" in process.output(), timeout=5)
    disabled = next(line for line in process.output().splitlines() if "url_disabled" in line)
    assert orjson.loads(disabled)["level"] == "error"

    gone.set_default(Reply(200))
    wait_until(lambda: len(deadletters.list_all(real_redis, urls[0])) == 4, timeout=20)
    cli_run(env, "dead-letters", "enable", urls[0], "--replay")
    accepted = gone.wait_for(4, accepted=True, timeout=20)
    assert sorted(r.webhook_id for r in accepted) == [f"evt_veh-1_{n}" for n in range(4)], gone.requests
    listing = {line.split("\t")[0]: line for line in cli_run(env, "dead-letters", "urls").splitlines()}
    assert listing[urls[0]].split("\t")[1] == "ok", listing


def test_a_dead_letter_requeued_through_rq_is_delivered(
    real_redis: redis.Redis, settings: Settings, sinks: tuple, urls: tuple[str, str], env: dict[str, str],
    tmp_path: Path,
) -> None:
    """rq-dashboard's Requeue button: RQ moves the job to plugwatch-dead-letters, a worker runs it."""
    sink, _, _, _ = sinks
    event = make_event(7)
    job_id = deadletters.add(real_redis, urls[0], event, reason="HTTP 400", ttl=600, event_id="evt_veh-1_7",
                             event_type="vehicle.plugged_in_at_home")
    FailedJobRegistry(keys.DEAD_LETTER_QUEUE, connection=real_redis).requeue(job_id)
    subscribe(real_redis, urls, decode_secret(TEST_DOWNSTREAM_SECRET))  # as a worker's start-up does
    context = bootstrap(settings, registry=CollectorRegistry(), connection=real_redis)
    install(context)
    try:
        SimpleWorker([keys.DEAD_LETTER_QUEUE, keys.DELIVERY_QUEUE], connection=real_redis).work(burst=True)
        [received] = sink.wait_for(1, timeout=10)
        assert (received.webhook_id, received.body) == ("evt_veh-1_7", event)
    finally:
        context.close()
        install(None)



def test_sigkill_with_sixteen_in_flight_delivers_every_event_keeping_each_vehicles_first_arrivals_in_order(
    real_redis: redis.Redis, settings: Settings, sinks: tuple, urls: tuple[str, str], env: dict[str, str],
    workers: list[Process], tmp_path: Path,
) -> None:
    """A worker process is SIGKILLed while many POSTs are open; the next one sends every unfinished event
    (at least once), and each vehicle's events first arrived in `sequence` order."""
    sink, _, _, _ = sinks
    sink.set_default(Reply(200, delay=0.05, jitter=0.1))
    events = interleaved(12, 25)
    fast = {"PLUGWATCH_DELIVERY_CONNECT_TIMEOUT_SECONDS": "0.5", "PLUGWATCH_DELIVERY_READ_TIMEOUT_SECONDS": "2"}
    first = run(workers, env, tmp_path, **fast)
    emit(real_redis, events, [urls[0]])
    sink.wait_for(100, timeout=30)
    assert sink.max_in_flight > 1
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    run(workers, env, tmp_path, **fast)
    wait_until(lambda: delivery_arming.backlog(real_redis, urls[0]) == 0, timeout=60,
               message="the outbox did not drain after the restart")
    assert {r.body for r in sink.accepted()} == set(events)
    assert first_arrivals_by_vehicle(r.body for r in sink.requests) == {f"veh-{v}": list(range(1, 26))
                                                                        for v in range(12)}
    assert len(sink.requests) - len(events) <= 16  # only what was on the wire at the kill came twice
