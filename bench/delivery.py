"""Downstream delivery throughput: one worker process beside a bare client at the same concurrency, one run.

    .venv/bin/python -m bench.delivery [--events 20000] [--backlog 100000] [--concurrency 16] [--vehicles 1000]

Starts its own redis-server on a free port (never touches another Redis) and one fast sink (a bare ASGI
app answering 200 under uvicorn with uvloop and httptools, access log off, in its own process), then
measures:

  (a) bare client: `--concurrency` asyncio tasks sharing one aiohttp session on uvloop, POSTing the same
      bodies with the same signing to the same sink, no Redis: the ceiling of a fast client against this
      sink on this machine; measured before (b) and again after (c), and the higher of the two is the
      baseline (the machine is shared: this keeps the ratio from flattering the worker);
  (b) one worker process (`python -m worker`, PLUGWATCH_DELIVERY_CONCURRENCY=`--concurrency`): the events
      (of `--vehicles` vehicles, shuffled together, each vehicle's in order) put into the URL's outbox, then
      one kick; timed from the kick until the outbox is empty (an entry leaves it only after a 2xx);
  (c) the same worker draining a `--backlog`-event backlog for the URL (a consumer back after a day);
  (d) a sink that answers after `--latency` ms (a consumer across a network), `--slow-events` events, by a
      worker at concurrency 1 (one POST at a time, as before concurrency) and at `--concurrency`.

Prints events/s for each, the ratio (b)/(a), and the time of (c), with the CPU each side spent per event.
The sink counts what it accepted, so a run counts only when it got every event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

received = [0]  # in the sink process: POSTs answered


async def sink_app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                   send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """The fast sink: reads the body, answers 200 with an empty body; GET answers the count received."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = b""
    if scope["path"].startswith("/slow/"):  # /slow/<ms>/...: answer after that many milliseconds
        await asyncio.sleep(int(scope["path"].split("/")[2]) / 1000)
    if scope["method"] == "GET":
        body = str(received[0]).encode()
    else:
        received[0] += 1
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def bare_client(url: str, events: list[bytes], key: bytes, concurrency: int) -> tuple[float, float]:
    """(events/s, CPU ms per event of this process): `concurrency` asyncio tasks on uvloop sharing one
    aiohttp session (keep-alive pool of `concurrency` connections), each POSTing the next body, signed like
    the worker signs it, and checking its 200; no Redis, no bookkeeping: a good fast client's ceiling."""
    import resource

    import aiohttp
    import uvloop

    from plugwatch.signing import signature_headers

    async def post_all() -> float:
        work = iter(enumerate(events))
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5)) as session:
            async def one_client() -> None:
                for number, body in work:
                    headers = {**signature_headers(key, f"evt_{number}", int(time.time()), body),
                               "content-type": "application/json"}
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        if response.status != 200:
                            raise RuntimeError(f"the sink answered {response.status}")

            started = time.perf_counter()
            await asyncio.gather(*(one_client() for _ in range(concurrency)))
            return time.perf_counter() - started

    cpu = resource.getrusage(resource.RUSAGE_SELF)
    seconds = uvloop.run(post_all())
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    return len(events) / seconds, 1000 * used / len(events)


def cpu_seconds(pid: int) -> float:
    import psutil

    process = psutil.Process(pid)
    times = [process.cpu_times(), *(child.cpu_times() for child in process.children(recursive=True))]
    return sum(t.user + t.system for t in times)


def drained_by_worker(connection: Any, url: str, events: list[bytes], sink_count: Callable[[], int]) -> float:
    """Seconds from the kick until the outbox is empty and the sink has every event."""
    from plugwatch import delivery_arming, keys, outboxes
    from tests.support.servers import wait_until

    before = sink_count()
    for start in range(0, len(events), 5000):
        pipe = connection.pipeline(transaction=False)
        for body in events[start:start + 5000]:
            pipe.xadd(keys.outbox_stream(url), {"event": body})
        pipe.execute()
    started = time.perf_counter()
    delivery_arming.kick(connection, connection, [outboxes.only(url)])
    wait_until(lambda: delivery_arming.backlog(connection, url) == 0, timeout=3600, interval=0.02)
    seconds = time.perf_counter() - started
    wait_until(lambda: sink_count() - before >= len(events), timeout=30,
               message=f"the sink got {sink_count() - before} of {len(events)}")
    return seconds


