"""rq-dashboard as the Procfile's `dashboard:` runs it (real process, real port), for tests that open it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.platform import platform_env, start_process_type, wait_for_http
from tests.support.servers import free_port


@contextmanager
def running_dashboard(redis_url: str, log_path: Path) -> Iterator[str]:
    """Start rq-dashboard on a free port against `redis_url`; yield its base URL; stop it afterwards."""
    port = free_port()
    proc = start_process_type("dashboard", platform_env(REDIS_URL=redis_url, PORT=str(port)), log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(proc, url + "/")
        yield url
    finally:
        proc.stop()
