"""Every Procfile process type starts with only the documented environment and answers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import redis

from plugwatch import keys
from tests.conftest import TEST_SECRET
from tests.support.platform import platform_env, start_process_type, wait_for_http, wait_for_worker
from tests.support.servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


def test_web_is_ready_on_port_with_redis_url_and_secret(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = platform_env(REDIS_URL=redis_url, ENODE_WEBHOOK_SECRET=TEST_SECRET, PORT=str(port))
    web = start_process_type("web", env, tmp_path / "web.log")
    try:
        wait_for_http(web, f"http://127.0.0.1:{port}/readyz")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        assert "plugwatch_receiver_requests_total" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        web.stop()


def test_web_refuses_to_start_without_the_enode_secret(redis_url: str, tmp_path: Path) -> None:
    web = start_process_type("web", platform_env(REDIS_URL=redis_url, PORT=str(free_port())), tmp_path / "web.log")
    try:
        assert web.wait(timeout=30) != 0
        assert "ENODE_WEBHOOK_SECRET" in web.output()
    finally:
        web.stop()


def test_worker_registers_in_redis_on_every_plugwatch_queue(redis_url: str, tmp_path: Path) -> None:
    metrics_port = free_port()
    env = platform_env(REDIS_URL=redis_url, PLUGWATCH_METRICS_PORT=str(metrics_port))
    worker = start_process_type("worker", env, tmp_path / "worker.log")
    connection = redis.Redis.from_url(redis_url)
    try:
        (registered,) = wait_for_worker(worker, connection)
        assert set(keys.ALL_QUEUES) <= set(registered.queue_names())  # incl. dead letters (dashboard Requeue)
        wait_for_http(worker, f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        worker.stop()
        connection.close()


def test_dashboard_answers_on_port_with_redis_url(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    dashboard = start_process_type("dashboard", platform_env(REDIS_URL=redis_url, PORT=str(port)),
                                   tmp_path / "dashboard.log")
    try:
        wait_for_http(dashboard, f"http://127.0.0.1:{port}/")
        assert httpx.get(f"http://127.0.0.1:{port}/0/data/queues.json").status_code == 200
    finally:
        dashboard.stop()
