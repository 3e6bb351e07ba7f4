"""Receiver throughput and latency against a bare endpoint, measured in the same run.

    .venv/bin/python bench/receiver.py [--requests 20000] [--concurrency 32] [--rounds 2] [--profile DIR [--native]]
                                       [--cluster PARTITIONS]

Starts a private redis-server and two servers on the same uvicorn configuration (`receiver.__main__.serve`:
the receiver's httptools protocol with its slow-client limits, uvloop, no access log, one process each): a
bare Starlette endpoint that answers 200, and the receiver (`python -m receiver`, as in the Procfile). Each
is loaded by a raw HTTP/1.1 keep-alive client on uvloop (`concurrency` connections, each sending requests
back to back) with ~3 KB signed Enode batches, every one with its own delivery id. Prints requests/s, p50
and p99 for both, the ratio, and CPU per request of the server, of redis-server and of the load generator
itself: the client's ceiling (requests/s it could send on a whole core) shows whether it, not the server,
was the limit. Goal (issue 17): receiver >= 50% of the bare throughput, p99 < 10 ms at 32 clients.
`--profile DIR` also samples both servers with py-spy during the last round and prints their top 20s.
No worker runs, so every delivery stays in the ingest stream (as under a burst).
`--cluster N` puts the receiver's data on a private 3-primary Redis Cluster (no replicas; `redis-cli --cluster
create`) with N partitions, RQ on a redis-server of its own: each delivery's two users' events are then split
by partition, one script call per part on its primary; "redis" CPU is then the three primaries'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def _ok(_: Request) -> Response:
    return Response(b'{"outcome":"accepted"}', media_type="application/json")


bare_app = Starlette(routes=[Route("/webhooks/enode", _ok, methods=["POST"])])  # the baseline


def serve_bare(port: int) -> None:
    """The bare endpoint on the receiver's uvicorn configuration (its settings, limits and logging)."""
    import os

    from prometheus_client import CollectorRegistry

    from plugwatch.logs import configure_logging
    from plugwatch.settings import Settings
    from receiver.__main__ import raise_open_file_limit, serve
    from receiver.connections import ConnectionLimits

    settings = Settings.from_env(os.environ)
    configure_logging(settings.process.log_format)
    limits = ConnectionLimits.of(settings, raise_open_file_limit())
    serve(bare_app, CollectorRegistry(), limits, host="127.0.0.1", port=port)


