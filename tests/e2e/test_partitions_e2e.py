"""End to end with PLUGWATCH_PARTITIONS=4 on a real redis-server: the real receiver splitting deliveries by
partition, real worker processes draining the partitions, the real CLI; and the start-up refusal of another
partition count by every entry point.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import key_slot

from plugwatch import keys
from plugwatch.partitions import PARTITIONS_KEY, layouts
from simulator.stories import build_scenario
from simulator.truth import expected_events
from tests.e2e.harness import System, assert_nothing_lost, comparable_in, in_order, per_user, send, wait_for_events
from tests.support.servers import Process, RedisServer, base_env, free_cluster_port, wait_until
from tests.support.sinks import Sink

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

PLUGWATCH = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "plugwatch")
# Keys no partition owns (the control plane): the subscriptions, the URLs' delivery states, the recorded count,
# shared counters and the like.
UNPARTITIONED = ("plugwatch:subscriptions", "plugwatch:downstream:urls", "plugwatch:downstream:state:",
                 PARTITIONS_KEY, keys.COUNTERS, "plugwatch:enode:", "plugwatch:health:")


def play_and_compare(system: System, data: redis.Redis, recorder: Sink, *, users: int, seed: int) -> None:
    """Send a scenario in order, several users per delivery (most are split by partition); what comes out of
    the 4 partitions' events streams, and at the sink, must be exactly the ground truth."""
    scenario = build_scenario(users, seed=seed)
    truth = expected_events(scenario.events)
    deliveries = in_order(scenario, min_batch=4, max_batch=12)
    report = send(system.url, deliveries, concurrency=1)
    assert_nothing_lost(data, report, deliveries, partitions=4)
    got = wait_for_events(data, len(truth), timeout=120, partitions=4)
    assert per_user(map(comparable_in(data, 4), got)) == per_user(truth)
    received = recorder.wait_for(len(truth), timeout=60, accepted=True)
    assert {request.webhook_id for request in received} == {event["id"] for event in got}


def test_four_partitions_emit_exactly_the_ground_truth_and_keep_each_partition_in_its_slot(
    redis_url: str, real_redis: redis.Redis, sink: tuple[Sink, str], tmp_path: Path,
) -> None:
    recorder, hook = sink
    system = System(redis_url, hook, tmp_path, PLUGWATCH_PARTITIONS="4")
    try:
        play_and_compare(system, real_redis, recorder, users=400, seed=21)

        names = [key.decode() for key in real_redis.scan_iter(match="plugwatch:*", count=1000)]
        assert real_redis.get(PARTITIONS_KEY) == b"4"
        for into in layouts(4):
            mine = [name for name in names if name.startswith(f"plugwatch:{into.tag}:")]
            assert {key_slot(name.encode()) for name in mine} == {key_slot(into.ingest_stream.encode())}
            assert real_redis.xlen(into.events_stream) > 0  # every partition had users
            assert real_redis.hlen(into.routes) == 1  # its copy of the routes: the one subscription
            assert real_redis.exists(into.outbox(hook))  # the sink's outbox in this partition (drained)
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


@pytest.fixture
def one_node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis Cluster of one primary holding all 16384 slots: commands, MULTIs and Lua calls that span hash
    slots are refused (CROSSSLOT) as on any cluster, while a plain client reaches every key (no MOVED)."""
    workdir = tmp_path_factory.mktemp("cluster-node")
    server = RedisServer(workdir, port=free_cluster_port(), extra=("--cluster-enabled", "yes", "--cluster-config-file",
                                         str(workdir / "nodes.conf"))).start()
    client = server.client()
    try:
        client.execute_command("CLUSTER", "ADDSLOTS", *range(16384))  # (ADDSLOTSRANGE is Redis 7's)
        wait_until(lambda: b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO"), timeout=10)
        yield server
    finally:
        client.close()
        server.stop()



def test_on_a_cluster_node_no_call_of_the_data_path_spans_hash_slots(
    one_node_cluster: RedisServer, rq_server: RedisServer, sink: tuple[Sink, str], tmp_path: Path,
) -> None:
    """The whole system with its data on a cluster-mode redis-server (RQ on a Redis of its own: RQ cannot run
    on a cluster): any Lua call, MULTI or multi-key command across slots would fail there, so the ground truth
    coming out exact, with nothing quarantined, shows every one of them stays in its partition's slot."""
    recorder, hook = sink
    data = one_node_cluster.client()
    with pytest.raises(redis.ResponseError, match="same slot"):  # CROSSSLOT: the node refuses what spans slots
        data.mget("plugwatch:{p0}:a", "plugwatch:{p1}:b")
    with pytest.raises(redis.ResponseError, match="slot"):
        data.eval("return redis.call('GET', KEYS[1])", 2, "plugwatch:{p0}:a", "plugwatch:{p1}:b")
    system = System(one_node_cluster.url, hook, tmp_path, PLUGWATCH_PARTITIONS="4", RQ_REDIS_URL=rq_server.url)
    try:
        play_and_compare(system, data, recorder, users=300, seed=22)
        assert all(process.alive() for process in [system.receiver, *system.workers])
        for process in [system.receiver, *system.workers]:
            assert "same slot" not in process.output()
    finally:
        system.stop()
        data.close()
