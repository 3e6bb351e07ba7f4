"""Redis killed (SIGKILL) under load and restarted from its AOF: no delivery answered 200 is lost.

This is the deploy/README.md claim behind `appendonly yes` + `appendfsync always`: Enode retries what got a
503 or no answer while Redis was down, and everything that got a 200 is still there after the restart.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from plugwatch import keys
from simulator.deliveries import Delivery, Plan, plan_deliveries
from simulator.sender import SendOptions, SendReport, send_all
from simulator.stories import build_scenario
from tests.conftest import TEST_SECRET
from tests.support.platform import platform_env, start_process_type
from tests.support.servers import RedisServer, start_receiver, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


def test_redis_killed_under_load_and_restarted_from_aof_keeps_every_accepted_delivery(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    deliveries = plan_deliveries(build_scenario(users=30, seed=8).events, Plan(min_batch=1, max_batch=4, seed=8))
    receiver, url = start_receiver(platform_env(REDIS_URL=private_redis.url, ENODE_WEBHOOK_SECRET=TEST_SECRET),
                                   tmp_path / "receiver.log")
    accepted: list[str] = []
    reports: list[SendReport] = []

    def on_accepted(delivery: Delivery) -> None:
        accepted.append(delivery.id)

    def send() -> None:
        options = SendOptions(concurrency=4, delay=0.005, give_up_after=60)
        reports.append(asyncio.run(send_all(url + "/webhooks/enode", TEST_SECRET, deliveries, options, on_accepted)))

    sender = threading.Thread(target=send)
    try:
        sender.start()
        wait_until(lambda: len(accepted) >= len(deliveries) // 3, timeout=60)
        private_redis.kill()
        killed_after = len(accepted)
        time.sleep(1.0)  # deliveries meanwhile get 503 or no answer, and are resent
        private_redis.start()
        sender.join(timeout=120)
        assert not sender.is_alive()
    finally:
        receiver.stop()
    (report,) = reports
    assert report.ok, report
    assert report.resends > 0, "some deliveries should have met the dead Redis"
    assert killed_after < len(deliveries)

    connection = private_redis.client()
    stored = {fields[b"d"].decode() for _, fields in connection.xrange(keys.INGEST_STREAM)}
    assert set(accepted) == {d.id for d in deliveries}
    assert set(accepted) <= stored, f"{len(set(accepted) - stored)} accepted deliveries lost"

    worker = start_process_type("worker", platform_env(REDIS_URL=private_redis.url, PLUGWATCH_METRICS_PORT="0"),
                                tmp_path / "worker.log")
    try:
        wait_until(lambda: connection.xlen(keys.INGEST_STREAM) == 0, timeout=120, interval=0.2,
                   message=f"ingest not drained after the restart:\n{worker.output()[-3000:]}")
    finally:
        worker.stop()
        connection.close()
