"""The receiver as Procfile runs it (`python -m receiver`: real uvicorn subprocess) against a real redis-server;
and the same app under bare `uvicorn receiver.app:app_from_env --factory`."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from rq import Queue

from plugwatch import keys
from tests.conftest import TEST_SECRET, emptied
from tests.support.receiver_app import signed, vehicle_batch
from tests.support.servers import Process, RedisServer, base_env, free_port, iter_lines, start_receiver, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]
BODY = vehicle_batch("v1", "v2")


@pytest.fixture(scope="module")
def shared_receiver(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[str, Path]]:
    """One receiver for the tests that do not stop Redis (each test still gets a flushed Redis)."""
    log_path = tmp_path_factory.mktemp("receiver") / "receiver.log"
    proc, url = start_receiver(base_env(REDIS_URL=emptied(redis_server), ENODE_WEBHOOK_SECRET=TEST_SECRET), log_path)
    yield url, log_path
    proc.stop()


@pytest.fixture
def receiver_url(shared_receiver: tuple[str, Path], redis_url: str) -> str:
    return shared_receiver[0]


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 5) -> httpx.Response:
    return httpx.post(url + "/webhooks/enode", content=body, headers=headers, timeout=timeout)


def test_one_delivery_posted_3_times_then_20_times_at_once_is_stored_once(
    receiver_url: str, real_redis: redis.Redis
) -> None:
    headers = signed(BODY, "once")
    assert [post(receiver_url, BODY, headers).json()["outcome"] for _ in range(3)] == [
        "accepted", "duplicate", "duplicate"]

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=receiver_url, timeout=5) as client:
            responses = await asyncio.gather(*(client.post("/webhooks/enode", content=BODY, headers=headers)
                                               for _ in range(20)))
        return [response.status_code for response in responses]

    assert asyncio.run(burst()) == [200] * 20
    assert real_redis.xlen(keys.INGEST_STREAM) == 1
    assert Queue(keys.INGEST_QUEUE, connection=real_redis).count == 1


def test_20_concurrent_first_posts_of_one_delivery_store_it_once(receiver_url: str, real_redis: redis.Redis) -> None:
    headers = signed(BODY, "race")

    async def burst() -> list[str]:
        async with httpx.AsyncClient(base_url=receiver_url, timeout=5) as client:
            responses = await asyncio.gather(*(client.post("/webhooks/enode", content=BODY, headers=headers)
                                               for _ in range(20)))
        return sorted(response.json()["outcome"] for response in responses)

    assert asyncio.run(burst()) == ["accepted"] + ["duplicate"] * 19
    assert real_redis.xlen(keys.INGEST_STREAM) == 1


def test_a_5_mib_body_is_413(receiver_url: str, real_redis: redis.Redis) -> None:
    body = b"[" + b" " * (5 * 1024 * 1024) + b"]"
    response = post(receiver_url, body, signed(body, "huge"))
    assert response.status_code == 413
    assert not real_redis.keys("plugwatch:*")


def test_a_5_mib_chunked_body_is_413(receiver_url: str, real_redis: redis.Redis) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(80):
            yield b" " * 65536

    headers = {"x-enode-signature": "sha1=" + "0" * 40, "x-enode-delivery": "chunked"}
    try:
        response = httpx.post(receiver_url + "/webhooks/enode", content=chunks(), headers=headers, timeout=5)
    except httpx.WriteError:  # uvicorn may close the connection while the rest is still being sent
        pass
    else:
        assert response.status_code == 413
    assert not real_redis.keys("plugwatch:*")


def test_an_authentic_non_json_body_is_200_and_quarantined(receiver_url: str, real_redis: redis.Redis) -> None:
    body = b"<html>definitely not JSON</html>"
    response = post(receiver_url, body, signed(body, "html"))
    assert (response.status_code, response.json()) == (200, {"outcome": "quarantined"})
    [(_, fields)] = real_redis.xrange(keys.QUARANTINE_STREAM)
    assert (fields[b"d"], fields[b"b"], fields[b"reason"]) == (b"html", body, b"invalid_json")
    assert not real_redis.exists(keys.INGEST_STREAM)


def test_a_bad_signature_is_401_and_nothing_is_stored(receiver_url: str, real_redis: redis.Redis) -> None:
    assert post(receiver_url, BODY, signed(BODY, "forged", secret="not-the-secret-0123456789")).status_code == 401
    assert not real_redis.keys("plugwatch:*")


def test_deliveries_off_the_success_path_get_a_line_each_the_others_a_summary(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    """Accepted and duplicate deliveries are counted in `deliveries.handled` (the first at once, the rest at
    shutdown), never one line each; a refused delivery keeps its own `delivery.handled` line."""
    log_path = tmp_path / "receiver.log"
    proc, url = start_receiver(base_env(REDIS_URL=private_redis.url, ENODE_WEBHOOK_SECRET=TEST_SECRET), log_path)
    try:
        outcomes = [post(url, BODY, signed(BODY, delivery_id)).json()["outcome"]
                    for delivery_id in ("first", "second", "third", "third")]
        assert outcomes == ["accepted", "accepted", "accepted", "duplicate"]
        assert post(url, BODY, signed(BODY, "forged", secret="not-the-secret-0123456789")).status_code == 401
        wait_until(lambda: bool(records(log_path, "deliveries.handled")), timeout=5,
                   message="the first accepted delivery's summary was not logged at once")
    finally:
        proc.stop()
    summaries = records(log_path, "deliveries.handled")
    totals = {outcome: sum(int(line.get(outcome, 0)) for line in summaries)  # type: ignore[call-overload]
              for outcome in ("accepted", "duplicate", "deliveries", "events")}
    assert totals == {"accepted": 3, "duplicate": 1, "deliveries": 4, "events": 8}
    assert all(isinstance(line["slowest_ms"], float | int) for line in summaries)
    assert len(summaries) == 2, summaries  # the first at once, the other three at shutdown
    [refused] = records(log_path, "delivery.handled")
    assert (refused["delivery_id"], refused["events"], refused["outcome"]) == ("forged", 0, "unauthorized")
    assert isinstance(refused["ms"], float | int)


def records(log_path: Path, event: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in iter_lines(log_path) if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def test_health_readiness_and_metrics(receiver_url: str) -> None:
    assert httpx.get(receiver_url + "/healthz").status_code == 200
    assert httpx.get(receiver_url + "/readyz").status_code == 200
    assert "plugwatch_receiver_requests_total" in httpx.get(receiver_url + "/metrics").text


def test_redis_stopped_gives_503_within_2_s_and_recovery_accepts_again(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    proc, url = start_receiver(base_env(REDIS_URL=private_redis.url, ENODE_WEBHOOK_SECRET=TEST_SECRET),
                               tmp_path / "receiver.log")
    try:
        assert post(url, BODY, signed(BODY, "before")).status_code == 200
        private_redis.stop()
        for delivery_id in ("during-1", "during-2"):
            started = time.monotonic()
            response = post(url, BODY, signed(BODY, delivery_id))
            assert response.status_code == 503
            assert time.monotonic() - started < 2
        assert httpx.get(url + "/readyz", timeout=5).status_code == 503
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200
        private_redis.start()
        assert post(url, BODY, signed(BODY, "after")).json() == {"outcome": "accepted"}
        assert post(url, BODY, signed(BODY, "during-1")).json() == {"outcome": "accepted"}, "no mark was left"
        client = private_redis.client()
        assert [fields[b"d"] for _, fields in client.xrange(keys.INGEST_STREAM)] == [b"before", b"after", b"during-1"]
        client.close()
    finally:
        proc.stop()


def test_a_hung_redis_gives_503_within_2_s(private_redis: RedisServer, tmp_path: Path) -> None:
    proc, url = start_receiver(base_env(REDIS_URL=private_redis.url, ENODE_WEBHOOK_SECRET=TEST_SECRET),
                               tmp_path / "receiver.log")
    assert private_redis.process is not None
    try:
        assert post(url, BODY, signed(BODY, "before")).status_code == 200
        private_redis.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        assert post(url, BODY, signed(BODY, "hung")).status_code == 503
        assert time.monotonic() - started < 2
        private_redis.process.send_signal(signal.SIGCONT)
        assert post(url, BODY, signed(BODY, "hung")).status_code == 200
    finally:
        private_redis.process.send_signal(signal.SIGCONT)
        proc.stop()


def test_the_receiver_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    proc = Process([sys.executable, "-m", "uvicorn", "receiver.app:app_from_env", "--factory", "--port", "0"],
                   base_env(), tmp_path / "receiver.log").start()
    assert proc.wait(timeout=30) != 0
    assert "ENODE_WEBHOOK_SECRET is required" in proc.output()


def test_bare_uvicorn_with_the_factory_still_serves_the_receiver(redis_url: str, real_redis: redis.Redis,
                                                                 tmp_path: Path) -> None:
    port = free_port()
    proc = Process([sys.executable, "-m", "uvicorn", "receiver.app:app_from_env", "--factory", "--host", "127.0.0.1",
                    "--port", str(port), "--no-access-log"],
                   base_env(REDIS_URL=redis_url, ENODE_WEBHOOK_SECRET=TEST_SECRET), tmp_path / "receiver.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(url), timeout=20, message=proc.output())
        assert post(url, BODY, signed(BODY, "bare")).json() == {"outcome": "accepted"}
        assert real_redis.xlen(keys.INGEST_STREAM) == 1
        assert "plugwatch_receiver_connections_cut_total" not in httpx.get(url + "/metrics").text  # no limits
    finally:
        proc.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False
