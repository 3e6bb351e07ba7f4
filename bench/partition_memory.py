"""Redis memory of a partition at rest: what `PLUGWATCH_PARTITIONS` costs before any user is stored.

    .venv/bin/python -m bench.partition_memory [--partitions 1,16,256] [--urls 2]

Starts its own redis-server on a free port (never touches another Redis). For each count it builds, with
plugwatch's own functions, what every partition holds once it has been used and drained: its ingest stream
and consumer group, its epoch marker, its copy of the subscription routes (`--urls` subscriptions), one
outbox stream with its consumer group per URL, and its events stream with one entry trimmed away (an empty
stream: the entries themselves are counted per queued event elsewhere). Reports `used_memory` growth and the
sum of `MEMORY USAGE` per partition, beside the count of 1.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import redis

from plugwatch import epoch, partitions, subscriptions
from plugwatch.outboxes import Outbox
from tests.support.servers import RedisServer
from worker.delivery import outbox
from worker.ingest import stream


def build(client: redis.Redis, count: int, urls: int) -> None:
    client.flushall()
    partitions.check_count(client, count)
    now = time.time()
    for n in range(urls):
        subscriptions.add(client, f"https://downstream-{n}.example/hooks", types=(), key=b"k" * 32, now=now)
    for into in partitions.layouts(count):
        stream.ensure_group(client, into)
        epoch.ensure(client, int(now * 1000), into=into)
        for url in subscriptions.active_urls(client):
            outbox.ensure_group(client, Outbox(url, into))
        client.xadd(into.events_stream, {"e": b"{}"})
        client.xtrim(into.events_stream, maxlen=0)


def measure(client: redis.Redis, count: int, urls: int) -> tuple[int, int]:
    """used_memory and the sum of MEMORY USAGE of every key, after building `count` partitions."""
    build(client, count, urls)
    used = int(client.info("memory")["used_memory"])
    usage = sum(int(client.memory_usage(key, samples=0) or 0) for key in client.scan_iter(count=1000))
    return used, usage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", default="1,16,256")
    parser.add_argument("--urls", type=int, default=2)
    args = parser.parse_args()
    counts = [int(text) for text in args.partitions.split(",")]
    server = RedisServer(Path(tempfile.mkdtemp(prefix="partition-memory-"))).start()
    client = server.client()
    try:
        base_used, base_usage = measure(client, 1, args.urls)
        print(f"partitions at rest, {args.urls} subscriptions (per partition beyond the first)")
        print(f"  {'count':>6} {'used_memory':>14} {'MEMORY USAGE':>14} {'per partition (used)':>22} "
              f"{'(MEMORY USAGE)':>16}")
        print(f"  {1:>6} {base_used:>12} B {base_usage:>12} B {'(the baseline)':>22}")
        for count in (count for count in counts if count > 1):
            used, usage = measure(client, count, args.urls)
            print(f"  {count:>6} {used:>12} B {usage:>12} B {(used - base_used) / (count - 1):>20.0f} B "
                  f"{(usage - base_usage) / (count - 1):>14.0f} B")
        print("(used_memory moves by tens of KB between runs: the MEMORY USAGE column is the steadier figure)")
    finally:
        client.close()
        server.stop()


if __name__ == "__main__":
    main()
