"""PLUGWATCH_ACK_REPLICAS against a real primary and replica (two redis-server processes): a delivery is
answered 200 only once the replica holds it, and a retry of one the replica never confirmed is not taken for
a confirmed duplicate."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio

from plugwatch import keys
from plugwatch.settings import ReceiverSettings, Settings
from receiver.app import create_app
from tests.conftest import TEST_SECRET
from tests.support.receiver_app import signed, vehicle_batch
from tests.support.servers import RedisServer, wait_until


class Pair:
    def __init__(self, workdir: Path) -> None:
        self.primary = RedisServer(workdir / "primary").start()
        self.replica = RedisServer(workdir / "replica").start()
        with self.replica.client() as client:
            client.execute_command("REPLICAOF", "127.0.0.1", str(self.primary.port))
        wait_until(self.in_sync, timeout=20, message="the replica did not sync")

    def in_sync(self) -> bool:
        with self.replica.client() as client:
            return client.info("replication").get("master_link_status") == "up"

    def pause_replica(self) -> None:
        assert self.replica.process is not None
        os.kill(self.replica.process.pid, signal.SIGSTOP)

    def resume_replica(self) -> None:
        assert self.replica.process is not None
        os.kill(self.replica.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.resume_replica()
        self.replica.stop()
        self.primary.stop()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    running = Pair(tmp_path)
    yield running
    running.stop()


class Receiver:
    """The receiver app in-process with its own connections to the real primary (one receiver process)."""

    def __init__(self, url: str, ack_replicas: int) -> None:
        settings = Settings(receiver=ReceiverSettings(enode_webhook_secrets=(TEST_SECRET,),
                                                      ack_replicas=ack_replicas))
        self._connection, self._sync = redis.asyncio.Redis.from_url(url), redis.Redis.from_url(url)
        self.app = create_app(replace(settings, process=replace(settings.process, redis_url=url)),
                              redis=self._connection, sync_redis=self._sync)
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://receiver")

    async def status(self, delivery_id: str) -> int:
        body = vehicle_batch("v1")
        return (await self._client.post("/webhooks/enode", content=body, headers=signed(body, delivery_id))).status_code

    async def close(self) -> None:
        await self._client.aclose()
        await self.app.webhook.settled()
        await self._connection.aclose()
        self._sync.close()


def answers(url: str, ack_replicas: int, *delivery_ids: str) -> list[int]:
    """The statuses one receiver gives the same signed batch under each id in turn."""
    async def main() -> list[int]:
        receiver = Receiver(url, ack_replicas)
        try:
            return [await receiver.status(delivery_id) for delivery_id in delivery_ids]
        finally:
            await receiver.close()

    return asyncio.run(main())


def test_a_delivery_is_answered_only_once_the_replica_holds_it(pair: Pair) -> None:
    assert answers(pair.primary.url, 1, "d1") == [200]
    with pair.replica.client() as replica:
        assert replica.xlen(keys.INGEST_STREAM) == 1  # already there when the 200 was sent


def test_an_unconfirmed_delivery_is_refused_and_its_retry_waits_for_the_replica(pair: Pair) -> None:
    async def main() -> None:
        first, second = Receiver(pair.primary.url, 1), Receiver(pair.primary.url, 1)
        try:
            # `second` has written and been confirmed before: its connection's last write is older than the
            # one `first` is about to make, so a WAIT covering only its own writes would pass at once (Redis
            # documents WAIT so; redis-server 7.0 here also counts a connection's read-only commands, so on
            # it this holds even without the batcher's ack mark, which makes it hold on every server).
            assert await second.status("d0") == 200
            pair.pause_replica()
            assert await first.status("d1") == 503  # stored on the primary only
            # Enode's retry reaches `second`: d1 is marked as seen on the primary, but that is no confirmed
            # duplicate while the replica lacks it.
            assert await second.status("d1") == 503
            pair.resume_replica()
            assert await second.status("d1") == 200
        finally:
            await first.close()
            await second.close()

    asyncio.run(main())
    with pair.primary.client() as primary, pair.replica.client() as replica:
        assert primary.xlen(keys.INGEST_STREAM) == 2  # d0 and d1 once: the retries were duplicates
        assert replica.xlen(keys.INGEST_STREAM) == 2


def test_without_the_setting_the_primary_alone_acknowledges(pair: Pair) -> None:
    pair.pause_replica()
    assert answers(pair.primary.url, 0, "d1") == [200]


def test_a_primary_without_replicas_refuses_every_delivery(tmp_path: Path) -> None:
    alone = RedisServer(tmp_path / "alone").start()
    try:
        assert answers(alone.url, 1, "a", "a") == [503, 503]
    finally:
        alone.stop()
