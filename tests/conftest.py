"""Shared fixtures: a private redis-server per test session (per xdist worker), fakeredis, settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis
import structlog

from plugwatch.settings import ProcessSettings, ReceiverSettings, Settings
from tests.support.servers import RedisServer
from tests.support.sinks import Sink, SinkServer

TEST_SECRET = "test-secret-0123456789abcdef"
TEST_DOWNSTREAM_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks example key


@pytest.fixture(scope="session", autouse=True)
def _structlog_never_caches() -> Iterator[None]:
    """In-process CLI and app tests configure structlog, which caches each logger on its first use; a cached
    module logger ignores `structlog.testing.capture_logs` in every later test on that worker, so whether a log
    test passed depended on xdist's test order. Real processes keep caching; this one never does."""
    configure = structlog.configure

    def uncached(**kwargs: object) -> None:
        configure(**{**kwargs, "cache_logger_on_first_use": False})  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(structlog, "configure", uncached)
        yield


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for the whole session (one per xdist worker). Use `redis_url` in tests."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def emptied(redis_server: RedisServer) -> str:
    """The session's private Redis (started again if a previous test stopped it), emptied: no data a previous
    test left, e.g. another partition count recorded, reaches the processes about to start; its URL."""
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    client = redis_server.client()
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's private Redis, emptied before the test."""
    return emptied(redis_server)


@pytest.fixture
def real_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def fake_redis() -> Iterator[redis.Redis]:
    """An in-memory Redis (with Lua) for fast unit tests."""
    client = fakeredis.FakeRedis()
    yield client
    client.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own (with AOF), for tests that stop, kill or restart Redis."""
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    yield server
    server.kill()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(process=ProcessSettings(redis_url=redis_url),
                    receiver=ReceiverSettings(enode_webhook_secrets=(TEST_SECRET,)))


@pytest.fixture
def sink() -> Iterator[tuple[Sink, str]]:
    """A real HTTP sink recording what it receives, and its hook URL."""
    received = Sink()
    with SinkServer(received) as server:
        yield received, server.url + "/hook"
