"""SIGTERM (a deploy, a scale-down, a platform restart) loses nothing.

- A worker terminated in the middle of a drain job finishes or hands back its work (RQ warm shutdown);
  a second worker completes it, and together they emit exactly what one uninterrupted worker emits.
- A worker terminated while a POST to a downstream URL is in flight: every event still arrives.
- A receiver terminated under load finishes its in-flight requests, and every delivery it answered 200 is
  in Redis (dedupe mark + ingest stream entry).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from rq.registry import StartedJobRegistry

from plugwatch import dead_letters as deadletters
from plugwatch import dedupe_marks, keys
from plugwatch.delivery_arming import backlog
from plugwatch.enode_signature import digest
from plugwatch.settings import ReceiverSettings
from simulator.deliveries import Delivery, Plan, plan_deliveries
from simulator.sender import SendOptions, send_all
from simulator.stories import build_scenario
from tests.conftest import TEST_DOWNSTREAM_SECRET, TEST_SECRET
from tests.support.delivery import emit, make_event
from tests.support.event_schema import stream_bodies
from tests.support.eventlog import epoch_config
from tests.support.platform import platform_env, start_process_type, wait_for_http
from tests.support.servers import Process, free_port, start_receiver, wait_until
from tests.support.sinks import Reply, Sink, SinkServer

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]
HEROKU_GRACE_SECONDS = 30


def _ingest_done(connection: redis.Redis) -> bool:
    if connection.xlen(keys.INGEST_STREAM):
        return False
    groups = connection.xinfo_groups(keys.INGEST_STREAM) if connection.exists(keys.INGEST_STREAM) else []
    return all(group["pending"] == 0 for group in groups)


def _emitted(connection: redis.Redis) -> dict[str, bytes]:
    """Emitted events by id (a redone commit may append an id twice; the id is what consumers dedupe on)."""
    return {orjson.loads(body)["id"]: body for body in stream_bodies(connection)}


def _copy_ingest(source: redis.Redis, target: redis.Redis) -> None:
    pipe = target.pipeline(transaction=False)
    for entry_id, fields in source.xrange(keys.INGEST_STREAM):
        pipe.xadd(keys.INGEST_STREAM, fields, id=entry_id)
    pipe.execute()


def _reference_run(redis_url: str, tmp_path: Path) -> dict[str, bytes]:
    """What an uninterrupted worker emits for the same ingest stream (in another database)."""
    reference_url = redis_url.rsplit("/", 1)[0] + "/1"
    worker = Process([sys.executable, "-m", "worker", "--burst"],
                     platform_env(REDIS_URL=reference_url, PLUGWATCH_METRICS_PORT="0"), tmp_path / "reference.log")
    assert worker.start().wait(timeout=180) == 0, worker.output()[-3000:]
    connection = redis.Redis.from_url(reference_url)
    assert _ingest_done(connection)
    emitted = _emitted(connection)
    connection.close()
    return emitted


def test_sigterm_to_a_worker_mid_job_loses_nothing(redis_url: str, tmp_path: Path) -> None:
    """The first worker is stopped during a drain job (short budget, small batches, a big backlog); the
    second finishes the backlog; together they emit exactly what one uninterrupted worker emits."""
    deliveries = plan_deliveries(build_scenario(users=100, seed=11).events, Plan(min_batch=1, max_batch=3, seed=11))
    connection = redis.Redis.from_url(redis_url)
    receiver, url = start_receiver(platform_env(REDIS_URL=redis_url, ENODE_WEBHOOK_SECRET=TEST_SECRET),
                                   tmp_path / "receiver.log")
    try:
        report = asyncio.run(send_all(url + "/webhooks/enode", TEST_SECRET, deliveries, SendOptions(concurrency=4)))
        assert report.ok, report
    finally:
        receiver.stop()
    backlog = connection.xlen(keys.INGEST_STREAM)
    assert backlog == report.accepted
    _copy_ingest(connection, redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/1"))
    epoch_config(connection)  # both runs commit under one epoch, so their sequences and ids can agree
    redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/1").hset(keys.EPOCH, mapping=connection.hgetall(keys.EPOCH))
    reference = _reference_run(redis_url, tmp_path)
    assert reference, "the scenario must emit events"

    env = platform_env(REDIS_URL=redis_url, PLUGWATCH_METRICS_PORT="0", PLUGWATCH_INGEST_BATCH="2",
                       PLUGWATCH_INGEST_BUDGET_SECONDS="0.1")
    first = start_process_type("worker", env, tmp_path / "worker-1.log")
    try:
        started = StartedJobRegistry(keys.INGEST_QUEUE, connection=connection)
        wait_until(lambda: started.get_job_ids(cleanup=False), timeout=30, interval=0.01,
                   message=f"no drain job started:\n{first.output()}")
        first.signal(signal.SIGTERM)
        assert first.wait(timeout=HEROKU_GRACE_SECONDS) == 0, first.output()
    finally:
        first.stop()
    assert "Cold shut down" not in first.output()
    left_by_first = connection.xlen(keys.INGEST_STREAM)
    assert 0 < left_by_first < backlog, "the first worker should have been stopped part-way"

    second = start_process_type("worker", env, tmp_path / "worker-2.log")
    try:
        wait_until(lambda: _ingest_done(connection), timeout=120, interval=0.2,
                   message=f"ingest not drained:\n{second.output()[-3000:]}")
        wait_until(lambda: len(_emitted(connection)) >= len(reference), timeout=30, interval=0.2)
    finally:
        second.stop()
    emitted = _emitted(connection)
    assert set(emitted) == set(reference), (len(set(reference) - set(emitted)), len(set(emitted) - set(reference)))
    assert emitted == reference
    connection.close()


def test_sigterm_to_a_worker_mid_delivery_loses_no_event(redis_url: str, tmp_path: Path) -> None:
    """The first worker is stopped while a POST to a slow downstream URL is in flight; every event still
    reaches the URL (at least once: the one in flight may arrive twice, with the same webhook-id)."""
    connection = redis.Redis.from_url(redis_url)
    sink = Sink(Reply(200, delay=1.0))
    with SinkServer(sink) as server:
        hook = server.url + "/hook"
        variables = {"REDIS_URL": redis_url, "DOWNSTREAM_WEBHOOK_URLS": hook,
                     "DOWNSTREAM_WEBHOOK_SECRET": TEST_DOWNSTREAM_SECRET}
        events = [make_event(number) for number in range(1, 9)]
        emit(connection, events, [hook])
        env = platform_env(**variables, PLUGWATCH_METRICS_PORT="0")
        first = start_process_type("worker", env, tmp_path / "worker-1.log")
        try:
            sink.wait_for(2, timeout=30)  # the second POST is in flight (the sink holds it for 1 s)
            first.signal(signal.SIGTERM)
            assert first.wait(timeout=HEROKU_GRACE_SECONDS) == 0, first.output()
        finally:
            first.stop()
        assert backlog(connection, hook) > 0, "the first worker should have been stopped part-way"
        second = start_process_type("worker", env, tmp_path / "worker-2.log")
        try:
            wanted = {orjson.loads(event)["id"] for event in events}
            wait_until(lambda: {r.event["id"] for r in sink.requests} >= wanted and not backlog(connection, hook),
                       timeout=60, interval=0.2, message=f"not every event was delivered:\n{second.output()[-3000:]}")
        finally:
            second.stop()
    assert not deadletters.list_all(connection)
    connection.close()


class _SlowBody:
    """A request body sent in pieces: the request is in flight until `release` is set."""

    def __init__(self, body: bytes, release: threading.Event) -> None:
        self.body = body
        self.release = release
        self.started = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        half = len(self.body) // 2
        yield self.body[:half]
        self.started.set()
        self.release.wait(timeout=20)
        yield self.body[half:]


def _post(client: httpx.Client, url: str, delivery: Delivery, content: object = None) -> int | str:
    headers = {**delivery.headers(TEST_SECRET), "content-length": str(len(delivery.body))}
    try:
        response = client.post(url, content=content or delivery.body, headers=headers)  # type: ignore[arg-type]
    except httpx.TransportError as error:
        return type(error).__name__
    return response.status_code


def _load(client: httpx.Client, url: str, deliveries: list[Delivery], outcomes: dict[str, int | str]) -> None:
    """One sender slot: post deliveries until the receiver stops accepting connections."""
    while deliveries:
        delivery = deliveries.pop()
        outcomes[delivery.id] = outcome = _post(client, url, delivery)
        if outcome == "ConnectError":
            return


def _stored(connection: redis.Redis) -> set[str]:
    return {fields[b"d"].decode() for _, fields in connection.xrange(keys.INGEST_STREAM)}


def test_sigterm_to_the_receiver_under_load_drops_no_accepted_request(redis_url: str, tmp_path: Path) -> None:
    """Four requests are mid-body when SIGTERM arrives, four senders keep posting until refused."""
    connection = redis.Redis.from_url(redis_url)
    port = free_port()
    web = start_process_type("web", platform_env(REDIS_URL=redis_url, ENODE_WEBHOOK_SECRET=TEST_SECRET,
                                                 PORT=str(port)), tmp_path / "web.log")
    url = f"http://127.0.0.1:{port}/webhooks/enode"
    deliveries = plan_deliveries(build_scenario(users=40, seed=3).events, Plan(min_batch=1, max_batch=4, seed=3))
    slow, fast = deliveries[:4], deliveries[4:]
    release = threading.Event()
    bodies = [_SlowBody(d.body, release) for d in slow]
    fast_outcomes: dict[str, int | str] = {}
    try:
        wait_for_http(web, f"http://127.0.0.1:{port}/readyz")
        with httpx.Client(timeout=30) as client, ThreadPoolExecutor(max_workers=len(slow) + 4) as pool:
            slow_results = [pool.submit(_post, client, url, d, body) for d, body in zip(slow, bodies, strict=True)]
            senders = [pool.submit(_load, client, url, fast, fast_outcomes) for _ in range(4)]
            for body in bodies:
                assert body.started.wait(timeout=20)
            wait_until(lambda: len(fast_outcomes) >= 40, timeout=30)
            web.signal(signal.SIGTERM)
            time.sleep(0.5)  # uvicorn has stopped accepting; the slow requests are still mid-body
            release.set()
            slow_outcomes = {d.id: f.result() for d, f in zip(slow, slow_results, strict=True)}
            for sender in senders:
                sender.result()
        # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully
        assert web.wait(timeout=HEROKU_GRACE_SECONDS) in {0, -signal.SIGTERM}, web.output()
    finally:
        web.stop()
    assert "Finished server process" in web.output()
    assert set(slow_outcomes.values()) == {200}, slow_outcomes  # in flight at SIGTERM: finished, answered
    statuses = Counter(fast_outcomes.values())
    assert statuses[200] >= 40
    assert all(outcome == 200 or isinstance(outcome, str) for outcome in fast_outcomes.values()), statuses
    accepted = {d for d, outcome in {**slow_outcomes, **fast_outcomes}.items() if outcome == 200}
    stored = _stored(connection)
    assert accepted <= stored, sorted(accepted - stored)[:5]
    bodies = {d.id: d.body for d in deliveries}
    window, width = ReceiverSettings.dedupe_ttl_seconds, ReceiverSettings.dedupe_bucket_seconds
    assert all(dedupe_marks.is_marked(connection, d, digest(bodies[d], TEST_SECRET), now=time.time(), window=window,
                                      width=width)
               for d in accepted)
    connection.close()
