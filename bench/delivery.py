"""Downstream delivery throughput: the drainer beside a bare loop of signed POSTs, measured in one run.

    .venv/bin/python -m bench.delivery [--events 2000] [--urls 4]

Starts its own redis-server on a free port (never touches another Redis) and a bare sink (a Starlette app
answering 200, under uvicorn in its own process), then measures:

  (a) baseline: one thread POSTing the events back to back with an httpx.Client and the same signing, no
      Redis: the most one URL's in-order delivery can reach against this sink;
  (b) the drainer for one URL: the events pre-loaded into the URL's outbox, then drained by the delivery
      context's drainer thread (lease, consumer group, sign, POST, XACK+XDEL per event);
  (c) the drainers for `--urls` URLs at once (one thread each, sharing the client).

Prints events/s for each and the ratio (b)/(a).  A run counts only when every outbox ends empty (an entry
leaves its outbox only after a 2xx).
"""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def _ok(_: Request) -> Response:
    return Response(b"")


sink_app = Starlette(routes=[Route("/hook/{n}", _ok, methods=["POST"])])  # the bare sink


def baseline(url: str, events: list[bytes], key: bytes) -> float:
    import httpx

    from plugwatch.signing import signature_headers

    with httpx.Client(timeout=httpx.Timeout(5.0)) as client:
        started = time.perf_counter()
        for number, body in enumerate(events):
            headers = signature_headers(key, f"evt_{number}", int(time.time()), body)
            client.post(url, content=body, headers=headers).raise_for_status()
        return len(events) / (time.perf_counter() - started)


def drained(context: object, urls: tuple[str, ...], events: list[bytes]) -> float:
    from plugwatch import keys
    from plugwatch.delivery_arming import backlog
    from tests.support.servers import wait_until
    from worker.delivery import DeliveryContext

    assert isinstance(context, DeliveryContext)
    connection = context.connection
    pipe = connection.pipeline(transaction=False)
    for url in urls:
        for body in events:
            pipe.xadd(keys.outbox_stream(url), {"event": body})
    pipe.execute()
    started = time.perf_counter()
    for url in urls:
        context.threads.request(url)
    wait_until(lambda: all(backlog(connection, url) == 0 for url in urls), timeout=600, interval=0.01)
    return len(events) * len(urls) / (time.perf_counter() - started)


def main() -> None:
    import argparse
    import logging
    import sys
    import tempfile
    from pathlib import Path

    import redis
    from prometheus_client import CollectorRegistry

    from plugwatch.logs import configure_logging
    from plugwatch.settings import DeliverySettings, Settings
    from plugwatch.signing import decode_secret
    from tests.conftest import TEST_DOWNSTREAM_SECRET
    from tests.support.delivery import make_event
    from tests.support.servers import Process, RedisServer, base_env, free_port, wait_until
    from worker import delivery
    from worker.metrics import DeliveryMetrics

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--urls", type=int, default=4)
    args = parser.parse_args()
    configure_logging("console", level=logging.WARNING)
    key = decode_secret(TEST_DOWNSTREAM_SECRET)
    events = [make_event(n) for n in range(args.events)]
    port = free_port()
    urls = tuple(f"http://127.0.0.1:{port}/hook/{n}" for n in range(max(1, args.urls)))

    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir) / "redis").start()
        sink = Process([sys.executable, "-m", "uvicorn", "bench.delivery:sink_app", "--port", str(port),
                        "--no-access-log", "--log-level", "warning"], base_env(), Path(workdir) / "sink.log").start()
        try:
            wait_until(lambda: _up(urls[0]), timeout=20)
            bare = baseline(urls[0], events, key)
            settings = Settings(delivery=DeliverySettings(downstream_urls=urls, downstream_key=key))
            context = delivery.build(settings, connection=redis.Redis.from_url(server.url),
                                     metrics=DeliveryMetrics(CollectorRegistry()))
            one = drained(context, urls[:1], events)
            many = drained(context, urls, events)
            context.close()
        finally:
            sink.stop()
            server.stop()

    print(f"events per URL            {args.events}")
    print(f"(a) bare signed POST loop {bare:8.0f} events/s (one thread, no Redis)")
    print(f"(b) drainer, 1 URL        {one:8.0f} events/s   ratio (b)/(a) = {one / bare:.2f}")
    print(f"(c) drainers, {len(urls)} URLs      {many:8.0f} events/s in total ({many / len(urls):.0f} per URL)")


def _up(url: str) -> bool:
    import httpx

    try:
        return httpx.post(url, content=b"{}", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
