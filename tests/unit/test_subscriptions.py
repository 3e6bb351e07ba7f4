"""plugwatch.subscriptions and its cache: the Redis model (fakeredis), routing in the commit, signing keys."""

from __future__ import annotations

from datetime import timedelta

import fakeredis
import orjson
import pytest
import redis

from plugwatch import keys, subscriptions
from plugwatch.signing import signature_headers
from plugwatch.subscription_cache import NoSigningKeyError, SubscriptionCache
from plugwatch.subscriptions import SubscriptionError
from tests.support.eventlog import START, action_event, charger_event, received_at, vehicle_event
from worker.core import EventType, decode_event
from worker.ingest.store import Store

URL_A = "http://a.example/hook"
URL_B = "http://b.example/hook"
KEY_1, KEY_2, KEY_3 = b"1" * 32, b"2" * 32, b"3" * 32
NOW = 1_700_000_000.0


@pytest.fixture
def connection() -> redis.Redis:
    return fakeredis.FakeRedis()


def plugged_in_and_failed() -> list[object]:
    """One plug-in at home and one failed charging action of the same user."""
    at = START
    raw = [charger_event("usr-1", "chg-1", at, vehicle="veh-1", location="loc-1"),
           vehicle_event("usr-1", "veh-1", at, charger="chg-1", location="loc-1"),
           action_event("usr-1", "act-1", at + timedelta(seconds=5), target_type="vehicle", target="veh-1",
                        kind="START", state="FAILED", failure="NOT_FOUND")]
    return [decode_event(event, received_at(event)) for event in raw]


def outbox_types(connection: redis.Redis, url: str) -> list[str]:
    return [orjson.loads(fields[b"event"])["type"] for _, fields in connection.xrange(keys.outbox_stream(url))]


def test_the_known_event_types_are_the_cores() -> None:
    assert set(subscriptions.EVENT_TYPES) == {member.value for member in EventType}


def test_parse_types_refuses_an_unknown_type_naming_the_known_ones() -> None:
    assert subscriptions.parse_types(None) == ()
    assert subscriptions.parse_types("control.failed, control.failed") == ("control.failed",)
    with pytest.raises(SubscriptionError, match=r"unknown event type vehicle\.parked .*control\.failed"):
        subscriptions.parse_types("vehicle.parked")


def test_the_commit_routes_each_event_to_the_subscriptions_whose_types_include_it(connection: redis.Redis) -> None:
    subscriptions.add(connection, URL_A, types=("vehicle.plugged_in_at_home",), key=KEY_1, now=NOW)
    subscriptions.add(connection, URL_B, types=(), key=KEY_2, now=NOW)
    result = Store(connection).apply_batch(plugged_in_and_failed())
    assert sorted(event.type.value for event in result.events) == ["control.failed", "vehicle.plugged_in_at_home"]
    assert outbox_types(connection, URL_A) == ["vehicle.plugged_in_at_home"]
    assert sorted(outbox_types(connection, URL_B)) == ["control.failed", "vehicle.plugged_in_at_home"]
    assert connection.xlen(keys.EVENTS_STREAM) == 2  # the stream always gets every event
    assert [box.url for box in result.outboxes] == [URL_A, URL_B]


def test_a_commit_reaches_no_url_whose_types_exclude_its_events(connection: redis.Redis) -> None:
    subscriptions.add(connection, URL_A, types=("control.failure_streak",), key=KEY_1, now=NOW)
    result = Store(connection).apply_batch(plugged_in_and_failed())
    assert result.outboxes == ()
    assert connection.xlen(keys.outbox_stream(URL_A)) == 0


def test_a_removed_subscription_gets_no_new_events_and_is_forgotten_once_drained(connection: redis.Redis) -> None:
    subscriptions.add(connection, URL_A, types=(), key=KEY_1, now=NOW)
    Store(connection).apply_batch(plugged_in_and_failed()[:2])
    subscriptions.remove(connection, URL_A, now=NOW)
    Store(connection).apply_batch(plugged_in_and_failed()[2:])
    assert outbox_types(connection, URL_A) == ["vehicle.plugged_in_at_home"]  # what waited stays
    assert not subscriptions.forget_if_drained(connection, URL_A)  # one event still waits
    assert URL_A in subscriptions.known_urls(connection)
    assert subscriptions.purge(connection, URL_A) == 1
    assert subscriptions.forget_if_drained(connection, URL_A)
    assert subscriptions.known_urls(connection) == []
    assert subscriptions.load(connection, URL_A) is None
    assert not connection.exists(keys.outbox_stream(URL_A), keys.downstream_state_key(URL_A))


def test_an_active_or_leased_url_is_not_forgotten(connection: redis.Redis) -> None:
    subscriptions.add(connection, URL_A, types=(), key=KEY_1, now=NOW)
    assert not subscriptions.forget_if_drained(connection, URL_A)
    subscriptions.remove(connection, URL_A, now=NOW)
    connection.set(keys.downstream_lease_key(URL_A), "a-drainer")
    assert not subscriptions.forget_if_drained(connection, URL_A)
    connection.delete(keys.downstream_lease_key(URL_A))
    assert subscriptions.forget_if_drained(connection, URL_A)


def test_purge_refuses_an_active_subscription(connection: redis.Redis) -> None:
    subscriptions.add(connection, URL_A, types=(), key=KEY_1, now=NOW)
    with pytest.raises(SubscriptionError, match="remove it first"):
        subscriptions.purge(connection, URL_A)


