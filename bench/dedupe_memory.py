"""Redis memory (and Redis CPU) per remembered delivery: today's dedupe marks beside the previous layout.

    .venv/bin/python -m bench.dedupe_memory [--marks 1000000] [--low-limit-marks 200000]

Starts its own redis-server on a free port (never touches another Redis). For each layout it runs the dedupe
part of the receiver's Lua script for `--marks` deliveries with Enode-like ids (UUIDs), their receipt times
spread evenly over the 72 h window (so every bucket of the window is live, as in a steady state):
  previous   one string key `plugwatch:dedupe:<id>` per delivery holding the body's 64-bit digest, EX 72 h
  buckets    plugwatch.dedupe_marks: 10-byte fields in time-bucketed, sharded listpack hashes (the default
             24 h buckets)
Reports per mark: `used_memory` growth, and the sum of `MEMORY USAGE` over the keys (every mark hash; a
sample of 2,000 keys of the previous layout), the hashes' encodings, and the script's Redis CPU per call
(INFO commandstats). Then the same at a `hash-max-listpack-entries` of 64 (an operator's lower limit), with
the shard cap the receiver derives from it and with the default cap (what happens if it did not).
Goal (issue 15): <= 24 B per remembered delivery.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import redis

from plugwatch import dedupe_marks, keys
from plugwatch import ingest_protocol as ingest
from plugwatch.enode_signature import digest
from tests.support.servers import RedisServer

GOAL_BYTES = 24
WINDOW = 72 * 3600
BODY = b'[{"event":"enode:webhook:test","version":"2024-10-01","createdAt":"2025-03-14T18:31:07.221Z"}]'
SIGNATURE = digest(BODY, "bench-secret")  # what the receiver makes the mark of, with the id
# The previous version's dedupe (its INGEST_LUA's first lines); ARGV as today's script gets them.
PREVIOUS_LUA = """
local seen = redis.call('GET', KEYS[1])
if seen == ARGV[12] or seen == '1' then return 'duplicate' end
redis.call('SET', KEYS[1], ARGV[12], 'EX', ARGV[4])
return 'recorded'
"""
CURRENT_LUA = ingest.INGEST_LUA  # with a test-event body it writes the mark only, and returns 'recorded'


def fill(client: redis.Redis, script: str, marks: int, *, cap: int, seed: int = 1) -> float:
    """Run `script` for `marks` new deliveries over the window; the Redis CPU per call (us)."""
    client.config_resetstat()
    registered = client.register_script(script)
    rng = random.Random(seed)
    start = time.time()
    batch = ingest.classify(BODY)
    pipe = client.pipeline(transaction=False)
    for i in range(marks):
        delivery = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        script_keys, args = ingest.script_call(delivery, BODY, batch, signature=SIGNATURE,
                                               now=start + i * WINDOW / marks, dedupe_ttl_seconds=WINDOW, shard_cap=cap)
        registered(keys=script_keys, args=args, client=pipe)
        if len(pipe) == 2000:
            assert set(pipe.execute()) == {b"recorded"}
    assert set(pipe.execute()) <= {b"recorded"}
    stats = client.info("commandstats")
    return float(stats["cmdstat_evalsha"]["usec_per_call"])


def measure(client: redis.Redis, layout: str, marks: int, cap: int = dedupe_marks.DEFAULT_CAP) -> dict[str, float]:
    client.flushall()
    time.sleep(0.2)
    base = int(client.info("memory")["used_memory"])
    cpu = fill(client, PREVIOUS_LUA if layout == "previous" else CURRENT_LUA, marks, cap=cap)
    used = int(client.info("memory")["used_memory"]) - base
    pattern = keys.DEDUPE_PREFIX + "*" if layout == "previous" else keys.DEDUPE_MARKS + "*"
    names = list(client.scan_iter(match=pattern, count=5000))
    if layout == "previous":
        sample = random.Random(2).sample(names, 2000)
        usage = sum(client.memory_usage(name, samples=0) or 0 for name in sample) / len(sample)
        encodings = Counter(client.object("encoding", name) for name in sample)
    else:
        usage = sum(client.memory_usage(name, samples=0) or 0 for name in names) / marks
        encodings = Counter(client.object("encoding", name) for name in names)
    return {"keys": len(names), "used": used / marks, "usage": usage, "cpu": cpu,
            "encodings": ", ".join(f"{n:,} {e.decode()}" for e, n in encodings.most_common())}


def show(name: str, marks: int, row: dict[str, float]) -> None:
    print(f"  {name:<34} {marks:>9,} {row['keys']:>9,} {row['used']:>8.1f} B {row['usage']:>8.1f} B "
          f"{row['cpu']:>7.2f} us   {row['encodings']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--marks", type=int, default=1_000_000)
    parser.add_argument("--low-limit-marks", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir) / "redis").start()
        client = redis.Redis(port=server.port, socket_timeout=300)  # FLUSHALL of 1M keys takes a while
        try:
            print(f"redis-server on port {server.port}; marks spread over a {WINDOW // 3600} h window, "
                  f"{ingest.DEFAULT_BUCKET_SECONDS // 3600} h buckets")
            print(f"  {'layout':<34} {'marks':>9} {'keys':>9} {'used_memory':>10} {'MEMORY USAGE':>10} "
                  f"{'Redis CPU/call':>10}  encodings")
            current = measure(client, "buckets", args.marks)
            show("buckets (listpack limit 128)", args.marks, current)
            previous = measure(client, "previous", args.marks)
            show("previous: a key per delivery", args.marks, previous)
            client.config_set("hash-max-listpack-entries", 64)
            low_cap = dedupe_marks.cap_from_config(client.config_get("hash-max-*-entries"))
            show(f"buckets, limit 64, cap {low_cap} (derived)", args.low_limit_marks,
                 measure(client, "buckets", args.low_limit_marks, cap=low_cap))
            show(f"buckets, limit 64, cap {dedupe_marks.DEFAULT_CAP} (not derived)", args.low_limit_marks,
                 measure(client, "buckets", args.low_limit_marks))
            worst = max(current["used"], current["usage"])
            verdict = "met" if worst <= GOAL_BYTES else "NOT met"
            print(f"goal: <= {GOAL_BYTES} B per remembered delivery: {verdict} ({current['used']:.1f} B used_memory, "
                  f"{current['usage']:.1f} B MEMORY USAGE; previous layout {previous['used']:.1f} B / "
                  f"{previous['usage']:.1f} B, {previous['used'] / current['used']:.1f}x more)")
        finally:
            client.close()
            server.kill()


if __name__ == "__main__":
    main()