def measure(args: Any) -> dict[str, float]:  # noqa: PLR0915 (one run, step by step)
    import os
    import signal
    import sys
    import tempfile

    import httpx
    import redis

    from plugwatch.signing import decode_secret
    from tests.conftest import TEST_DOWNSTREAM_SECRET
    from tests.support.delivery import interleaved, start_worker
    from tests.support.servers import Process, RedisServer, base_env, free_port, wait_until

    key = decode_secret(TEST_DOWNSTREAM_SECRET)
    events = interleaved(args.vehicles, max(1, -(-max(args.events, args.backlog) // args.vehicles)))
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"

    def sink_count() -> int:
        return int(httpx.get(url, timeout=5).text)

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir) / "redis").start()
        sink = Process([sys.executable, "-m", "uvicorn", "bench.delivery:sink_app", "--port", str(port),
                        "--no-access-log", "--log-level", "warning", "--http", "httptools", "--loop", "uvloop"],
                       base_env(), Path(workdir) / "sink.log").start()
        worker = None
        try:
            wait_until(lambda: _up(url), timeout=20)
            figures["bare"], figures["bare_cpu_ms"] = bare_client(url, events[:args.events], key, args.concurrency)
            env = base_env(REDIS_URL=server.url, DOWNSTREAM_WEBHOOK_URLS=url,
                           DOWNSTREAM_WEBHOOK_SECRET=TEST_DOWNSTREAM_SECRET, PLUGWATCH_METRICS_PORT="0",
                           PLUGWATCH_LOG_FORMAT="json", PLUGWATCH_DELIVERY_CONCURRENCY=str(args.concurrency))
            worker = start_worker(env, Path(workdir) / "worker.log")
            connection = redis.Redis.from_url(server.url)
            drained_by_worker(connection, url, events[:200], sink_count)  # the worker is up and warm
            figures["load"] = os.getloadavg()[0]
            cpu_before = cpu_seconds(worker.pid)
            figures["worker"] = args.events / drained_by_worker(connection, url, events[:args.events], sink_count)
            figures["worker_cpu_ms"] = 1000 * (cpu_seconds(worker.pid) - cpu_before) / args.events
            spy = _start_profile(args.profile, worker.pid) if args.profile else None
            figures["backlog_seconds"] = drained_by_worker(connection, url, events[:args.backlog], sink_count)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            figures["bare_after"], _ = bare_client(url, events[:args.events], key, args.concurrency)
            worker.stop()
            slow_url = f"http://127.0.0.1:{port}/slow/{args.latency}/hook"
            for concurrency in (1, args.concurrency):
                worker = start_worker({**env, "DOWNSTREAM_WEBHOOK_URLS": slow_url,
                                       "PLUGWATCH_DELIVERY_CONCURRENCY": str(concurrency)},
                                      Path(workdir) / f"worker-{concurrency}.log")
                drained_by_worker(connection, slow_url, events[:20], sink_count)
                count = args.slow_events // (4 if concurrency == 1 else 1)
                figures[f"slow_{concurrency}"] = count / drained_by_worker(connection, slow_url, events[:count],
                                                                         sink_count)
                worker.stop()
            worker = None
            figures["load_after"] = os.getloadavg()[0]
        finally:
            if worker is not None:
                worker.stop()
            sink.stop()
            server.stop()
    return figures


def main() -> None:
    import argparse
    import logging

    from plugwatch.logs import configure_logging

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--latency", type=int, default=20, help="ms the slow sink of (d) takes to answer")
    parser.add_argument("--slow-events", type=int, default=4000)
    parser.add_argument("--profile", metavar="PATH", default="",
                        help="record the worker with py-spy (on PATH) during (c); print the top 20 functions")
    args = parser.parse_args()
    configure_logging("console", level=logging.WARNING)
    f = measure(args)
    print(f"concurrency {args.concurrency}, {args.vehicles} vehicles, load average {f['load']:.2f} before, "
          f"{f['load_after']:.2f} after")
    bare = max(f["bare"], f["bare_after"])
    print(f"(a) bare aiohttp client, {args.concurrency} tasks {bare:8.0f} events/s ({args.events} events, "
          f"no Redis; {f['bare']:.0f} before (b), {f['bare_after']:.0f} after (c)), "
          f"{f['bare_cpu_ms']:.2f} CPU ms per event")
    print(f"(b) one worker process           {f['worker']:8.0f} events/s ({args.events} events)   "
          f"ratio (b)/(a) = {f['worker'] / bare:.2f}, {f['worker_cpu_ms']:.2f} CPU ms per event")
    print(f"(c) {args.backlog}-event backlog drained in {f['backlog_seconds']:.1f} s "
          f"({args.backlog / f['backlog_seconds']:.0f} events/s)")
    print(f"(d) sink answering after {args.latency} ms: concurrency 1 {f['slow_1']:6.0f} events/s, "
          f"concurrency {args.concurrency} {f[f'slow_{args.concurrency}']:6.0f} events/s "
          f"({f[f'slow_{args.concurrency}'] / f['slow_1']:.1f}x)")
    if args.profile:
        print_profile(Path(args.profile))


def _start_profile(path: str, pid: int) -> Any:
    import subprocess

    return subprocess.Popen([path_of_py_spy(), "record", "--pid", str(pid), "--format", "raw", "--output", path,
                             "--rate", "250", "--nonblocking", "--gil"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def path_of_py_spy() -> str:
    import os
    import shutil

    return shutil.which("py-spy") or os.environ.get("PY_SPY", "py-spy")


def print_profile(path: Path, top: int = 20) -> None:
    """The worker's hottest functions from py-spy's collapsed stacks: own samples and with callees, as a
    share of the samples that held the GIL (py-spy --gil: Python CPU time) in stacks running delivery code."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if not any("delivery" in frame for frame in frames):
            continue
        count = int(count_text)
        samples += count
        names = [frame.split(" (", 1)[0] + " (" + frame.split(" (", 1)[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
                 for frame in frames if not frame.startswith(("thread ", "process "))]
        own[names[-1]] = own.get(names[-1], 0) + count
        for name in set(names):
            total[name] = total.get(name, 0) + count
    print(f"profile of the worker's delivery threads during (c): {samples} busy samples")
    print("  own %   with callees %   function")
    for name, count in sorted(own.items(), key=lambda item: -item[1])[:top]:
        print(f"  {100 * count / samples:5.1f}   {100 * total[name] / samples:5.1f}           {name}")


def _up(url: str) -> bool:
    import httpx

    try:
        return httpx.post(url, content=b"{}", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
