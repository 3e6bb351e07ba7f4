"""Receiver throughput and latency against a bare endpoint, measured in the same run.

    .venv/bin/python bench/receiver.py [--requests 20000] [--concurrency 32] [--rounds 2]

Starts a private redis-server and two real uvicorn processes (one worker process each): a bare Starlette
endpoint that answers 200, and the receiver (`python -m receiver`, as in the Procfile). Each is
loaded by a raw asyncio HTTP/1.1 keep-alive client (`concurrency` connections, each sending requests back
to back) with ~3 KB signed Enode batches, every one with its own delivery id. Prints requests/s, p50
and p99 for both and the ratio. Goal (issue 2): receiver >= 25% of the bare throughput, p99 < 25 ms.
No worker runs, so every delivery stays in the ingest stream (as under a burst).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def _ok(_: Request) -> Response:
    return Response(b'{"outcome":"accepted"}', media_type="application/json")


bare_app = Starlette(routes=[Route("/webhooks/enode", _ok, methods=["POST"])])  # the baseline


def main() -> None:
    import argparse
    import asyncio
    import sys
    import tempfile
    from pathlib import Path

    import psutil

    from tests.support.servers import Process, RedisServer, base_env, free_port, wait_until

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="alternate bare/receiver this many times")
    options = parser.parse_args()
    secret = "bench-secret-0123456789abcdef"
    workdir = Path(tempfile.mkdtemp(prefix="plugwatch-bench-"))
    redis_server = RedisServer(workdir / "redis").start()
    processes: list[Process] = []
    try:
        targets: dict[str, int] = {}
        servers: dict[str, Process] = {}
        env = base_env(REDIS_URL=redis_server.url, ENODE_WEBHOOK_SECRET=secret)
        for name in ("bare", "receiver"):
            port = free_port()
            args = [sys.executable, "-m", "uvicorn", "bench.receiver:bare_app", "--host", "127.0.0.1", "--port",
                    str(port), "--no-access-log", "--log-level", "warning"]
            if name == "receiver":
                args = [sys.executable, "-m", "receiver", "--host", "127.0.0.1", "--port", str(port)]
            proc = Process(args, {**env, "PORT": str(port)}, workdir / f"{name}.log").start()
            processes.append(proc)
            servers[name] = proc
            wait_until(lambda port=port: _listening(port), timeout=20, message=f"{name} did not start")
            targets[name] = port
        results: dict[str, list[Result]] = {name: [] for name in targets}
        for round_no in range(options.rounds):
            for name, port in targets.items():
                requests = _requests(secret, options.requests, f"{name}-{round_no}")
                server = psutil.Process(servers[name].pid)
                cpu_before = sum(server.cpu_times()[:2])
                result = asyncio.run(_load(port, requests, options.concurrency))
                result.cpu_us = (sum(server.cpu_times()[:2]) - cpu_before) / len(requests) * 1e6
                results[name].append(result)
                print(f"round {round_no + 1} {name:9s} {result}")
        _report(results, redis_server)
    finally:
        for proc in processes:
            proc.stop()
        redis_server.stop()


class Result:
    def __init__(self, seconds: float, latencies: list[float], statuses: dict[int, int]) -> None:
        latencies.sort()
        self.rps = len(latencies) / seconds
        self.p50_ms = latencies[len(latencies) // 2] * 1000
        self.p99_ms = latencies[int(len(latencies) * 0.99)] * 1000
        self.statuses = statuses
        self.cpu_us = 0.0  # server CPU time (user + system) per request

    def __str__(self) -> str:
        return (f"{self.rps:8.0f} req/s  p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms  "
                f"server CPU {self.cpu_us:5.0f} us/req  statuses {self.statuses}")


def _report(results: dict[str, list[Result]], redis_server: object) -> None:
    best = {name: max(runs, key=lambda r: r.rps) for name, runs in results.items()}
    bare, receiver = best["bare"], best["receiver"]
    print(f"\nbest of rounds\n  bare      {bare}\n  receiver  {receiver}")
    print(f"  ratio receiver/bare throughput: {receiver.rps / bare.rps:.1%} (goal >= 25%); "
          f"receiver p99 {receiver.p99_ms:.2f} ms (goal < 25 ms); "
          f"server CPU per request: bare {bare.cpu_us:.0f} us, receiver {receiver.cpu_us:.0f} us")
    client = redis_server.client()  # type: ignore[attr-defined]
    print(f"  ingest stream entries: {client.xlen('plugwatch:ingest')}")
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

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for request in queue:  # shared iterator: each request is sent once
                started = time.perf_counter()
                writer.write(request)
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return Result(time.perf_counter() - started, latencies, statuses)


async def _read_response(reader: object) -> int:
    head = await reader.readuntil(b"\r\n\r\n")  # type: ignore[attr-defined]
    lines = head.split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)  # type: ignore[attr-defined]
    return int(lines[0].split()[1])


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path[0] = str(Path(__file__).resolve().parents[1])  # the project root, not bench/ (bench/receiver.py)
    main()
