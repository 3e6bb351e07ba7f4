"""rq-dashboard 0.9 (Procfile `dashboard`) works with RQ 3.0: its pages and JSON endpoints render with queued,
scheduled, started, finished and failed jobs and dead letters present, and its Requeue button on a dead
letter gets the event delivered by a real `python -m worker`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import redis
from rq import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry

from plugwatch import dead_letters as deadletters
from plugwatch import keys
from tests.conftest import TEST_DOWNSTREAM_SECRET
from tests.support.dashboard import running_dashboard
from tests.support.delivery import make_event
from tests.support.platform import platform_env, start_process_type, wait_for_worker
from tests.support.servers import Process, wait_until
from tests.support.sinks import Sink, SinkServer

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]
REGISTRIES = ("queued", "failed", "finished", "started", "scheduled", "deferred", "canceled")
TEST_QUEUE = "plugwatch-test"


@pytest.fixture
def dashboard(redis_url: str, tmp_path: Path) -> Iterator[str]:
    with running_dashboard(redis_url, tmp_path / "dashboard.log") as url:
        yield url


def _dead_letter(connection: redis.Redis, url: str, number: int = 1) -> str:
    event = make_event(number)
    return deadletters.add(connection, url, event, reason="HTTP 400 from the sink", ttl=3600,
                           event_id=f"evt_veh-1_{number}", event_type="vehicle.plugged_in_at_home")


def _finished_and_failed_jobs(redis_url: str, connection: redis.Redis) -> tuple[str, str]:
    """Run one good and one failing job through a real RQ 3.0 worker (burst, own process)."""
    queue = Queue(TEST_QUEUE, connection=connection)
    good, bad = queue.enqueue("os.getcwd"), queue.enqueue("builtins.int", "not a number")
    subprocess.run([sys.executable, "-m", "rq.cli", "worker", "--burst", "-w", "rq.worker.SimpleWorker",
                    "-u", redis_url, TEST_QUEUE], check=True, capture_output=True, timeout=60)
    assert good.id in FinishedJobRegistry(TEST_QUEUE, connection=connection).get_job_ids()
    assert bad.id in FailedJobRegistry(TEST_QUEUE, connection=connection).get_job_ids()
    return good.id, bad.id


def _get(url: str) -> httpx.Response:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, f"{url}: {response.status_code}\n{response.text[:2000]}"
    return response


def test_pages_and_json_render_every_registry_with_rq_3(redis_url: str, dashboard: str) -> None:
    connection = redis.Redis.from_url(redis_url)
    finished, failed = _finished_and_failed_jobs(redis_url, connection)
    queued = Queue(TEST_QUEUE, connection=connection).enqueue("os.getcwd").id
    scheduled = Queue(TEST_QUEUE, connection=connection).enqueue_in(timedelta(hours=1), "os.getcwd").id
    dead = _dead_letter(connection, "https://sink.example/hook")

    queues = {q["name"]: q for q in _get(dashboard + "/0/data/queues.json").json()["queues"]}
    assert queues[TEST_QUEUE]["count"] == 1
    assert queues[TEST_QUEUE]["failed_job_registry_count"] == 1
    assert queues[TEST_QUEUE]["finished_job_registry_count"] == 1
    assert queues[keys.DEAD_LETTER_QUEUE]["failed_job_registry_count"] == 1
    for page in ("/", "/0/view/workers", "/0/view/jobs", "/0/data/workers.json"):
        _get(dashboard + page)
    listed = {}
    for queue in (TEST_QUEUE, keys.DEAD_LETTER_QUEUE):
        for registry in REGISTRIES:
            _get(f"{dashboard}/0/view/jobs/{queue}/{registry}/8/asc/1")
            body = _get(f"{dashboard}/0/data/jobs/{queue}/{registry}/8/asc/1.json").json()
            listed[(queue, registry)] = {job["id"] for job in body["jobs"]}
    assert listed[(TEST_QUEUE, "queued")] == {queued}
    assert listed[(TEST_QUEUE, "finished")] == {finished}
    assert listed[(TEST_QUEUE, "failed")] == {failed}
    assert listed[(TEST_QUEUE, "scheduled")] == {scheduled}
    assert listed[(keys.DEAD_LETTER_QUEUE, "failed")] == {dead}
    for job_id in (queued, finished, failed, scheduled, dead):
        _get(f"{dashboard}/0/view/job/{job_id}")
        assert _get(f"{dashboard}/0/data/job/{job_id}.json").json()["id"] == job_id
    assert "not a number" in _get(f"{dashboard}/0/data/job/{failed}.json").json()["exc_info"]
    assert "HTTP 400 from the sink" in _get(f"{dashboard}/0/data/job/{dead}.json").json()["exc_info"]
    connection.close()


def test_workers_page_shows_a_running_worker_and_its_current_job(redis_url: str, dashboard: str,
                                                                tmp_path: Path) -> None:
    connection = redis.Redis.from_url(redis_url)
    worker = Process([sys.executable, "-m", "rq.cli", "worker", "-w", "rq.worker.SimpleWorker", "-u", redis_url,
                      TEST_QUEUE], platform_env(), tmp_path / "rq-worker.log").start()
    try:
        wait_for_worker(worker, connection)
        job = Queue(TEST_QUEUE, connection=connection).enqueue("time.sleep", 5)
        wait_until(lambda: job.get_status(refresh=True) == "started", timeout=20)
        (shown,) = _get(dashboard + "/0/data/workers.json").json()["workers"]
        assert shown["state"] == "busy"
        assert shown["current_job"]["job_id"] == job.id
        started = _get(f"{dashboard}/0/data/jobs/{TEST_QUEUE}/started/8/asc/1.json").json()["jobs"]
        assert [entry["id"] for entry in started] == [job.id]
    finally:
        worker.stop()
        connection.close()


def test_requeue_button_on_a_dead_letter_gets_it_delivered_by_the_worker(redis_url: str, dashboard: str,
                                                                        tmp_path: Path) -> None:
    """The README promises rq-dashboard's Requeue does what `plugwatch dead-letters replay` does."""
    connection = redis.Redis.from_url(redis_url)
    sink = Sink()
    with SinkServer(sink) as server:
        hook = server.url + "/hook"
        env = platform_env(REDIS_URL=redis_url, PLUGWATCH_METRICS_PORT="0", DOWNSTREAM_WEBHOOK_URLS=hook,
                           DOWNSTREAM_WEBHOOK_SECRET=TEST_DOWNSTREAM_SECRET)
        worker = start_process_type("worker", env, tmp_path / "worker.log")
        try:
            wait_for_worker(worker, connection)
            dead = _dead_letter(connection, hook, number=7)
            response = httpx.post(f"{dashboard}/job/{dead}/requeue", timeout=10)
            assert response.status_code == 200
            assert response.json()["status"] == "OK"
            requeued = Queue(keys.DEAD_LETTER_QUEUE, connection=connection)
            (received,) = sink.wait_for(1, timeout=30)  # only if a worker works the dead-letter queue
            assert dead not in requeued.job_ids
            assert received.event["id"] == "evt_veh-1_7"
            wait_until(lambda: not deadletters.list_all(connection), timeout=10)
        finally:
            worker.stop()
            connection.close()