def test_re_adding_updates_types_keeps_the_key_unless_given_and_revives_a_removed_one(connection: redis.Redis) -> None:
    subscriptions.add(connection, URL_A, types=(), key=KEY_1, now=NOW)
    subscriptions.remove(connection, URL_A, now=NOW)
    updated = subscriptions.add(connection, URL_A, types=("control.failed",), key=None, now=NOW + 1)
    assert (updated.active, updated.types, updated.keys_at(NOW + 1)) == (True, ("control.failed",), (KEY_1,))
    assert subscriptions.add(connection, URL_A, types=(), key=KEY_2, now=NOW).keys_at(NOW) == (KEY_2,)
    with pytest.raises(SubscriptionError, match="needs a key"):
        subscriptions.add(connection, URL_B, types=(), key=None, now=NOW)


def test_rotation_signs_with_new_then_old_until_the_overlap_ends(connection: redis.Redis) -> None:
    subscriptions.add(connection, URL_A, types=(), key=KEY_1, now=NOW)
    rotated = subscriptions.rotate(connection, URL_A, KEY_2, now=NOW, overlap=100)
    assert rotated.keys_at(NOW + 99) == (KEY_2, KEY_1)
    assert rotated.keys_at(NOW + 100) == (KEY_2,)
    again = subscriptions.rotate(connection, URL_A, KEY_3, now=NOW + 50, overlap=100)
    assert again.keys_at(NOW + 99) == (KEY_3, KEY_2, KEY_1)  # KEY_1 keeps its earlier end
    assert again.keys_at(NOW + 120) == (KEY_3, KEY_2)
    assert subscriptions.expire_old(connection, URL_A).keys_at(NOW + 51) == (KEY_3,)


def test_the_signature_header_carries_one_signature_per_key_newest_first() -> None:
    both = signature_headers([KEY_2, KEY_1], "evt_1", 1, b"{}")["webhook-signature"]
    new, old = (signature_headers(key, "evt_1", 1, b"{}")["webhook-signature"] for key in (KEY_2, KEY_1))
    assert both == f"{new} {old}"


def test_the_cache_sees_a_change_once_the_version_moves(connection: redis.Redis) -> None:
    clock = [NOW]
    cache = SubscriptionCache(connection, clock=lambda: clock[0])
    subscriptions.add(connection, URL_A, types=(), key=KEY_1, now=NOW)
    assert cache.signing_keys(URL_A) == (KEY_1,)
    subscriptions.rotate(connection, URL_A, KEY_2, now=NOW, overlap=10)
    assert cache.signing_keys(URL_A) == (KEY_1,)  # within the refresh interval: the last view
    clock[0] += 1
    assert cache.signing_keys(URL_A) == (KEY_2, KEY_1)
    clock[0] += 10
    assert cache.signing_keys(URL_A) == (KEY_2,)  # the overlap ended: no refresh needed
    subscriptions.add(connection, URL_B, types=(), key=KEY_3, now=NOW)
    assert cache.signing_keys(URL_B) == (KEY_3,)  # an unknown URL is looked up at once
    subscriptions.remove(connection, URL_A, now=NOW)
    cache.refresh(force=True)
    assert (cache.active(), cache.removed()) == ([URL_B], [URL_A])


def test_the_cache_refuses_to_sign_for_an_unknown_url_without_a_fallback(connection: redis.Redis) -> None:
    with pytest.raises(NoSigningKeyError):
        SubscriptionCache(connection).signing_keys(URL_A)
    assert SubscriptionCache(connection, fallback_key=KEY_1).signing_keys(URL_A) == (KEY_1,)


def test_env_urls_are_ensured_once_and_a_changed_env_secret_rotates(connection: redis.Redis) -> None:
    assert subscriptions.ensure_from_env(connection, [URL_A], KEY_1, now=NOW, overlap=60) == [f"added {URL_A}"]
    subscriptions.add(connection, URL_A, types=("control.failed",), key=None, now=NOW)  # an operator's filter
    assert subscriptions.ensure_from_env(connection, [URL_A], KEY_1, now=NOW, overlap=60) == []
    assert subscriptions.ensure_from_env(connection, [URL_A], KEY_2, now=NOW, overlap=60) == [f"rotated {URL_A}"]
    record = subscriptions.load(connection, URL_A)
    assert record is not None
    assert (record.types, record.keys_at(NOW + 1), record.keys_at(NOW + 61)) == (
        ("control.failed",), (KEY_2, KEY_1), (KEY_2,))


def test_a_leftover_outbox_of_an_older_version_drains_as_a_removed_subscription(connection: redis.Redis) -> None:
    connection.hset(keys.DOWNSTREAM_URLS, keys.url_key(URL_B), URL_B)  # as an older worker registered it
    connection.xadd(keys.outbox_stream(URL_B), {"event": b"{}"})
    connection.hset(keys.DOWNSTREAM_URLS, keys.url_key("http://gone.example/"), "http://gone.example/")
    changes = subscriptions.ensure_from_env(connection, [URL_A], KEY_1, now=NOW, overlap=60)
    assert changes == [f"added {URL_A}", f"draining leftover {URL_B}"]
    record = subscriptions.load(connection, URL_B)
    assert record is not None
    assert (record.active, record.keys_at(NOW)) == (False, (KEY_1,))
    assert subscriptions.known_urls(connection) == [URL_A, URL_B]  # the empty leftover is forgotten
