"""pytest fixtures for tests against the fake Enode: `fake` (override it to pre-load state) and `server`.

Use from a test module with `pytest_plugins = ("tests.support.enode_fixtures",)`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fake_enode import FakeEnode, serve
from tests.support.servers import ThreadedUvicorn


@pytest.fixture
def fake() -> FakeEnode:
    return FakeEnode()


@pytest.fixture
def server(fake: FakeEnode) -> Iterator[ThreadedUvicorn]:
    """The fake Enode under real uvicorn on a free port."""
    with serve(fake) as running:
        yield running
