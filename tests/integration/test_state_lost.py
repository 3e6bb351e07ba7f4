"""Redis wiped under running processes: detected, said, and consumers end right after `enode reconcile`.

Real processes: the suite's redis-server, the uvicorn receiver, `python -m worker`, a recording sink and the
fake Enode. Vehicles are at home and delivered; then FLUSHALL; some vehicles change (some by webhook, some
only at Enode); `status --check` reports the loss; `plugwatch enode reconcile` runs. A consumer applying the
README's ordering rule to everything the sink received ends with Enode's at-home state for every vehicle.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from click.testing import CliRunner

from cli import main
from simulator.fake_enode import TOKEN_PATH, FakeEnode
from tests.conftest import TEST_DOWNSTREAM_SECRET, TEST_SECRET
from tests.support.enode_objects import charger, vehicle
from tests.support.receiver_app import signed
from tests.support.servers import Process, RedisServer, ThreadedUvicorn, base_env, start_receiver, wait_until
from tests.support.sinks import Received, Sink
from tests.support.workers import drained, start_worker
from worker.enode.observe import Kind, as_event

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]
pytest_plugins = ("tests.support.enode_fixtures",)

BEFORE, AFTER = "2025-03-14T18:00:00.000Z", "2025-03-14T20:00:00.000Z"
PLUGGED, UNPLUGGED = "vehicle.plugged_in_at_home", "vehicle.unplugged_from_home"


@pytest.fixture
def stack(redis_server: RedisServer, real_redis: redis.Redis, sink: tuple[Sink, str],
          tmp_path: Path) -> Iterator[str]:
    """A receiver and a worker delivering to the sink; yields the receiver URL."""
    downstream = {"DOWNSTREAM_WEBHOOK_URLS": sink[1], "DOWNSTREAM_WEBHOOK_SECRET": TEST_DOWNSTREAM_SECRET}
    receiver, url = start_receiver(base_env(REDIS_URL=redis_server.url, ENODE_WEBHOOK_SECRET=TEST_SECRET),
                                   tmp_path / "receiver.log")
    worker: Process = start_worker(redis_server.url, tmp_path / "worker.log", **downstream)
    try:
        yield url
    finally:
        worker.stop()
        receiver.stop()


def at_home(vid: str, cid: str, location: str, updated: str) -> list[tuple[Kind, dict[str, Any]]]:
    user = "u-" + vid
    return [("charger", charger(cid, user, location_id=location, plugged_in_vehicle_id=vid, updated=updated)),
            ("vehicle", vehicle(vid, user, plugged_in_charger_id=cid, location_id=location, updated=updated))]


def away(vid: str, cid: str, location: str, vehicle_location: str, updated: str) -> list[tuple[Kind, dict[str, Any]]]:
    user = "u-" + vid
    return [("charger", charger(cid, user, location_id=location, updated=updated)),
            ("vehicle", vehicle(vid, user, location_id=vehicle_location, updated=updated))]


def enode_knows(fake: FakeEnode, objects: list[tuple[Kind, dict[str, Any]]]) -> None:
    for kind, obj in objects:
        (fake.chargers if kind == "charger" else fake.vehicles)[obj["id"]] = obj


def post(url: str, delivery_id: str, objects: list[tuple[Kind, dict[str, Any]]]) -> None:
    sent_at = datetime.now(UTC)
    body = orjson.dumps([as_event(kind, obj, sent_at) for kind, obj in objects])
    response = httpx.post(url + "/webhooks/enode", content=body, headers=signed(body, delivery_id), timeout=10)
    assert response.status_code == 200, response.text


def truth(fake: FakeEnode) -> dict[str, bool]:
    """Which vehicles Enode says are at home: plugged into a charger that names them, at its Location."""
    out = {}
    for vid, v in fake.vehicles.items():
        cid = v["chargeState"]["pluggedInChargerId"]
        c = fake.chargers.get(cid) if cid else None
        out[vid] = bool(c and c["chargeState"]["pluggedInVehicleId"] == vid
                        and c["location"]["id"] == v["location"]["id"] is not None)
    return out


def consumer(received: list[Received]) -> dict[str, bool]:
    """README "For downstream services": drop an event whose sequence is not above the last one applied."""
    applied: dict[str, int] = {}
    home: dict[str, bool] = {}
    for event in (r.event for r in received):
        vid, sequence = event["vehicleId"], event["sequence"]
        if event["type"] not in (PLUGGED, UNPLUGGED) or sequence <= applied.get(vid, 0):
            continue
        applied[vid], home[vid] = sequence, event["type"] == PLUGGED
    return home


def status_check(redis_url: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["status", "--check", "--json"], env={"REDIS_URL": redis_url})
    return result.exit_code, orjson.loads(result.output)["problems"]


def test_a_wiped_redis_is_reported_and_reconcile_leaves_consumers_with_enodes_at_home_state(
        stack: str, fake: FakeEnode, server: ThreadedUvicorn, real_redis: redis.Redis, redis_url: str,
        sink: tuple[Sink, str], tmp_path: Path) -> None:
    recorder, sink_url = sink
    homes = {f"v{i}": (f"c{i}", f"L{i}") for i in range(6)}
    before = [obj for vid, (cid, loc) in homes.items() for obj in at_home(vid, cid, loc, BEFORE)]
    enode_knows(fake, before)
    post(stack, "before", before)
    recorder.wait_for(len(homes), timeout=30, accepted=True)
    assert consumer(recorder.accepted()) == dict.fromkeys(homes, True)

    real_redis.flushall()  # Redis restarted empty: every state, the marker, the outboxes are gone
    changed_by_webhook = away("v0", "c0", "L0", "L0", AFTER) + at_home("v9", "c9", "L9", AFTER)
    enode_knows(fake, changed_by_webhook)
    enode_knows(fake, away("v1", "c1", "L1", "L1", AFTER))  # unplugged; its webhook was lost in the wipe
    enode_knows(fake, away("v2", "c2", "L2", "elsewhere", AFTER))  # drove away; webhook lost too
    post(stack, "after", changed_by_webhook)
    wait_until(lambda: drained(real_redis) and len(recorder.accepted()) >= len(homes) + 2, timeout=30,
               message="the worker did not process the webhooks after the wipe")

    code, problems = status_check(redis_url)
    assert code == 2
    assert any(p.startswith("state lost at ") and "plugwatch enode reconcile" in p for p in problems), problems
    worker_log = (tmp_path / "worker.log").read_text()
    assert any('"redis.state_lost"' in line and '"error"' in line for line in worker_log.splitlines())

    env = {"REDIS_URL": redis_url, "ENODE_CLIENT_ID": fake.client_id, "ENODE_CLIENT_SECRET": fake.client_secret,
           "ENODE_API_URL": server.url, "ENODE_TOKEN_URL": server.url + TOKEN_PATH,
           "DOWNSTREAM_WEBHOOK_URLS": sink_url, "DOWNSTREAM_WEBHOOK_SECRET": TEST_DOWNSTREAM_SECRET}
    result = CliRunner().invoke(main, ["enode", "reconcile"], env=env)
    assert result.exit_code == 0, result.output

    expected = truth(fake)
    assert expected == {**dict.fromkeys(homes, True), "v0": False, "v1": False, "v2": False, "v9": True}
    wait_until(lambda: consumer(recorder.accepted()) == expected, timeout=30,
               message="the consumer did not end with Enode's at-home state")
    assert consumer(recorder.accepted()) == expected
    reasons = {r.event["vehicleId"]: r.event["data"].get("reason") for r in recorder.accepted()
               if r.event["type"] == UNPLUGGED}
    assert reasons == {"v0": "state_lost", "v1": "state_lost", "v2": "state_lost"}
    code, problems = status_check(redis_url)
    assert not any(p.startswith("state lost") for p in problems), problems
