"""The fake Enode (`simulator.fake_enode`) for tests: `serve(fake)`, `enode_settings(url)`, and pytest fixtures
`fake` (override it to pre-load state) and `server`.

Use the fixtures from a test module with `pytest_plugins = ("tests.support.enode_fixtures",)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from plugwatch.settings import EnodeSettings, ProcessSettings, Settings
from simulator.fake_enode import CLIENT_ID, CLIENT_SECRET, TOKEN_PATH, FakeEnode
from tests.support.servers import ThreadedUvicorn


def serve(fake: FakeEnode) -> ThreadedUvicorn:
    """`with serve(fake) as server:` runs the fake under real uvicorn on a free port."""
    return ThreadedUvicorn(fake.app)


def enode_settings(server_url: str, *, redis_url: str = ProcessSettings.redis_url, **overrides: Any) -> Settings:
    """Settings whose Enode API and token URLs point at a served fake, with the fake's credentials."""
    values: dict[str, Any] = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                              "api_url": server_url, "token_url": server_url + TOKEN_PATH}
    return Settings(process=ProcessSettings(redis_url=redis_url), enode=EnodeSettings(**(values | overrides)))


@pytest.fixture
def fake() -> FakeEnode:
    return FakeEnode()


@pytest.fixture
def server(fake: FakeEnode) -> Iterator[ThreadedUvicorn]:
    """The fake Enode under real uvicorn on a free port."""
    with serve(fake) as running:
        yield running