def main() -> None:
    import argparse
    import signal
    import tempfile

    import psutil

    from tests.support.servers import Process, RedisServer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="alternate bare/receiver this many times")
    parser.add_argument("--profile", type=Path, default=None,
                        help="sample both servers with py-spy during the last round; raw stacks go here")
    parser.add_argument("--native", action="store_true",
                        help="with --profile: C frames too (syscalls, hiredis, uvloop), the event loop's thread only")
    parser.add_argument("--cluster", type=int, default=None, metavar="PARTITIONS",
                        help="the receiver's data on a 3-primary Redis Cluster, with this many partitions")
    parser.add_argument("--serve-bare", type=int, default=None, metavar="PORT", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_bare is not None:
        serve_bare(options.serve_bare)
        return
    secret = "bench-secret-0123456789abcdef"
    workdir = Path(tempfile.mkdtemp(prefix="plugwatch-bench-"))
    redis_server = RedisServer(workdir / "redis").start()
    cluster, env, data_servers = _data(options.cluster, workdir, redis_server, secret)
    redis_processes = [psutil.Process(server.process.pid) for server in data_servers if server.process is not None]
    processes: list[Process] = []
    try:
        targets: dict[str, int] = {}
        servers: dict[str, Process] = {}
        for name in ("bare", "receiver"):
            targets[name], servers[name] = _start(name, env, workdir)
            processes.append(servers[name])
        results: dict[str, list[Result]] = {name: [] for name in targets}
        for round_no in range(options.rounds):
            for name, port in targets.items():
                requests = _requests(secret, options.requests, f"{name}-{round_no}")
                profiling = options.profile is not None and round_no == options.rounds - 1
                sampler = (_py_spy(servers[name].pid, options.profile / f"{name}.txt", native=options.native)
                           if profiling else None)
                result = _measured(port, requests, options.concurrency,
                                   psutil.Process(servers[name].pid), redis_processes)
                results[name].append(result)
                print(f"round {round_no + 1} {name:9s} {result}", flush=True)
                if sampler is not None:
                    sampler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                    sampler.wait(timeout=30)
        _report(results, cluster.client() if cluster is not None else redis_server.client(), options.cluster or 1)
        if options.profile is not None:
            for name in targets:
                print(_top(options.profile / f"{name}.txt", name))
    finally:
        for proc in processes:
            proc.stop()
        redis_server.stop()
        if cluster is not None:
            cluster.stop()


def _data(partitions: int | None, workdir: Path, redis_server: Any,
          secret: str) -> tuple[Any, dict[str, str], list[Any]]:
    """Where the receiver's data goes: `redis_server`, or (`partitions`) a new 3-primary cluster, RQ on
    `redis_server`; returns the cluster (or None), the processes' environment and the data's servers."""
    from tests.support.cluster import RedisClusterServers
    from tests.support.servers import base_env

    if partitions is None:
        return None, base_env(REDIS_URL=redis_server.url, ENODE_WEBHOOK_SECRET=secret), [redis_server]
    cluster = RedisClusterServers(workdir / "cluster", primaries=3, replicas=0).start()
    env = base_env(REDIS_URL=cluster.url, RQ_REDIS_URL=redis_server.url, ENODE_WEBHOOK_SECRET=secret,
                   PLUGWATCH_PARTITIONS=str(partitions))
    print(f"data on a 3-primary Redis Cluster, {partitions} partitions; RQ on port {redis_server.port}")
    return cluster, env, cluster.servers


def _start(name: str, env: dict[str, str], workdir: Path) -> tuple[int, Any]:
    import sys

    from tests.support.servers import Process, free_port, wait_until

    port = free_port()
    args = [sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(port)]
    if name == "receiver":
        args = [sys.executable, "-m", "receiver", "--host", "127.0.0.1", "--port", str(port)]
    proc = Process(args, {**env, "PORT": str(port)}, workdir / f"{name}.log").start()
    try:
        wait_until(lambda: _listening(port), timeout=20, message=f"{name} did not start")
    except AssertionError:
        proc.stop()
        raise
    return port, proc


def _measured(port: int, requests: list[bytes], concurrency: int, server: Any, redis_processes: list[Any]) -> Result:
    """One load run, with the CPU time the server, the data's redis-servers and this client spent on it."""
    import psutil
    import uvloop

    client = psutil.Process()

    def cpu() -> list[float]:
        return [sum(server.cpu_times()[:2]), sum(sum(p.cpu_times()[:2]) for p in redis_processes),
                sum(client.cpu_times()[:2])]

    before = cpu()
    result = uvloop.run(_load(port, requests, concurrency))
    after = cpu()
    server_s, redis_s, client_s = (b - a for a, b in zip(before, after, strict=True))
    result.cpu_us = server_s / len(requests) * 1e6
    result.redis_us = redis_s / len(requests) * 1e6
    result.client_us = client_s / len(requests) * 1e6
    result.client_busy = client_s / result.seconds
    return result


def _py_spy(pid: int, raw: Path, *, native: bool = False) -> Any:
    import shutil
    import subprocess
    import sys

    raw.parent.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([binary, "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
                             *(["--native"] if native else ["--nonblocking"]), "-o", str(raw)],
                            stdout=subprocess.DEVNULL, stderr=raw.with_suffix(".log").open("wb"))


# frames under every sample of the event loop's own thread: their total says nothing
_ROOTS = {"_run_module_as_main <frozen runpy>", "_run_code <frozen runpy>", "<module> __main__.py", "main __main__.py",
          "serve __main__.py", "Server.run server.py", "asyncio_run _compat.py", "Runner.run runners.py",
          "serve_bare receiver.py"}


def _frame(frame: str) -> str:
    """`function (path/file.py:line)` as `function file.py`."""
    function, _, where = frame.partition(" (")
    return f"{function} {where.rsplit('/', 1)[-1].rsplit(':', 1)[0]}"


def _top(raw: Path, name: str, count: int = 20) -> str:
    """py-spy's raw (collapsed) stacks: the functions with the most samples, by own and by total time."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    if not raw.exists():
        return f"no profile at {raw} (py-spy not installed, or not allowed to attach)"
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = [_frame(frame) for frame in stack.split(";")]
        samples += int(n)
        own[frames[-1]] = own.get(frames[-1], 0) + int(n)
        for frame in set(frames) - _ROOTS:
            total[frame] = total.get(frame, 0) + int(n)
    lines = [f"\nprofile of {name} (py-spy, {samples} samples): top {count} by own time"]
    lines += [f"  {n / samples:6.1%}  {name}" for name, n in sorted(own.items(), key=lambda kv: -kv[1])[:count]]
    lines += [f"top {count} by total time (the function and what it calls; the loop's entry frames left out)"]
    lines += [f"  {n / samples:6.1%}  {name}" for name, n in sorted(total.items(), key=lambda kv: -kv[1])[:count]]
    return "\n".join(lines)


class Result:
    def __init__(self, seconds: float, latencies: list[float], statuses: dict[int, int]) -> None:
        latencies.sort()
        self.seconds = seconds
        self.rps = len(latencies) / seconds
        self.p50_ms = latencies[len(latencies) // 2] * 1000
        self.p99_ms = latencies[int(len(latencies) * 0.99)] * 1000
        self.statuses = statuses
        self.cpu_us = 0.0  # server CPU time (user + system) per request
        self.redis_us = 0.0  # redis-server's
        self.client_us = 0.0  # the load generator's (this process)
        self.client_busy = 0.0  # the load generator's CPU seconds per second (1.0: a whole core)

    def __str__(self) -> str:
        return (f"{self.rps:8.0f} req/s  p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms  "
                f"server CPU {self.cpu_us:5.0f} us/req  redis {self.redis_us:4.0f} us/req  "
                f"client {self.client_us:4.0f} us/req ({self.client_busy:4.0%} of a core, ceiling "
                f"{1e6 / max(self.client_us, 1e-9):6.0f} req/s)  statuses {self.statuses}")


def _report(results: dict[str, list[Result]], client: Any, partitions: int) -> None:
    best = {name: max(runs, key=lambda r: r.rps) for name, runs in results.items()}
    bare, receiver = best["bare"], best["receiver"]
    print(f"\nbest of rounds\n  bare      {bare}\n  receiver  {receiver}")
    print(f"  ratio receiver/bare throughput: {receiver.rps / bare.rps:.1%} (goal >= 50%); "
          f"receiver p99 {receiver.p99_ms:.2f} ms (goal < 10 ms); "
          f"server CPU per request: bare {bare.cpu_us:.0f} us, receiver {receiver.cpu_us:.0f} us "
          f"(+ redis-server {receiver.redis_us:.0f} us); "
          f"client ceiling: {1e6 / max(bare.client_us, 1e-9):.0f} req/s, "
          f"{bare.client_busy:.0%} of a core busy against bare")
    from plugwatch.partitions import layouts

    entries = sum(int(client.xlen(into.ingest_stream)) for into in layouts(partitions))
    print(f"  ingest stream entries: {entries}" + (f" (in {partitions} partitions' streams)" if partitions > 1 else ""))
    client.close()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _requests(secret: str, count: int, tag: str) -> list[bytes]:
    """`count` complete HTTP/1.1 requests, each a ~3 KB signed batch with a distinct delivery id."""
    import orjson

    from plugwatch.enode_signature import sign

    out = []
    for i in range(count):
        events = [_vehicle_event(f"{tag}-{i}-{j}") for j in range(2)]
        body = orjson.dumps(events)
        head = (f"POST /webhooks/enode HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nx-enode-delivery: {tag}-{i}\r\n"
                f"x-enode-signature: {sign(body, secret)}\r\n\r\n")
        out.append(head.encode() + body)
    return out


def _vehicle_event(vehicle_id: str) -> dict[str, object]:
    at = "2025-03-14T18:02:05.000Z"
    return {
        "event": "user:vehicle:updated", "createdAt": at, "version": "2024-10-01",
        "user": {"id": "usr-" + vehicle_id}, "updatedFields": ["chargeState.isPluggedIn"],
        "vehicle": {
            "id": "veh-" + vehicle_id, "userId": "usr-" + vehicle_id, "vendor": "TESLA", "lastSeen": at,
            "isReachable": True, "scopes": ["vehicle:read:data", "vehicle:read:location", "vehicle:control:charging"],
            "information": {"vin": "5YJ3E1EA7KF000000", "brand": "Tesla", "model": "Model 3", "year": 2021,
                            "displayName": "Model 3"},
            "chargeState": {"batteryLevel": 54, "range": 230, "isPluggedIn": True, "isCharging": False,
                            "isFullyCharged": False, "batteryCapacity": 73.5, "chargeLimit": 80, "chargeRate": None,
                            "chargeTimeRemaining": None, "lastUpdated": at, "maxCurrent": 32,
                            "powerDeliveryState": "PLUGGED_IN:STOPPED", "pluggedInChargerId": "chg-" + vehicle_id},
            "smartChargingPolicy": {"isEnabled": False, "deadline": None, "minimumChargeLimit": 0},
            "location": {"id": "loc-" + vehicle_id, "longitude": 10.7522, "latitude": 59.9139,
                         "lastUpdated": at},
            "odometer": {"distance": 24513.2, "lastUpdated": at},
            "capabilities": {name: {"isCapable": True, "interventionIds": []}
                             for name in ("information", "chargeState", "location", "odometer", "setMaxCurrent",
                                          "startCharging", "stopCharging", "smartCharging")},
        },
    }


async def _load(port: int, requests: list[bytes], concurrency: int) -> Result:
    import asyncio
    import time

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(requests)
    loop = asyncio.get_running_loop()

    class Client(asyncio.Protocol):
        """Sends the next request as soon as the previous response is complete (a lean client: the load
        generator must cost far less than the server it loads)."""

        def __init__(self) -> None:
            self.done = loop.create_future()
            self.buffer = b""
            self.started = 0.0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.send()

        def send(self) -> None:
            request = next(queue, None)  # shared iterator: each request is sent once
            if request is None:
                self.transport.close()
                return
            self.started = time.perf_counter()
            self.transport.write(request)  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = _content_length(self.buffer[:end])
            if len(self.buffer) < end + 4 + length:
                return
            latencies.append(time.perf_counter() - self.started)
            status = int(self.buffer[9:12])
            statuses[status] = statuses.get(status, 0) + 1
            self.buffer = self.buffer[end + 4 + length:]
            self.send()

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.done.done():
                self.done.set_result(None)

    async def connection() -> None:
        _, client = await loop.create_connection(Client, "127.0.0.1", port)
        await client.done

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return Result(time.perf_counter() - started, latencies, statuses)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path[0] = str(Path(__file__).resolve().parents[1])  # the project root, not bench/ (bench/receiver.py)
    main()
