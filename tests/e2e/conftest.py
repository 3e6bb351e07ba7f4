"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import RedisServer


@pytest.fixture
def rq_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of RQ's own (`RQ_REDIS_URL`), beside the data's."""
    server = RedisServer(tmp_path_factory.mktemp("rq-redis")).start()
    yield server
    server.stop()
