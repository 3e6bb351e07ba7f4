"""Helpers for downstream-delivery tests: events as the ingest worker emits them, putting them into the
outboxes the way its commit does, and a delivery worker process.

`python -m tests.support.delivery` is a worker process for the delivery side only, wired the way
`python -m worker` wires it: it builds and installs the delivery context, runs a pump thread every
`PLUGWATCH_PUMP_INTERVAL_SECONDS` (default 0.2 here) and an RQ SimpleWorker on `plugwatch-delivery` and
`plugwatch-dead-letters`.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import orjson
import redis

from plugwatch import keys
from plugwatch.settings import Settings
from tests.support.servers import Process


def make_event(number: int, *, vehicle: str = "veh-1", kind: str = "vehicle.plugged_in_at_home") -> bytes:
    """An emitted event's JSON bytes, as the ingest worker writes it to the outboxes."""
    return orjson.dumps({
        "id": f"evt_{vehicle}_{number}", "type": kind,
        "occurredAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "userId": "user-1", "vehicleId": vehicle, "chargerId": "chg-1", "locationId": "loc-1",
        "sequence": number, "data": {"n": number, "text": "ünïcode"},
    })


def emit(connection: redis.Redis, settings: Settings, events: Iterable[bytes], urls: Iterable[str]) -> None:
    """Append events to each URL's outbox (as the worker's commit does), then kick delivery."""
    from worker.delivery import kick

    urls = list(urls)
    pipe = connection.pipeline(transaction=True)
    for event in events:
        for url in urls:
            pipe.xadd(keys.outbox_stream(url), {"event": event})
    pipe.execute()
    kick(connection, settings, urls)


def delivery_worker(env: Mapping[str, str], log_path: Path) -> Process:
    return Process([sys.executable, "-m", "tests.support.delivery"], env, log_path).start()


def main() -> None:
    from prometheus_client import CollectorRegistry
    from rq import SimpleWorker

    from plugwatch.logs import configure_logging
    from worker import delivery

    settings = Settings.from_env(os.environ, require_enode_secret=False)
    configure_logging(settings.log_format)
    connection = redis.Redis.from_url(settings.redis_url)
    context = delivery.build(settings, connection=connection, registry=CollectorRegistry())
    delivery.install(context)
    stop = threading.Event()
    interval = float(os.environ.get("PLUGWATCH_PUMP_INTERVAL_SECONDS", "0.2"))

    def pump_loop() -> None:
        while not stop.wait(interval):
            delivery.pump(connection, settings)

    threading.Thread(target=pump_loop, daemon=True).start()
    worker = SimpleWorker([keys.DELIVERY_QUEUE, keys.DEAD_LETTER_QUEUE], connection=connection)
    try:
        worker.work(with_scheduler=False)
    finally:
        stop.set()
        context.close()


if __name__ == "__main__":
    main()
