"""plugwatch's clients on a real Redis Cluster (3 primaries, one replica each; `redis-cli --cluster create`):
the receiver's per-primary script batcher (routing, MOVED, WAIT on the node written to), the data client, the
health read per primary, and the start-up refusal of a cluster whose nodes do not answer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import key_slot

from plugwatch import delivery_arming, redis_clients
from plugwatch.outboxes import Outbox
from plugwatch.partitions import layouts
from plugwatch.redis_health import aread_health, read_health
from receiver.batching import ClusterScriptBatcher, NotReplicated
from tests.support.cluster import RedisClusterServers

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]

# Counts its calls in its partition's slot and returns the node's run id, so a test sees where it ran.
WHERE = "redis.call('INCR', KEYS[1]); return redis.call('INFO', 'server'):match('run_id:(%w+)')"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers(tmp_path_factory.mktemp("cluster"), primaries=3, replicas=1).start()
    yield servers
    servers.stop()


def _node_client(host: str, port: int) -> redis.asyncio.Redis:
    return redis.asyncio.Redis(host=host, port=port, socket_timeout=2)


def _run_id(cluster: RedisClusterServers, key: str) -> bytes:
    client = cluster.primary_of(key).client()
    try:
        run_id: bytes = client.info("server")["run_id"].encode()
        return run_id
    finally:
        client.close()


def test_each_call_runs_on_the_primary_of_its_partition_and_a_moved_slot_is_followed(
    cluster: RedisClusterServers,
) -> None:
    partitions = layouts(12)

    async def scenario() -> tuple[list[bytes], bytes]:
        client = redis_clients.connect_async(cluster.url, socket_timeout=2)
        batcher = ClusterScriptBatcher(client, WHERE, _node_client, timeout=2)
        try:
            ran = list(await asyncio.gather(*(batcher([into.ack_mark], []) for into in partitions)))
            # A stale map: partition 0's slot said to be served by another primary, which answers MOVED.
            slot = client.keyslot(partitions[0].ack_mark)
            others = [node for node in client.get_primaries() if node is not client.get_node_from_key(
                partitions[0].ack_mark)]
            client.nodes_manager.slots_cache[slot] = [others[0]]
            moved = await batcher([partitions[0].ack_mark], [])
            return ran, moved
        finally:
            await batcher.aclose()
            await client.aclose()

    ran, moved = asyncio.run(scenario())
    assert ran == [_run_id(cluster, into.ack_mark) for into in partitions]
    assert len(set(ran)) == 3  # the 12 partitions live on all three primaries
    assert moved == _run_id(cluster, partitions[0].ack_mark)
    data = cluster.client()
    try:
        assert data.get(partitions[0].ack_mark) == b"2"  # it ran once more after MOVED: there, not elsewhere
    finally:
        data.close()


@pytest.mark.parametrize("replicas", [0, 1])
def test_a_call_into_a_slot_being_resharded_follows_ask_to_the_importing_node(
    cluster: RedisClusterServers, replicas: int
) -> None:
    """A resharding moves a slot: the old primary MIGRATING it, the new one IMPORTING it. A call whose keys are
    not on the old primary is answered ASK; the batcher sends it to the new one after ASKING (and, waiting for
    a replica, its ack mark's SET too), where it runs once."""
    key = f"plugwatch:{{resharded-{replicas}}}:calls"
    slot = key_slot(key.encode())
    source = cluster.primary_of(key)
    target = next(server for server in cluster.live
                  if server is not source and RedisClusterServers._role(server) == b"master")
    old, new = source.client(), target.client()
    old_id, new_id = (client.execute_command("CLUSTER", "MYID").decode() for client in (old, new))
    new.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", old_id)
    old.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", new_id)

    async def scenario() -> bytes:
        client = redis_clients.connect_async(cluster.url, socket_timeout=2)
        batcher = ClusterScriptBatcher(client, WHERE, _node_client, timeout=2, replicas=replicas)
        try:
            reply: bytes = await batcher([key], [], key + ":ack")
            return reply
        finally:
            await batcher.aclose()
            await client.aclose()

    try:
        ran_on = asyncio.run(scenario())
        assert ran_on == new.info("server")["run_id"].encode()  # on the importing node, not the old one
        asking = new.pipeline(transaction=False)
        asking.execute_command("ASKING")
        asking.get(key)
        assert asking.execute()[1] == b"1"  # once
        assert old.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    finally:
        for client in (new, old):  # the resharding ends where it began: the slot's keys gone, the slot stable
            cleanup = client.pipeline(transaction=False)
            cleanup.execute_command("ASKING")
            cleanup.delete(key, key + ":ack")
            cleanup.execute(raise_on_error=False)
            client.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
            client.close()


def test_acknowledged_means_the_written_primarys_replica_holds_it(cluster: RedisClusterServers) -> None:
    """WAIT goes to the node the batch wrote to, with an ack mark in a slot of that node: 1 replica confirms."""
    partitions = layouts(12)

    async def scenario(replicas: int) -> list[object]:
        client = redis_clients.connect_async(cluster.url, socket_timeout=2)
        batcher = ClusterScriptBatcher(client, WHERE, _node_client, timeout=1, replicas=replicas)
        try:
            return list(await asyncio.gather(*(batcher([into.ingest_stream], [], into.ack_mark)
                                                for into in partitions), return_exceptions=True))
        finally:
            await batcher.aclose()
            await client.aclose()

    confirmed = asyncio.run(scenario(1))
    assert all(isinstance(reply, bytes) for reply in confirmed), confirmed
    unconfirmed = asyncio.run(scenario(2))  # each primary has one replica: never two
    # (a WAIT that ran to the end of the budget may be cut by it, on a busy machine: a TimeoutError, which the
    # receiver answers 503 as it does NotReplicated)
    assert all(isinstance(reply, NotReplicated | TimeoutError) for reply in unconfirmed), unconfirmed


def test_the_data_client_and_the_health_read_work_node_by_node(cluster: RedisClusterServers) -> None:
    data = redis_clients.connect(cluster.url, socket_timeout=2)
    try:
        for into in layouts(6):
            pipe = data.pipeline(transaction=True)  # one partition's keys: one slot, a MULTI on its node
            pipe.set(into.epoch, b"x")
            pipe.xadd(into.events_stream, {"e": b"1"})
            pipe.execute()
        epochs = [into.epoch for into in layouts(6)]
        assert len({cluster.primary_of(key).port for key in epochs}) == 3
        # SCAN goes over every primary
        assert sorted(data.scan_iter(match="plugwatch:*:epoch")) == sorted(key.encode() for key in epochs)
        health = read_health(data)
        assert health.ready
        assert {finding.check for finding in health.findings} >= {"writable", "eviction_policy"}
        assert redis_clients.socket_timeout(data) == 2
        assert len(list(redis_clients.primaries(data))) == 3
    finally:
        data.close()

    async def async_health() -> bool:
        client = redis_clients.connect_async(cluster.url, socket_timeout=2)
        try:
            return (await aread_health(client)).ready
        finally:
            await client.aclose()

    assert asyncio.run(async_health())


def test_while_a_primary_is_down_the_others_partitions_are_stored_and_the_receiver_stays_ready(
    tmp_path: Path,
) -> None:
    """Killed, not yet failed over: the calls of its partitions fail (503), the others' are stored, the health
    read leaves the lost primary out (so /readyz stays 200); once its replica is promoted, its partitions'
    calls go through again, on the promoted node."""
    cluster = RedisClusterServers(tmp_path / "cluster", primaries=3, replicas=1).start()
    partitions = layouts(12)
    try:
        victim = cluster.primary_of(partitions[0].ack_mark)
        lost = {into.partition for into in partitions if cluster.primary_of(into.ack_mark) is victim}

        async def scenario() -> tuple[list[object], bool, list[object]]:
            client = redis_clients.connect_async(cluster.url, socket_timeout=1)
            batcher = ClusterScriptBatcher(client, WHERE, _node_client, timeout=1)
            try:
                await batcher([partitions[0].ack_mark], [])  # the map is read, a link to each primary opened
                cluster.kill(victim)
                during = list(await asyncio.gather(*(batcher([into.ack_mark], []) for into in partitions),
                                                   return_exceptions=True))
                ready = (await aread_health(client)).ready
                await asyncio.to_thread(cluster.wait_for_promotion, 60)
                after: list[object] = []
                for into in partitions:  # a call that meets the old map fails once; the next one is re-routed
                    for _attempt in range(40):
                        try:
                            after.append(await batcher([into.ack_mark], []))
                            break
                        except (redis.ConnectionError, TimeoutError):
                            await asyncio.sleep(0.25)
                return during, ready, after
            finally:
                await batcher.aclose()
                await client.aclose()

        during, ready, after = asyncio.run(scenario())
        assert {n for n, reply in enumerate(during) if not isinstance(reply, bytes)} == lost
        assert all(isinstance(during[n], redis.ConnectionError | TimeoutError) for n in lost)
        assert ready
        assert len(after) == len(partitions)
        data = redis_clients.connect(cluster.url, socket_timeout=2)
        try:
            assert read_health(data).ready
            assert data.get(partitions[0].ack_mark) == b"2"  # once before the kill, once on the promoted node
        finally:
            data.close()
    finally:
        cluster.stop()


def test_a_queued_outbox_lease_is_released_on_a_cluster(cluster: RedisClusterServers) -> None:
    data = redis_clients.connect(cluster.url, socket_timeout=2)
    boxes = [Outbox("https://a.example/hook", into) for into in layouts(6)]
    try:
        for box in boxes:
            data.set(box.lease, delivery_arming.QUEUED)
        delivery_arming._release_queued(data, boxes)
        assert [data.exists(box.lease) for box in boxes] == [0] * len(boxes)
    finally:
        data.close()


def test_a_removed_subscription_is_forgotten_slot_by_slot_on_a_cluster(cluster: RedisClusterServers) -> None:
    from plugwatch import partitions, subscriptions

    data = redis_clients.connect(cluster.url, socket_timeout=2)
    url = "https://forgotten.example/hook"
    try:
        data.delete(partitions.PARTITIONS_KEY)
        partitions.check_count(data, 12)
        subscriptions.add(data, url, types=(), key=b"k" * 32, now=1.0)
        waiting = layouts(12)[7].outbox(url)
        entry = data.xadd(waiting, {"event": b"{}"})
        subscriptions.remove(data, url, now=2.0)
        assert not subscriptions.forget_if_drained(data, url)  # an event still waits in partition 7
        data.xdel(waiting, entry)
        assert subscriptions.forget_if_drained(data, url)
        assert subscriptions.load(data, url) is None
        assert url not in subscriptions.known_urls(data)
        assert not any(data.exists(into.outbox(url)) for into in layouts(12))
    finally:
        data.delete(partitions.PARTITIONS_KEY)
        data.close()


def test_a_cluster_no_node_of_which_answers_is_redis_down(tmp_path: Path) -> None:
    data = redis_clients.connect("redis+cluster://127.0.0.1:1,127.0.0.1:2", socket_timeout=0.5, retries=0)
    with pytest.raises(redis.ConnectionError, match="Redis Cluster unavailable"):
        data.ping()
    data.close()
