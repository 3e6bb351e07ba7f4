"""Redis memory of one user's state (a vehicle with its charger) by how many actions it remembers.

    .venv/bin/python -m bench.state_memory [--users 2000] [--actions 0,12,20,40]

Starts its own redis-server on a free port (never touches another Redis). For each action count, stores
`--users` users through the real store (decode + core + commit): each a home charger and a vehicle plugged
in at home, ids as long as Enode's UUIDs, and that many terminal START/STOP actions on the vehicle received
within the last 72 hours (mostly failures, as in a streak). Reports per user (= per vehicle with its charger)
the encoded state, `MEMORY USAGE` of its key and `used_memory` growth. Goal (issue 11): <= 1 KB per vehicle
with its charger at 20 actions.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis

from plugwatch import keys
from tests.support.eventlog import START, action_event, charger_event, received_at, vehicle_event
from tests.support.servers import RedisServer
from worker.core import Ignored, Observation, decode_event
from worker.ingest.store import Store

GOAL_BYTES = 1024
STATES = ("FAILED", "FAILED", "FAILED", "CANCELLED", "CONFIRMED")


def _id(rng: uuid.UUID, n: int) -> str:
    return str(uuid.UUID(int=(rng.int + n) % 2**128, version=4))


def user_events(index: int, actions: int) -> list[dict[str, Any]]:
    base = uuid.uuid5(uuid.NAMESPACE_URL, f"bench-user-{index}")
    user, vehicle, charger, home = (_id(base, n) for n in range(4))
    events = [charger_event(user, charger, START, vehicle=vehicle, location=home),
              vehicle_event(user, vehicle, START, charger=charger, location=home)]
    for n in range(actions):  # one every ~3.5 hours: 20 span the 72 h memory
        at = START + timedelta(minutes=5 + n * 210)
        state = STATES[n % len(STATES)]
        events.append(action_event(user, _id(base, 100 + n), at, target_type="vehicle", target=vehicle,
                                   kind="START", state=state, failure="NO_RESPONSE" if state != "CONFIRMED" else None))
    return events


def observations(events: list[dict[str, Any]]) -> list[Observation]:
    decoded = (decode_event(event, received_at(event)) for event in events)
    return [item for item in decoded if not isinstance(item, Ignored)]


def measure(client: redis.Redis, users: int, actions: int) -> dict[str, float]:
    client.flushall()
    base = int(client.info("memory")["used_memory"])
    store = Store(client)
    for start in range(0, users, 200):
        batch = [obs for index in range(start, min(users, start + 200)) for obs in observations(
            user_events(index, actions))]
        store.apply_batch(batch)
    client.delete(keys.EVENTS_STREAM)
    used = int(client.info("memory")["used_memory"]) - base
    state_keys = list(client.scan_iter(match=keys.USER_STATE_PREFIX + "*", count=1000))
    encoded = statistics.fmean(len(client.get(key) or b"") for key in state_keys)
    usage = statistics.fmean(client.memory_usage(key, samples=0) or 0 for key in state_keys)
    return {"actions": actions, "users": len(state_keys), "encoded": encoded, "memory_usage": usage,
            "used_memory": used / len(state_keys)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--actions", default="0,12,20,40")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir) / "redis").start()
        client = server.client()
        try:
            print(f"redis-server on port {server.port}; {args.users} users, each a vehicle with its charger")
            print(f"  {'remembered actions':>18} {'state bytes':>12} {'MEMORY USAGE':>13} {'used_memory':>12}")
            for count in (int(part) for part in args.actions.split(",")):
                row = measure(client, args.users, count)
                print(f"  {count:>18} {row['encoded']:>10.0f} B {row['memory_usage']:>11.0f} B "
                      f"{row['used_memory']:>10.0f} B", flush=True)
                if count == 20:
                    verdict = "met" if row["memory_usage"] <= GOAL_BYTES else "NOT met"
                    print(f"goal: <= 1 KB per vehicle with its charger at 20 actions: {verdict} "
                          f"({row['memory_usage']:.0f} B MEMORY USAGE)")
        finally:
            client.close()
            server.kill()


if __name__ == "__main__":
    main()
