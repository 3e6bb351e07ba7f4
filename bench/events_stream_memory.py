"""Redis memory of the events stream `plugwatch:events` per entry, to size PLUGWATCH_EVENTS_STREAM_MAXLEN.

    .venv/bin/python -m bench.events_stream_memory [--entries 200000] [--maxlen 100000]

Starts its own redis-server on a free port (never touches another Redis) and appends `--entries` events the
way the worker's commit does (`XADD plugwatch:events MAXLEN ~ <maxlen> * event <json>`): events built by the
core's own `EmittedEvent` with ids as long as Enode's UUIDs, a mix of 40% plug-ins, 40% unplugs, 18%
control.failed and 2% failure streaks. Reports the entries kept, the average JSON size, `MEMORY USAGE` of the
stream (all samples) per entry, and how long a window the stream covers at some event rates.
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from pathlib import Path

import redis

from plugwatch import keys
from tests.support.servers import RedisServer
from worker.core import EmittedEvent, EventType

AT = 1741975325512


def _uuid(n: int) -> str:
    return str(uuid.UUID(int=n * 0x9E3779B97F4A7C15 % 2**128, version=4))


def event(n: int) -> bytes:
    user, vehicle, charger, location = (_uuid(4 * n + k) for k in range(4))
    eid, at, kind = "evt_" + uuid.UUID(int=n, version=4).hex, AT + n * 20, n % 50
    if kind < 20:
        return EmittedEvent(eid, EventType.PLUGGED_IN_AT_HOME, at, user, vehicle, charger, location, n, {}).to_json()
    if kind < 40:
        return EmittedEvent(eid, EventType.UNPLUGGED_FROM_HOME, at, user, vehicle, charger, location, n,
                            {"reason": "unplugged"}).to_json()
    if kind < 49:
        data = {"actionId": _uuid(n + 7), "kind": "START", "targetType": "vehicle", "targetId": vehicle,
                "state": "FAILED", "failureReason": {"type": "NO_RESPONSE", "detail": "The device did not react."},
                "consecutiveFailures": 3}
        return EmittedEvent(eid, EventType.CONTROL_FAILED, at, user, vehicle, charger, None, n, data).to_json()
    return EmittedEvent(eid, EventType.CONTROL_FAILURE_STREAK, at, user, vehicle, None, None, n,
                        {"consecutiveFailures": 10, "lastActionId": _uuid(n + 7)}).to_json()


def measure(client: redis.Redis, entries: int, maxlen: int) -> dict[str, float]:
    client.flushall()
    total_bytes = 0
    pipe = client.pipeline(transaction=False)
    for n in range(entries):
        body = event(n)
        total_bytes += len(body)
        pipe.xadd(keys.EVENTS_STREAM, {"event": body}, maxlen=maxlen, approximate=True)
        if n % 1000 == 999:
            pipe.execute()
    pipe.execute()
    kept = int(client.xlen(keys.EVENTS_STREAM))
    usage = int(client.memory_usage(keys.EVENTS_STREAM, samples=0) or 0)
    return {"kept": kept, "json_bytes": total_bytes / entries, "bytes_per_entry": usage / kept,
            "stream_mb": usage / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--maxlen", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            client = server.client()
            result = measure(client, args.entries, args.maxlen)
            version = client.info("server")["redis_version"]
        finally:
            server.stop()
    per_entry = result["bytes_per_entry"]
    print(f"redis-server {version}: {result['kept']:.0f} entries kept of {args.entries} (MAXLEN ~ {args.maxlen}), "
          f"event JSON {result['json_bytes']:.0f} B, MEMORY USAGE {per_entry:.0f} B per entry "
          f"({result['stream_mb']:.1f} MB)")
    for per_day in (100_000, 1_000_000, 4_000_000):
        for maxlen in (100_000, 1_000_000):
            print(f"  {per_day:>9,} events/day, maxlen {maxlen:>9,}: covers {24 * maxlen / per_day:6.1f} h, "
                  f"~{maxlen * per_entry / 1e6:,.0f} MB")


if __name__ == "__main__":
    main()
