"""The receiver in-process (create_app + httpx ASGITransport) on fakeredis, and signed Enode requests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import fakeredis
import httpx
import orjson

from plugwatch import keys
from plugwatch.enode_signature import sign
from plugwatch.settings import ReceiverSettings, Settings
from receiver.app import create_app
from tests.conftest import TEST_SECRET

T = TypeVar("T")
VERSION = "2024-10-01"


def vehicle_batch(*vehicle_ids: str) -> bytes:
    return orjson.dumps([{"event": "user:vehicle:updated", "version": VERSION, "createdAt": "2025-03-14T18:02:05Z",
                          "user": {"id": "u-" + v}, "vehicle": {"id": v}} for v in vehicle_ids or ("v1",)])


def signed(body: bytes, delivery_id: str | None = "d1", secret: str = TEST_SECRET, **extra: str) -> dict[str, str]:
    headers = {"x-enode-signature": sign(body, secret), "content-type": "application/json", **extra}
    if delivery_id is not None:
        headers["x-enode-delivery"] = delivery_id
    return headers


@dataclass
class InProcessReceiver:
    """A receiver app on a FakeServer; `server.connected = False` simulates Redis being down."""

    settings: Settings = field(
        default_factory=lambda: Settings(receiver=ReceiverSettings(enode_webhook_secrets=(TEST_SECRET,))))
    server: fakeredis.FakeServer = field(default_factory=fakeredis.FakeServer)

    def __post_init__(self) -> None:
        self.redis = fakeredis.FakeRedis(server=self.server)
        self.app = create_app(self.settings, redis=fakeredis.FakeAsyncRedis(server=self.server),
                              sync_redis=fakeredis.FakeRedis(server=self.server))

    def run(self, work: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
        async def main() -> T:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
                result = await work(client)
            await self.app.webhook.settled()  # the drain enqueue that runs after a response
            return result

        return asyncio.run(main())

    def post(self, body: bytes, headers: Mapping[str, str], **kwargs: Any) -> httpx.Response:
        return self.run(lambda client: client.post("/webhooks/enode", content=body, headers=dict(headers), **kwargs))

    def get(self, path: str) -> httpx.Response:
        return self.run(lambda client: client.get(path))

    def ingest_count(self) -> int:
        return int(self.redis.xlen(keys.INGEST_STREAM)) if self.redis.exists(keys.INGEST_STREAM) else 0

    def nothing_stored(self) -> bool:
        """No trace of any delivery: no stream, no quarantine, no dedupe mark, no heartbeat."""
        return not self.redis.keys("plugwatch:*")
