"""The worker rides through the faults Redis and networks have, with real processes: a blackhole between
worker and Redis (a TCP proxy the test owns), SIGTERM during it, Redis SIGKILLed and restarted, Redis full.

Each run posts a simulated Enode scenario through a real receiver to one real `python -m worker` that
delivers to a real sink; "processed and delivered" means the ingest stream is empty, every outbox is empty,
and the sink accepted exactly the events the worker emitted. The worker is the same process throughout.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from plugwatch import keys
from plugwatch.delivery_arming import backlog
from simulator.deliveries import Delivery, Plan, plan_deliveries
from simulator.sender import SendOptions, SendReport, send_all
from simulator.stories import build_scenario
from tests.conftest import TEST_SECRET
from tests.support.servers import Process, RedisServer, base_env, start_receiver, wait_until
from tests.support.sinks import Sink
from tests.support.tcp_proxy import TcpProxy
from tests.support.workers import emitted_ids, start_worker

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

DOWNSTREAM_SECRET = "whsec_" + "dGVzdC1zaWduaW5nLWtleS0xMjM0NTY3ODkwYWI="
GRACE_SECONDS = 4.0
# Short Redis bounds so the faults below outlast them: a stuck call ends after 2 s, RQ's dequeue after 5 s.
RIDING = {"PLUGWATCH_REDIS_SOCKET_TIMEOUT_SECONDS": "2", "PLUGWATCH_WORKER_TTL_SECONDS": "20",
          "PLUGWATCH_WORKER_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS), "PLUGWATCH_DELIVERY_BACKOFF_MAX_SECONDS": "1",
          "PLUGWATCH_DELIVERY_CONNECT_TIMEOUT_SECONDS": "1", "PLUGWATCH_DELIVERY_READ_TIMEOUT_SECONDS": "2",
          "PLUGWATCH_DELIVERY_READ_TIMEOUT_MAX_SECONDS": "2"}


def deliveries(seed: int) -> list[Delivery]:
    return plan_deliveries(build_scenario(users=12, seed=seed).events, Plan(min_batch=1, max_batch=3, seed=seed))


class Traffic:
    """Enode posting `planned` to the receiver in a thread, resending what got no 200 (as Enode does)."""

    def __init__(self, receiver_url: str, planned: list[Delivery]) -> None:
        self.planned = planned
        self.accepted: list[str] = []
        self.reports: list[SendReport] = []
        options = SendOptions(concurrency=2, delay=0.02, timeout=3, give_up_after=90, max_backoff=1)
        self._thread = threading.Thread(target=lambda: self.reports.append(asyncio.run(send_all(
            receiver_url + "/webhooks/enode", TEST_SECRET, planned, options, lambda d: self.accepted.append(d.id)))))

    def start(self, then_wait_for: float) -> Traffic:
        self._thread.start()
        wait_until(lambda: len(self.accepted) >= len(self.planned) * then_wait_for, timeout=60)
        return self

    def finish(self) -> SendReport:
        self._thread.join(timeout=120)
        assert not self._thread.is_alive()
        (report,) = self.reports
        assert report.ok, report
        return report


@pytest.fixture
def connection(private_redis: RedisServer) -> Iterator[redis.Redis]:
    client = private_redis.client()
    yield client
    client.close()


@pytest.fixture
def stack(private_redis: RedisServer, sink: tuple[Sink, str], tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """The receiver on the test's own Redis, and a function starting the worker (on Redis or a proxy)."""
    _, sink_url = sink
    receiver, receiver_url = start_receiver(base_env(REDIS_URL=private_redis.url, ENODE_WEBHOOK_SECRET=TEST_SECRET),
                                            tmp_path / "receiver.log")
    started: list[Process] = []

    def worker(redis_url: str = private_redis.url) -> Process:
        process = start_worker(redis_url, tmp_path / "worker.log", DOWNSTREAM_WEBHOOK_URLS=sink_url,
                               DOWNSTREAM_WEBHOOK_SECRET=DOWNSTREAM_SECRET, **RIDING)
        started.append(process)
        wait_until(lambda: '"worker.started"' in process.output(), timeout=30, message=process.output())
        return process

    worker.receiver_url = receiver_url  # type: ignore[attr-defined]
    try:
        yield worker
    finally:
        for process in started:
            process.stop()
        receiver.stop()


