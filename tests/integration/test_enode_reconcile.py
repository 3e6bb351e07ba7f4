"""Reconcile after a simulated outage: a fake Enode on a real port, the real store on a real redis-server."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from cli import main
from plugwatch import keys, subscriptions
from plugwatch.delivery_arming import kick
from plugwatch.enode_api.client import EnodeClient
from plugwatch.outboxes import only
from plugwatch.settings import Settings
from simulator.fake_enode import TOKEN_PATH, FakeEnode
from tests.support.enode_fixtures import enode_settings
from tests.support.enode_objects import charger, vehicle
from tests.support.event_schema import stream_events
from tests.support.servers import ThreadedUvicorn
from worker.enode.observe import Kind, apply_observations, as_event, decode_all
from worker.enode.reconcile import reconcile
from worker.ingest.store import Store

BEFORE = "2025-03-14T18:00:00.000Z"  # what webhooks told plugwatch before the outage
DURING = "2025-03-14T20:00:00.000Z"  # what changed while webhooks were down
URL = "https://downstream.example/hook"

pytest_plugins = ("tests.support.enode_fixtures",)


@pytest.fixture
def settings_(server: ThreadedUvicorn, redis_url: str) -> Settings:
    return enode_settings(server.url, redis_url=redis_url)


def emitted(connection: redis.Redis) -> list[dict[str, Any]]:
    return stream_events(connection)


def webhooks(store: Store, *objects: tuple[Kind, dict[str, Any]]) -> None:
    """Deliver `objects` as the webhooks Enode sent before the outage (createdAt = their lastUpdated),
    received now (an object updated after BEFORE must not look like a clock ahead of its receipt)."""
    sent_at = datetime.fromisoformat(BEFORE)
    store.apply_batch(decode_all([as_event(kind, obj, sent_at) for kind, obj in objects], datetime.now(UTC)))


def outage(fake: FakeEnode, store: Store) -> None:
    """Before: v1 at home (c1, L1), v2 unplugged, v3 at home (c3, L3). During: v1 unplugged, v2 plugged in
    at home (c2, L2), v3 unchanged. Enode now reports the 'during' state."""
    before: list[tuple[Kind, dict[str, Any]]] = [
        ("charger", charger("c1", "u1", location_id="L1", plugged_in_vehicle_id="v1", updated=BEFORE)),
        ("vehicle", vehicle("v1", "u1", plugged_in_charger_id="c1", location_id="L1", updated=BEFORE)),
        ("charger", charger("c2", "u2", location_id="L2", updated=BEFORE)),
        ("vehicle", vehicle("v2", "u2", updated=BEFORE)),
        ("charger", charger("c3", "u3", location_id="L3", plugged_in_vehicle_id="v3", updated=BEFORE)),
        ("vehicle", vehicle("v3", "u3", plugged_in_charger_id="c3", location_id="L3", updated=BEFORE)),
    ]
    webhooks(store, *before)
    for kind, obj in before:
        (fake.chargers if kind == "charger" else fake.vehicles)[obj["id"]] = obj
    fake.chargers["c1"] = charger("c1", "u1", location_id="L1", updated=DURING)
    fake.vehicles["v1"] = vehicle("v1", "u1", location_id="L1", updated=DURING)
    fake.chargers["c2"] = charger("c2", "u2", location_id="L2", plugged_in_vehicle_id="v2", updated=DURING)
    fake.vehicles["v2"] = vehicle("v2", "u2", plugged_in_charger_id="c2", location_id="L2", updated=DURING)


def cli_env(fake: FakeEnode, server: ThreadedUvicorn, settings: Settings) -> dict[str, str | None]:
    return {"REDIS_URL": settings.process.redis_url, "ENODE_CLIENT_ID": fake.client_id,
            "ENODE_CLIENT_SECRET": fake.client_secret, "ENODE_API_URL": server.url,
            "ENODE_TOKEN_URL": server.url + TOKEN_PATH, "DOWNSTREAM_WEBHOOK_URLS": None}


def test_reconcile_after_an_outage_emits_each_missed_transition_once_and_a_rerun_nothing(
        fake: FakeEnode, settings_: Settings, real_redis: redis.Redis) -> None:
    store = Store(real_redis, (URL,))
    outage(fake, store)
    known = len(emitted(real_redis))
    assert [(e["type"], e["vehicleId"]) for e in emitted(real_redis)] == [
        ("vehicle.plugged_in_at_home", "v1"), ("vehicle.plugged_in_at_home", "v3")]
    fake.page_size = 2  # several pages of each
    apply = functools.partial(apply_observations, store, functools.partial(kick, real_redis, real_redis, (only(URL),)))
    with EnodeClient.from_settings(settings_) as client:
        first = reconcile(client, apply, datetime.now(UTC))
        second = reconcile(client, apply, datetime.now(UTC))

    missed = emitted(real_redis)[known:]
    assert sorted((e["type"], e["vehicleId"], e["occurredAt"]) for e in missed) == [
        ("vehicle.plugged_in_at_home", "v2", "2025-03-14T20:00:00.000Z"),
        ("vehicle.unplugged_from_home", "v1", "2025-03-14T20:00:00.000Z"),
    ]
    unplugged = next(e for e in missed if e["vehicleId"] == "v1")
    assert (unplugged["chargerId"], unplugged["locationId"], unplugged["data"]) == ("c1", "L1",
                                                                                    {"reason": "unplugged"})
    assert (first.chargers, first.vehicles, sum(first.emitted.values())) == (3, 3, 2)
    assert (second.chargers, second.vehicles, sum(second.emitted.values())) == (3, 3, 0)
    assert len(emitted(real_redis)) == known + 2
    assert real_redis.xlen(keys.outbox_stream(URL)) == known + 2
    assert len(fake.calls("GET", "/chargers")) == 2 * 2  # two pages, two runs
    assert len(fake.calls("GET", "/vehicles")) == 2 * 2


def test_reconcile_one_user_reads_only_that_users_devices(
        fake: FakeEnode, settings_: Settings, real_redis: redis.Redis) -> None:
    store = Store(real_redis)
    outage(fake, store)
    known = len(emitted(real_redis))
    apply = functools.partial(apply_observations, store, functools.partial(kick, real_redis, real_redis, ()))
    with EnodeClient.from_settings(settings_) as client:
        report = reconcile(client, apply, datetime.now(UTC), user_id="u2")
    assert [(e["type"], e["vehicleId"]) for e in emitted(real_redis)[known:]] == [
        ("vehicle.plugged_in_at_home", "v2")]
    assert (report.chargers, report.vehicles) == (1, 1)
    assert {c.path for c in fake.api_calls()} == {"/users/u2/chargers", "/users/u2/vehicles"}


def test_reconcile_command_prints_the_summary_records_the_run_and_clears_the_suggestion(
        fake: FakeEnode, server: ThreadedUvicorn, settings_: Settings, real_redis: redis.Redis) -> None:
    outage(fake, Store(real_redis))
    real_redis.hset(keys.RECONCILE_SUGGESTED, mapping={"at": 1, "reason": "no Enode heartbeat"})
    result = CliRunner().invoke(main, ["enode", "reconcile", "--page-size", "1"], env=cli_env(fake, server, settings_))
    assert result.exit_code == 0, result.output
    assert ("reconciled 3 chargers and 3 vehicles; 2 events emitted (vehicle.plugged_in_at_home: 1, "
            "vehicle.unplugged_from_home: 1)") in result.stdout.splitlines()
    assert not real_redis.exists(keys.RECONCILE_SUGGESTED)
    assert real_redis.hget(keys.RECONCILE_LAST, "emitted") == b"2"
    assert {c.query.get("pageSize") for c in fake.api_calls()} == {"1"}


def test_reconcile_command_for_one_user_keeps_the_suggestion(
        fake: FakeEnode, server: ThreadedUvicorn, settings_: Settings, real_redis: redis.Redis) -> None:
    real_redis.hset(keys.RECONCILE_SUGGESTED, mapping={"at": 1, "reason": "no Enode heartbeat"})
    result = CliRunner().invoke(main, ["enode", "reconcile", "--user", "u9"], env=cli_env(fake, server, settings_))
    assert result.exit_code == 0, result.output
    assert "reconciled 0 chargers and 0 vehicles; 0 events emitted (none)" in result.stdout.splitlines()
    assert real_redis.exists(keys.RECONCILE_SUGGESTED)
    assert real_redis.hget(keys.RECONCILE_LAST, "scope") == b"u9"


def test_prune_deleted_emits_the_unplug_of_a_vehicle_deleted_at_home_once(
        fake: FakeEnode, server: ThreadedUvicorn, settings_: Settings, real_redis: redis.Redis) -> None:
    outage(fake, Store(real_redis))
    del fake.vehicles["v3"]  # deleted during the outage while at home (c3, L3)
    known = len(emitted(real_redis))
    args = ["enode", "reconcile", "--prune-deleted"]
    first = CliRunner().invoke(main, args, env=cli_env(fake, server, settings_))
    second = CliRunner().invoke(main, args, env=cli_env(fake, server, settings_))
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    missed = emitted(real_redis)[known:]
    assert sorted((e["type"], e["vehicleId"], e["data"].get("reason")) for e in missed) == [
        ("vehicle.plugged_in_at_home", "v2", None),
        ("vehicle.unplugged_from_home", "v1", "unplugged"),
        ("vehicle.unplugged_from_home", "v3", "vehicle_deleted"),
    ]
    assert "3 events emitted" in first.stdout
    assert "0 events emitted" in second.stdout


def test_prune_refuses_when_enode_lists_too_few_of_the_tracked_devices(
        fake: FakeEnode, server: ThreadedUvicorn, settings_: Settings, real_redis: redis.Redis) -> None:
    """Credentials of another environment list none of our devices: nothing is deleted without --force."""
    outage(fake, Store(real_redis))
    fake.vehicles.clear()
    fake.chargers.clear()
    known = len(emitted(real_redis))
    refused = CliRunner().invoke(main, ["enode", "reconcile", "--prune-deleted"],
                                 env=cli_env(fake, server, settings_))
    assert refused.exit_code == 1
    assert "6 of 6 tracked devices are not listed by Enode" in refused.stderr
    assert len(emitted(real_redis)) == known
    forced = CliRunner().invoke(main, ["enode", "reconcile", "--prune-deleted", "--force"],
                                env=cli_env(fake, server, settings_))
    assert forced.exit_code == 0, forced.output
    assert sorted(e["data"]["reason"] for e in emitted(real_redis)[known:]) == [
        "charger_deleted", "charger_deleted"]  # v1 and v3 were at home; their chargers go first


def test_reconcile_delivers_to_the_stored_subscriptions_whatever_this_shells_urls(
        fake: FakeEnode, server: ThreadedUvicorn, settings_: Settings, real_redis: redis.Redis) -> None:
    """The events go to the subscriptions in Redis (the commit reads them), so a shell without the workers'
    DOWNSTREAM_WEBHOOK_URLS reconciles for them too, and a URL long removed is never named."""
    subscriptions.add(real_redis, URL, types=(), key=b"k" * 32, now=time.time())
    gone = "http://gone.example/hook"
    real_redis.hset(keys.DOWNSTREAM_URLS, keys.url_key(gone), gone)  # what an older worker's pump recorded
    subscriptions.forget_if_drained(real_redis, gone)  # as a worker's start-up does with a drained leftover
    outage(fake, Store(real_redis, ()))
    before = len(emitted(real_redis))
    result = CliRunner().invoke(main, ["enode", "reconcile"], env=cli_env(fake, server, settings_))
    assert result.exit_code == 0, result.output
    assert gone not in result.output
    assert len(emitted(real_redis)) == before + 2  # v1 unplugged, v2 plugged in at home
    assert real_redis.xlen(keys.outbox_stream(URL)) == before + 2


def test_prune_keeps_an_unlisted_device_updated_just_before_the_listing(
        fake: FakeEnode, server: ThreadedUvicorn, settings_: Settings, real_redis: redis.Redis) -> None:
    """v9 was linked a minute ago and is not listed yet (or any more): too recent to call deleted."""
    store = Store(real_redis)
    outage(fake, store)
    recent = datetime.now(UTC) - timedelta(minutes=1)
    webhooks(store, ("vehicle", vehicle("v9", "u1", updated=recent.isoformat().replace("+00:00", "Z"))))
    result = CliRunner().invoke(main, ["enode", "reconcile", "--prune-deleted"],
                                env=cli_env(fake, server, settings_))
    assert result.exit_code == 0, result.output
    assert "v9" in store.load("u1").vehicles
