"""Odd but authentic input through the real processes: uvicorn receiver, `python -m worker`, redis-server.

A fractional `pendingEvents`, a bad heartbeat, events nested 1000 to 100,000 levels deep and an event the
core cannot decode each sit beside a plug-in: every plug-in is processed, each odd event that cannot be
used has exactly one quarantine entry of its own, nothing answers 5xx or ends as poison; a replay the worker
quarantines again stays listed. (1000 levels is past msgspec's reach inside a worker, not orjson's: such an
event is parsed and used.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from click.testing import CliRunner

from cli import main
from ops.status import read_status, render_text
from plugwatch import keys, quarantine
from tests.conftest import TEST_SECRET
from tests.support.event_schema import stream_events
from tests.support.eventlog import START, charger_event, vehicle_event
from tests.support.receiver_app import signed
from tests.support.servers import Process, RedisServer, base_env, start_receiver, wait_until
from tests.support.workers import drained, start_worker

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]
HOME, DEPTHS = "loc-home", (1000, 5000, 100_000)


@pytest.fixture
def stack(redis_server: RedisServer, real_redis: redis.Redis, tmp_path: Path) -> Iterator[str]:
    """A receiver and a worker on the suite's redis-server (flushed for this test); yields the receiver URL."""
    receiver, url = start_receiver(base_env(REDIS_URL=redis_server.url, ENODE_WEBHOOK_SECRET=TEST_SECRET),
                                   tmp_path / "receiver.log")
    worker: Process = start_worker(redis_server.url, tmp_path / "worker.log")
    try:
        yield url
    finally:
        worker.stop()
        receiver.stop()


def plug_in(user: str) -> list[bytes]:
    """A charger and a vehicle of `user` reporting each other at home, as JSON texts."""
    return [orjson.dumps(charger_event(user, f"chg-{user}", START, vehicle=f"veh-{user}", location=HOME)),
            orjson.dumps(vehicle_event(user, f"veh-{user}", START, charger=f"chg-{user}", location=HOME))]


def array(*events: bytes) -> bytes:
    return b"[" + b",".join(events) + b"]"


def heartbeat(pending: bytes) -> bytes:
    return (b'{"event":"system:heartbeat","version":"2024-10-01","createdAt":"2025-03-14T18:30:00Z",'
            b'"pendingEvents":' + pending + b"}")


def deep(levels: int) -> bytes:
    """An untracked event whose data nests `levels` arrays deep."""
    return (b'{"event":"user:hvac:updated","version":"2024-10-01","createdAt":"2025-03-14T18:00:00Z","hvac":'
            + b"[" * levels + b"]" * levels + b"}")


def plug_in_with_a_deep_vehicle(user: str, levels: int) -> list[bytes]:
    """The plug-in, its vehicle event carrying a field plugwatch does not read, `levels` arrays deep."""
    charger, vehicle = plug_in(user)
    return [charger, vehicle[:-1] + b',"extra":' + b"[" * levels + b"]" * levels + b"}"]


BROKEN = orjson.dumps({"event": "user:vehicle:updated", "createdAt": "2025-03-14T18:00:00Z", "version": "2024-10-01",
                       "user": {"id": "usr-broken"}, "vehicle": {"userId": "usr-broken"}})  # no vehicle id


def post(url: str, delivery_id: str, body: bytes) -> dict[str, Any]:
    response = httpx.post(url + "/webhooks/enode", content=body, headers=signed(body, delivery_id), timeout=10)
    assert response.status_code == 200, (delivery_id, response.status_code, response.text)
    return dict(response.json())


def plugged_in_users(connection: redis.Redis) -> set[str]:
    events = stream_events(connection)
    return {event["userId"] for event in events if event["type"] == "vehicle.plugged_in_at_home"}


def settled(connection: redis.Redis, users: set[str]) -> bool:
    return drained(connection) and plugged_in_users(connection) >= users


def test_odd_events_are_quarantined_alone_and_their_neighbours_processed(
        stack: str, real_redis: redis.Redis, redis_url: str) -> None:
    deliveries = {
        "half": array(*plug_in("usr-half"), heartbeat(b"0.5")),
        "bad-heartbeat": array(*plug_in("usr-bad-hb"), heartbeat(b"-1")),
        "broken": array(*plug_in("usr-broken"), BROKEN),
        **{f"deep-{levels}": array(*plug_in(f"usr-deep-{levels}"), deep(levels)) for levels in DEPTHS},
        "deep-vehicle": array(*plug_in_with_a_deep_vehicle("usr-deep-vehicle", 1000)),
    }
    assert {name: post(stack, name, body)["outcome"] for name, body in deliveries.items()} == dict.fromkeys(
        deliveries, "accepted")
    users = {"usr-half", "usr-bad-hb", "usr-broken", "usr-deep-vehicle", *(f"usr-deep-{levels}" for levels in DEPTHS)}
    wait_until(lambda: settled(real_redis, users) and quarantine.count(real_redis) == 4, timeout=30, interval=0.1,
               message="the worker did not process every delivery")

    entries = {entry.delivery_id: entry for entry in quarantine.entries(real_redis)}
    assert {name: (entry.event_index, entry.body) for name, entry in entries.items()} == {
        "bad-heartbeat": (2, array(heartbeat(b"-1"))), "broken": (2, array(BROKEN)),
        **{f"deep-{levels}": (2, array(deep(levels))) for levels in (5000, 100_000)}}
    assert entries["bad-heartbeat"].reason == "invalid_heartbeat"
    assert entries["broken"].reason == "vehicle.id is missing or not a string"
    assert entries["deep-5000"].reason.startswith("event cannot be parsed as JSON: depth limit exceeded")
    assert not any(entry.reason.startswith("poison") for entry in entries.values())
    assert real_redis.hget(keys.HEARTBEAT, "pending_events") == b"0.5"
    assert "pendingEvents 0.5" in render_text(read_status(real_redis, [], time.time()))

    cli = CliRunner(env={"REDIS_URL": redis_url, "ENODE_WEBHOOK_SECRET": ""})
    replayed = cli.invoke(main, ["quarantine", "replay", entries["broken"].id], catch_exceptions=False)
    assert f"{entries['broken'].id}\treplayed" in replayed.output
    wait_until(lambda: any(entry.replay_of == entries["broken"].id for entry in quarantine.entries(real_redis)),
               timeout=30, interval=0.1, message="the replayed entry did not come back")
    again = next(entry for entry in quarantine.entries(real_redis) if entry.delivery_id == "broken")
    assert (again.reason, again.event_index, again.body) == (entries["broken"].reason, 0, array(BROKEN))
    assert quarantine.count(real_redis) == 4
    listed = cli.invoke(main, ["quarantine", "list"], catch_exceptions=False).output
    assert f"replay of {entries['broken'].id}" in listed
