"""Run Procfile process types the way a Heroku-style platform does: `bash -c "<command>"` with only the
documented environment (plus PATH with the project's venv first, as a built slug/image has it)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import redis
from rq import Worker

from tests.support.manifests import procfile
from tests.support.servers import Process, base_env, wait_until

VENV_BIN = str(Path(sys.executable).parent)


def platform_env(**variables: str) -> dict[str, str]:
    env = base_env(**variables)
    env["PATH"] = f"{VENV_BIN}:{env['PATH']}"
    return env


def start_process_type(name: str, env: dict[str, str], log_path: Path) -> Process:
    return Process(["bash", "-c", procfile()[name]], env, log_path).start()


def http_status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def wait_for_http(proc: Process, url: str, status: int = 200, timeout: float = 30) -> None:
    def answered() -> bool:
        if not proc.alive():
            raise AssertionError(f"process exited:\n{proc.output()}")
        return http_status(url) == status

    wait_until(answered, timeout=timeout, interval=0.2, message=f"{url} did not answer {status}:\n{proc.output()}")


def registered_workers(connection: redis.Redis) -> list[Worker]:
    return list(Worker.all(connection=connection))


def wait_for_worker(proc: Process, connection: redis.Redis, count: int = 1, timeout: float = 30) -> list[Worker]:
    def registered() -> bool:
        if not proc.alive():
            raise AssertionError(f"worker exited:\n{proc.output()}")
        return len(registered_workers(connection)) >= count

    wait_until(registered, timeout=timeout, interval=0.2, message=f"no worker registered:\n{proc.output()}")
    return registered_workers(connection)