def assert_all_processed_and_delivered(connection: redis.Redis, sink: tuple[Sink, str], worker: Process,
                                       traffic: Traffic) -> None:
    received, sink_url = sink

    def done() -> bool:
        emitted = set(emitted_ids(connection))
        delivered = {request.webhook_id for request in received.accepted()}
        return (connection.xlen(keys.INGEST_STREAM) == 0 and backlog(connection, sink_url) == 0
                and emitted <= delivered)

    wait_until(done, timeout=60, interval=0.2, message=f"not processed and delivered:\n{worker.output()[-3000:]}")
    assert set(traffic.accepted) == {delivery.id for delivery in traffic.planned}
    emitted = emitted_ids(connection)
    assert emitted, "the scenario emitted events"
    assert {request.webhook_id for request in received.accepted()} == set(emitted)
    assert worker.alive(), "the worker process survived"


def test_an_8s_blackhole_between_worker_and_redis_is_ridden_through(
    stack: Callable[..., Process], private_redis: RedisServer, sink: tuple[Sink, str], connection: redis.Redis
) -> None:
    with TcpProxy(("127.0.0.1", private_redis.port)) as proxy:
        worker = stack(proxy.url)
        pid = worker.pid
        traffic = Traffic(stack.receiver_url, deliveries(seed=21)).start(then_wait_for=0.25)  # type: ignore[attr-defined]
        proxy.blackhole()
        time.sleep(8)
        proxy.forward()
        traffic.finish()
        assert_all_processed_and_delivered(connection, sink, worker, traffic)
        assert worker.pid == pid
        assert "TimeoutError" in worker.output(), "a call stuck in the blackhole ended at its socket timeout"


def test_sigterm_during_a_blackhole_ends_the_worker_within_its_grace(
    stack: Callable[..., Process], private_redis: RedisServer
) -> None:
    with TcpProxy(("127.0.0.1", private_redis.port)) as proxy:
        worker = stack(proxy.url)
        time.sleep(1)  # RQ blocks in its dequeue
        proxy.blackhole()
        time.sleep(1)
        worker.signal(signal.SIGTERM)
        try:
            worker.wait(timeout=GRACE_SECONDS + 3)  # the grace, plus the interpreter's own exit
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker ignored SIGTERM beyond its grace:\n{worker.output()[-3000:]}")


def test_redis_sigkilled_and_restarted_under_traffic_the_worker_resumes(
    stack: Callable[..., Process], private_redis: RedisServer, sink: tuple[Sink, str], connection: redis.Redis
) -> None:
    worker = stack()
    pid = worker.pid
    traffic = Traffic(stack.receiver_url, deliveries(seed=22)).start(then_wait_for=0.3)  # type: ignore[attr-defined]
    private_redis.kill()
    time.sleep(1.5)
    private_redis.start()  # same port, from its AOF
    traffic.finish()
    assert_all_processed_and_delivered(connection, sink, worker, traffic)
    assert worker.pid == pid
    assert '"worker.restarting"' in worker.output(), "the worker met the dead Redis"


def test_redis_out_of_memory_under_traffic_answers_503_and_the_worker_survives(
    stack: Callable[..., Process], private_redis: RedisServer, sink: tuple[Sink, str], connection: redis.Redis
) -> None:
    worker = stack()
    pid = worker.pid
    planned = deliveries(seed=23)
    traffic = Traffic(stack.receiver_url, planned).start(then_wait_for=0.3)  # type: ignore[attr-defined]
    connection.config_set("maxmemory-policy", "noeviction")
    # Full: a limit under what Redis holds (a margin over `used_memory` was flaky: a batch in a client's
    # query buffer counts towards it, so the margin could outlast the test once that buffer was freed)
    connection.config_set("maxmemory", "1")
    probe = planned[0]
    statuses: list[int] = []

    def refused() -> bool:
        body = probe.body + b" " * len(statuses)  # a new body each time: never a duplicate
        reply = httpx.post(stack.receiver_url + "/webhooks/enode", content=body,  # type: ignore[attr-defined]
                           headers=Delivery(f"oom-probe-{len(statuses)}", body, 1).headers(TEST_SECRET), timeout=5)
        statuses.append(reply.status_code)
        return reply.status_code == 503

    try:
        wait_until(refused, timeout=30, interval=0.2)
    except AssertionError:
        memory = connection.info("memory")
        pytest.fail(f"never refused: {statuses}; used_memory {memory['used_memory']} of {memory['maxmemory']}")
    time.sleep(3)  # the worker meets the full Redis for a while
    assert worker.alive()
    connection.config_set("maxmemory", "0")
    traffic.finish()
    assert_all_processed_and_delivered(connection, sink, worker, traffic)
    assert worker.pid == pid
