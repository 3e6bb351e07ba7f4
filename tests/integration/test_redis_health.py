"""Redis health against a real redis-server of the test's own, the receiver as Procfile runs it (real
uvicorn) and the real `plugwatch status` command: an evicting policy, a full Redis, no persistence."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from rq.worker import Worker

from tests.conftest import TEST_SECRET
from tests.support.receiver_app import signed, vehicle_batch
from tests.support.servers import (
    ROOT,
    RedisServer,
    base_env,
    free_port,
    iter_lines,
    start_receiver,
    wait_until,
)
from tests.support.workers import start_worker

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]
BODY = vehicle_batch("v1", "v2")
PLUGWATCH = str(ROOT / ".venv" / "bin" / "plugwatch")


@pytest.fixture
def receiver(private_redis: RedisServer, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    log_path = tmp_path / "receiver.log"
    proc, url = start_receiver(base_env(REDIS_URL=private_redis.url, ENODE_WEBHOOK_SECRET=TEST_SECRET), log_path)
    yield url, log_path
    proc.stop()


@pytest.fixture
def client(private_redis: RedisServer) -> Iterator[redis.Redis]:
    connection = private_redis.client()
    yield connection
    connection.close()


def status(private_redis: RedisServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PLUGWATCH, "status", *args], env=base_env(REDIS_URL=private_redis.url), cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def metric(url: str, name: str) -> float | None:
    for line in httpx.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def logged(log_path: Path, event: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in iter_lines(log_path) if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def post(url: str, delivery_id: str) -> httpx.Response:
    return httpx.post(url + "/webhooks/enode", content=BODY, headers=signed(BODY, delivery_id), timeout=5)


def test_an_evicting_policy_fails_check_readiness_metric_and_log(
    private_redis: RedisServer, client: redis.Redis, receiver: tuple[str, Path]
) -> None:
    url, log_path = receiver
    assert httpx.get(url + "/readyz", timeout=5).status_code == 200
    assert metric(url, 'plugwatch_redis_health{check="eviction_policy"}') == 1
    client.config_set("maxmemory-policy", "allkeys-lru")

    checked = status(private_redis, "--check")
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "  - redis eviction_policy: maxmemory-policy is allkeys-lru" in checked.stdout
    assert "FAIL     eviction_policy: maxmemory-policy is allkeys-lru" in checked.stdout
    ready = httpx.get(url + "/readyz", timeout=5)
    assert ready.status_code == 503
    assert "maxmemory-policy is allkeys-lru" in ready.json()["reason"]
    assert metric(url, 'plugwatch_redis_health{check="eviction_policy"}') == 0
    [failed] = logged(log_path, "redis.health_failed")
    assert (failed["check"], failed["level"]) == ("eviction_policy", "error")

    client.config_set("maxmemory-policy", "noeviction")
    wait_until(lambda: httpx.get(url + "/readyz", timeout=5).status_code == 200, message="readyz stayed 503")
    assert "eviction_policy" not in status(private_redis, "--check").stdout.split("needs attention")[-1]
    assert [line["check"] for line in logged(log_path, "redis.health_recovered")] == ["eviction_policy"]
    assert len(logged(log_path, "redis.health_failed")) == 1, "logged once, not per probe"


def fill_until_refused(client: redis.Redis) -> None:
    """4 MiB of data, maxmemory just above used memory (noeviction), write until Redis refuses, then pin maxmemory
    1 MiB under what is used: at the edge, used memory moves by some 100 KB as Redis frees client buffers, and
    every refusal below must be certain."""
    for i in range(64):
        client.set(f"data:{i}", b"d" * 65_536)
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + 256 * 1024)
    for i in range(10_000):
        try:
            client.set(f"filler:{i}", b"x" * 16_384)
        except redis.exceptions.OutOfMemoryError:
            client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - 2**20)
            return
    raise AssertionError("Redis never refused a write")


def test_a_full_redis_gets_503_for_deliveries_and_readyz_until_maxmemory_is_raised(
    private_redis: RedisServer, client: redis.Redis, receiver: tuple[str, Path]
) -> None:
    url, log_path = receiver
    assert post(url, "before").status_code == 200
    fill_until_refused(client)

    assert post(url, "during").status_code == 503
    ready = httpx.get(url + "/readyz", timeout=5)
    assert ready.status_code == 503
    assert ready.json()["reason"].startswith(
        "redis writable: Redis refuses writes (OutOfMemoryError: command not allowed when used memory")
    assert metric(url, 'plugwatch_redis_health{check="writable"}') == 0
    assert [line["check"] for line in logged(log_path, "redis.health_failed")] == ["writable"]

    client.config_set("maxmemory", 0)
    assert post(url, "during").json() == {"outcome": "accepted"}
    assert httpx.get(url + "/readyz", timeout=5).status_code == 200
    assert metric(url, 'plugwatch_redis_health{check="writable"}') == 1


def test_no_persistence_is_a_warning_that_check_lets_pass(private_redis: RedisServer, client: redis.Redis,
                                                         tmp_path: Path) -> None:
    client.config_set("save", "")
    client.config_set("appendonly", "no")
    Worker(["plugwatch-ingest"], connection=client, name="health-test").register_birth()  # not "no worker"

    shown = status(private_redis)
    assert shown.returncode == 0, shown.stderr
    assert "WARN     persistence: no persistence (AOF off, no RDB save schedule)" in shown.stdout
    checked = status(private_redis, "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    as_json = json.loads(status(private_redis, "--json").stdout)
    assert as_json["redis"]["findings"][3]["severity"] == "warn"

    client.config_set("appendonly", "yes")
    assert "OK       persistence: AOF on" in status(private_redis).stdout


def test_a_redis_that_evicted_keys_fails_check(private_redis: RedisServer, client: redis.Redis,
                                               tmp_path: Path) -> None:
    """allkeys-lru at maxmemory really evicts: status --check names the evicted keys, beside the policy."""
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + 256 * 1024)
    for i in range(200):
        client.set(f"filler:{i}", b"x" * 16_384)
    checked = status(private_redis, "--check")
    assert checked.returncode == 2
    problems = checked.stdout.split("needs attention")[-1]
    assert "redis evicted_keys: Redis evicted" in problems
    assert "redis eviction_policy" in problems


def test_a_worker_logs_an_evicting_policy_once_and_its_metric_says_so(
    private_redis: RedisServer, client: redis.Redis, tmp_path: Path
) -> None:
    client.config_set("maxmemory-policy", "volatile-lru")
    port = free_port()
    worker = start_worker(private_redis.url, tmp_path / "worker.log", PLUGWATCH_METRICS_PORT=str(port))
    try:
        wait_until(lambda: logged(worker.log_path, "redis.health_failed"), timeout=30,
                   message=f"no redis.health_failed logged:\n{worker.output()}")
        [failed] = logged(worker.log_path, "redis.health_failed")
        assert (failed["check"], failed["level"]) == ("eviction_policy", "error")
        assert "volatile-lru" in str(failed["detail"])
        wait_until(lambda: _answers(port), timeout=20, message="the worker's metrics port did not open")
        assert metric(f"http://127.0.0.1:{port}", 'plugwatch_redis_health{check="eviction_policy"}') == 0
        assert len(logged(worker.log_path, "redis.health_failed")) == 1, "the scrape did not log it again"
    finally:
        worker.stop()


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
