"""End to end with PLUGWATCH_PARTITIONS=4 on a real redis-server: the real receiver splitting deliveries by
partition, real worker processes draining the partitions, the real CLI; and the start-up refusal of another
partition count by every entry point.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis
from redis.cluster import key_slot

from plugwatch import keys
from plugwatch.partitions import PARTITIONS_KEY, layouts
from simulator.stories import build_scenario
from simulator.truth import expected_events
from tests.e2e.harness import System, assert_nothing_lost, comparable_in, in_order, per_user, send, wait_for_events
from tests.support.servers import Process, base_env
from tests.support.sinks import Sink

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

PLUGWATCH = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "plugwatch")
# Keys no partition owns: the subscriptions, the outboxes and the routes to them (one per URL), the recorded
# count, shared counters and the like.
UNPARTITIONED = (keys.OUTBOX_PREFIX, "plugwatch:subscriptions", "plugwatch:downstream:", PARTITIONS_KEY,
                 keys.COUNTERS, "plugwatch:enode:", "plugwatch:health:")


def test_four_partitions_emit_exactly_the_ground_truth_and_keep_each_partition_in_its_slot(
    redis_url: str, real_redis: redis.Redis, sink: tuple[Sink, str], tmp_path: Path,
) -> None:
    recorder, hook = sink
    scenario = build_scenario(400, seed=21)
    truth = expected_events(scenario.events)
    system = System(redis_url, hook, tmp_path, PLUGWATCH_PARTITIONS="4")
    try:
        deliveries = in_order(scenario, min_batch=4, max_batch=12)  # several users per delivery: most are split
        report = send(system.url, deliveries, concurrency=1)
        assert_nothing_lost(real_redis, report, deliveries, partitions=4)
        got = wait_for_events(real_redis, len(truth), timeout=120, partitions=4)
        assert per_user(map(comparable_in(real_redis, 4), got)) == per_user(truth)
        received = recorder.wait_for(len(truth), timeout=60, accepted=True)
        assert {request.webhook_id for request in received} == {event["id"] for event in got}

        names = [key.decode() for key in real_redis.scan_iter(match="plugwatch:*", count=1000)]
        assert real_redis.get(PARTITIONS_KEY) == b"4"
        for into in layouts(4):
            mine = [name for name in names if name.startswith(f"plugwatch:{into.tag}:")]
            assert {key_slot(name.encode()) for name in mine} == {key_slot(into.ingest_stream.encode())}
            assert real_redis.xlen(into.events_stream) > 0  # every partition had users
        stray = [name for name in names if "{p" not in name and not name.startswith(UNPARTITIONED)]
        assert not stray, f"unpartitioned data-path keys: {stray[:5]}"

        status = subprocess.run([PLUGWATCH, "status", "--json"], env=system.env, capture_output=True, text=True,
                                timeout=60, check=False)
        assert status.returncode == 0, status.stderr
        assert '"queue": "ingest:3"' in status.stdout
    finally:
        system.stop()


def test_every_entry_point_refuses_another_partition_count_naming_the_variable(
    redis_url: str, real_redis: redis.Redis, tmp_path: Path,
) -> None:
    real_redis.set(PARTITIONS_KEY, 4)
    env = base_env(REDIS_URL=redis_url, ENODE_WEBHOOK_SECRET="a-test-secret-of-some-length", PLUGWATCH_PARTITIONS="2",
                   PLUGWATCH_METRICS_PORT="0")
    for command in ([sys.executable, "-m", "worker"], [sys.executable, "-m", "receiver", "--port", "0"],
                    [PLUGWATCH, "status"]):
        process = Process(command, env, tmp_path / "refused.log").start()
        assert process.wait(timeout=60) == 2, command
        lines = (tmp_path / "refused.log").read_text().strip().splitlines()
        assert "PLUGWATCH_PARTITIONS is 2" in lines[-1], lines
        assert "PLUGWATCH_PARTITIONS=4" in lines[-1], lines
        assert "Traceback" not in "".join(lines)
    assert real_redis.get(PARTITIONS_KEY) == b"4"
