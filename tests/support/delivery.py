"""Helpers for downstream-delivery tests: events as the ingest worker emits them, putting them into the
outboxes the way its commit does, and a real worker process (`python -m worker`)."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import orjson
import redis

from plugwatch import delivery_arming, keys, subscriptions
from plugwatch.outboxes import Outbox, only
from tests.support.servers import Process


def make_event(number: int, *, vehicle: str = "veh-1", kind: str = "vehicle.plugged_in_at_home") -> bytes:
    """An emitted event's JSON bytes, as the ingest worker writes it to the outboxes: a home event of the
    catalog (`schema/events.schema.json`), id `evt_<vehicle>_<number>`, sequence `number + 1`, a non-ASCII user."""
    now = datetime.now(UTC)
    data = {"vehicle.plugged_in_at_home": {}, "vehicle.unplugged_from_home": {"reason": "unplugged"}}[kind]
    return orjson.dumps({
        "id": f"evt_{vehicle}_{number}", "type": kind,
        "occurredAt": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "userId": "user-ünïcode", "vehicleId": vehicle, "chargerId": "chg-1", "locationId": "loc-1",
        "sequence": number + 1, "data": data,
    })


def emit(connection: redis.Redis, events: Iterable[bytes], urls: Iterable[str],
         kick: Callable[[list[Outbox]], object] | None = None) -> None:
    """Append events to each URL's outbox (as the worker's commit does), then kick delivery (by default as a
    process without drainer threads does; pass a worker's `DeliveryContext.kick` to start them too)."""
    urls = list(urls)
    pipe = connection.pipeline(transaction=True)
    for event in events:
        for url in urls:
            pipe.xadd(keys.outbox_stream(url), {"event": event})
    pipe.execute()
    boxes = [only(url) for url in urls]
    if kick is None:
        delivery_arming.kick(connection, connection, boxes)
    else:
        kick(boxes)


def subscribe(connection: redis.Redis, urls: Iterable[str], key: bytes = b"k" * 32) -> None:
    """Subscribe `urls` to every event type, as a worker's start-up does for DOWNSTREAM_WEBHOOK_URLS."""
    subscriptions.ensure_from_env(connection, list(urls), key, now=time.time(), overlap=86400)


def start_worker(env: Mapping[str, str], log_path: Path) -> Process:
    """A real worker process, as Procfile's `worker:` runs it."""
    return Process([sys.executable, "-m", "worker"], env, log_path).start()


def interleaved(vehicles: int, per_vehicle: int, seed: int = 14) -> list[bytes]:
    """Events of `vehicles` vehicles, each vehicle's in `sequence` order, the vehicles shuffled together (so a
    vehicle's next event is often close behind its last: plain FIFO concurrency would overlap them)."""
    rng = random.Random(seed)
    alive, sent = [f"veh-{v}" for v in range(vehicles)], dict.fromkeys((f"veh-{v}" for v in range(vehicles)), 0)
    events = []
    while alive:
        index = rng.randrange(len(alive))
        vehicle = alive[index]
        events.append(make_event(sent[vehicle], vehicle=vehicle))
        sent[vehicle] += 1
        if sent[vehicle] == per_vehicle:
            alive[index] = alive[-1]
            alive.pop()
    return events


def first_arrivals_by_vehicle(bodies: Iterable[bytes]) -> dict[str, list[int]]:
    """Each vehicle's `sequence` numbers in the order their events first arrived (repeats left out)."""
    seen: set[str] = set()
    order: dict[str, list[int]] = {}
    for body in bodies:
        event = orjson.loads(body)
        if event["id"] not in seen:
            seen.add(event["id"])
            order.setdefault(event["vehicleId"], []).append(event["sequence"])
    return order
