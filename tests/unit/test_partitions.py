"""plugwatch.partitions and what uses it: key layouts, the recorded count, the receiver's split of a delivery,
the store committing partition by partition (PLUGWATCH_PARTITIONS)."""

from __future__ import annotations

import orjson
import pytest
import redis
from redis.cluster import key_slot

from plugwatch import ingest_protocol as ingest
from plugwatch import keys, partitions
from plugwatch.partitions import PartitionCountMismatch, check_count, layout, layouts, partition_of
from plugwatch.settings import ProcessSettings, ReceiverSettings, Settings, SettingsError
from simulator.stories import build_scenario
from tests.conftest import TEST_SECRET
from tests.support.receiver_app import InProcessReceiver, signed
from worker.core import Ignored, decode_event
from worker.ingest.store import Ack, Store

VERSION = "2024-10-01"


def vehicle(user: str, vehicle_id: str = "v1", *, where: str = "user") -> dict[str, object]:
    event: dict[str, object] = {"event": "user:vehicle:updated", "version": VERSION,
                                "createdAt": "2025-03-14T18:02:05Z", "vehicle": {"id": vehicle_id}}
    if where == "user":
        event["user"] = {"id": user}
    else:
        event["vehicle"] = {"id": vehicle_id, "userId": user}
    return event


def users_in_distinct_partitions(count: int, wanted: int) -> list[str]:
    """`wanted` user ids, each in another partition of `count`, none in partition 0 (which system events share)."""
    found: dict[int, str] = {}
    for n in range(10_000):
        if partition_of(f"user-{n}", count):
            found.setdefault(partition_of(f"user-{n}", count), f"user-{n}")
        if len(found) == wanted:
            return list(found.values())
    raise AssertionError("not enough partitions reached")


def test_one_partition_keeps_every_key_name_plugwatch_always_used() -> None:
    only = layout(0, 1)
    assert (only.ingest_stream, only.events_stream, only.quarantine_stream, only.epoch, only.heartbeat) == (
        keys.INGEST_STREAM, keys.EVENTS_STREAM, keys.QUARANTINE_STREAM, keys.EPOCH, keys.HEARTBEAT)
    assert only.user_state_key("u1") == keys.user_state_key("u1")
    assert only.armed_key(0) == keys.INGEST_ARMED
    assert only.armed_key(2) == keys.ingest_armed_key(2)
    assert only.dedupe_marks == keys.DEDUPE_MARKS
    assert only.tag == ""
    assert partition_of("anyone", 1) == 0


def test_every_key_of_a_partition_is_in_one_hash_slot_and_partitions_spread_over_slots() -> None:
    slots = set()
    for into in layouts(16):
        names = [into.ingest_stream, into.armed_key(0), into.armed_key(3), into.ingest_users_prefix + "1-0",
                 into.ingest_waited_prefix + "1-0", into.ack_mark, into.dedupe_marks, into.dedupe_marks + ":1:0:0",
                 into.dedupe_key("d1"), into.quarantine_stream, into.quarantined_once_prefix + "x", into.heartbeat,
                 into.user_state_key("someone"), into.epoch, into.events_stream]
        assert len({key_slot(name.encode()) for name in names}) == 1, into.tag
        slots.add(key_slot(into.ingest_stream.encode()))
    assert len(slots) == 16


def test_a_users_partition_is_stable_and_users_spread_evenly() -> None:
    counts = [0] * 8
    for n in range(8000):
        counts[partition_of(f"user-{n}", 8)] += 1
    assert min(counts) > 800  # 1000 each on average
    assert partition_of("4fcd9b4e-cf3f-4c71-a8a3-3a1c1e5b7c11", 8) == partition_of(
        "4fcd9b4e-cf3f-4c71-a8a3-3a1c1e5b7c11", 8)


@pytest.mark.parametrize("raw", ["0", "1025", "2.5", "many", "-1"])
def test_a_partition_count_out_of_range_names_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="PLUGWATCH_PARTITIONS"):
        Settings.from_env({"PLUGWATCH_PARTITIONS": raw, "ENODE_WEBHOOK_SECRET": TEST_SECRET})


def test_the_first_count_is_recorded_and_another_refused(fake_redis: redis.Redis) -> None:
    check_count(fake_redis, 4)
    check_count(fake_redis, 4)
    assert fake_redis.get(partitions.PARTITIONS_KEY) == b"4"
    with pytest.raises(PartitionCountMismatch, match=r"PLUGWATCH_PARTITIONS is 2 .* 4 partitions"):
        check_count(fake_redis, 2)


def test_data_from_before_the_count_was_recorded_is_in_one_partition(fake_redis: redis.Redis) -> None:
    fake_redis.hset(keys.EPOCH, "id", "old")  # a worker of an older plugwatch committed here
    with pytest.raises(PartitionCountMismatch, match="PLUGWATCH_PARTITIONS=1"):
        check_count(fake_redis, 4)
    check_count(fake_redis, 1)


def test_user_of_finds_the_user_the_workers_decoder_finds() -> None:
    scenario = build_scenario(40, seed=5)
    checked = 0
    for event in scenario.events:
        decoded = decode_event(event, 0)
        if isinstance(decoded, Ignored):
            continue
        assert ingest.user_of(orjson.dumps(event)) == decoded.user_id
        checked += 1
    assert checked > 100
    assert ingest.user_of(orjson.dumps(vehicle("u9", where="device"))) == "u9"  # no `user`: the device's userId
    for odd in ({"user": None}, {"user": "u9"}, {"user": {"id": ""}}):  # no usable user: the device's, as decoded
        assert ingest.user_of(orjson.dumps(vehicle("u9", where="device") | odd)) == "u9"
    action = {"event": "user:vendor-action:updated", "vendorAction": None, "chargeAction": {"userId": "u7"}}
    assert ingest.user_of(orjson.dumps(action)) == "u7"
    assert ingest.user_of(b'{"event":"system:heartbeat"}') is None
    assert ingest.user_of(b"[1,2]") is None
    assert ingest.user_of(b"not json") is None


def test_split_cuts_a_delivery_into_byte_exact_parts_in_array_order() -> None:
    first, second = users_in_distinct_partitions(4, 2)
    raw = [orjson.dumps(vehicle(first, "a")), b'{"event":"system:heartbeat","pendingEvents":1}',
           orjson.dumps(vehicle(second, "b")), b' {"weird" : true} ', orjson.dumps(vehicle(first, "c"))]
    body = b"[" + b",".join(raw) + b"]"
    parts = dict(ingest.split(body, 4))
    assert parts[partition_of(first, 4)] == b"[" + raw[0] + b"," + raw[4] + b"]"
    assert parts[partition_of(second, 4)] == b"[" + raw[2] + b"]"
    assert raw[1] in parts[0]  # a system event, and an element naming no user: partition 0
    assert b'{"weird" : true}' in parts[0]
    assert sum(len(orjson.loads(part)) for part in parts.values()) == 5


@pytest.mark.parametrize("body", [b"not json", b"{}", b"[]", b"[1,,2]"])
def test_split_leaves_what_is_no_array_of_events_whole_in_partition_0(body: bytes) -> None:
    assert ingest.split(body, 4) == [(0, body)]


def test_split_leaves_a_delivery_of_one_partition_whole() -> None:
    (user,) = users_in_distinct_partitions(4, 1)
    body = orjson.dumps([vehicle(user, "a"), vehicle(user, "b")])
    assert ingest.split(body, 4) == [(partition_of(user, 4), body)]
    assert ingest.split(body, 1) == [(0, body)]


def _receiver(count: int) -> InProcessReceiver:
    return InProcessReceiver(settings=Settings(process=ProcessSettings(partitions=count),
                                               receiver=ReceiverSettings(enode_webhook_secrets=(TEST_SECRET,))))


def test_the_receiver_stores_each_part_in_its_partition_and_a_retry_is_a_duplicate() -> None:
    receiver = _receiver(4)
    users = users_in_distinct_partitions(4, 3)
    body = orjson.dumps([vehicle(user, f"v{n}") for n, user in enumerate(users)])
    response = receiver.post(body, signed(body, "d1"))
    assert response.status_code == 200
    assert response.json() == {"outcome": "accepted"}
    for user in users:
        into = layout(partition_of(user, 4), 4)
        ((_, fields),) = receiver.redis.xrange(into.ingest_stream)
        assert fields[b"d"] == b"d1"
        assert orjson.loads(fields[b"b"]) == [vehicle(user, f"v{users.index(user)}")]
        assert receiver.redis.exists(into.armed_key(0))  # each partition's drain armed
    assert not receiver.redis.exists(keys.INGEST_STREAM)
    again = receiver.post(body, signed(body, "d1"))
    assert again.json() == {"outcome": "duplicate"}
    assert sum(receiver.redis.xlen(into.ingest_stream) for into in layouts(4)) == 3


def test_a_retry_after_a_crash_between_parts_stores_only_the_missing_part() -> None:
    receiver = _receiver(4)
    users = users_in_distinct_partitions(4, 2)
    body = orjson.dumps([vehicle(user, f"v{n}") for n, user in enumerate(users)])
    assert receiver.post(body, signed(body, "d1")).status_code == 200
    lost = layout(partition_of(users[1], 4), 4)  # as if the receiver died before this part's Lua call ran
    for name in receiver.redis.scan_iter(match=f"plugwatch:{lost.tag}:*"):
        receiver.redis.delete(name)
    assert receiver.post(body, signed(body, "d1")).json() == {"outcome": "accepted"}
    assert receiver.redis.xlen(lost.ingest_stream) == 1
    assert receiver.redis.xlen(layout(partition_of(users[0], 4), 4).ingest_stream) == 1  # not stored twice


def test_system_events_and_heartbeats_go_to_partition_0() -> None:
    receiver = _receiver(4)
    body = b'[{"event":"system:heartbeat","version":"2024-10-01","createdAt":"x","pendingEvents":3}]'
    assert receiver.post(body, signed(body, "d2")).json() == {"outcome": "heartbeat"}
    assert receiver.redis.hget(layout(0, 4).heartbeat, "pending_events") == b"3"


def test_the_store_commits_each_partitions_users_in_their_partition(fake_redis: redis.Redis) -> None:
    from worker.core import VehicleObserved

    users = users_in_distinct_partitions(4, 3)
    store = Store(fake_redis, partitions=4)
    observations = [VehicleObserved(user, f"v-{user}", 1000 + n, None, None, 2000 + n)
                    for n, user in enumerate([*users, users[0]])]
    home = layout(partition_of(users[0], 4), 4)
    fake_redis.xgroup_create(home.ingest_stream, keys.INGEST_GROUP, id="0", mkstream=True)
    entry = fake_redis.xadd(home.ingest_stream, {"d": "d1", "b": b"[]", "t": 1})
    fake_redis.xreadgroup(keys.INGEST_GROUP, "c", {home.ingest_stream: ">"})
    result = store.apply_batch(observations, Ack([entry], home))
    assert [outcome for _, outcome in result.outcomes] == [outcome for _, outcome in Store(
        fakeredis_copy(), partitions=1).apply_batch(observations).outcomes]
    for user in users:
        into = layout(partition_of(user, 4), 4)
        assert fake_redis.exists(into.user_state_key(user))
        assert fake_redis.exists(into.epoch)
        assert not fake_redis.exists(keys.user_state_key(user))
    assert fake_redis.xlen(home.ingest_stream) == 0  # acknowledged and deleted with its partition's commit
    assert store.load(users[1]).vehicles


def fakeredis_copy() -> redis.Redis:
    import fakeredis

    return fakeredis.FakeRedis()


URL = "https://consumer.example/hooks"


def test_each_partitions_copy_of_the_routes_names_its_own_outbox(fake_redis: redis.Redis) -> None:
    from plugwatch import subscriptions

    check_count(fake_redis, 4)
    subscriptions.add(fake_redis, URL, types=(), key=b"k" * 32, now=1.0)
    for into in layouts(4):
        assert fake_redis.hget(into.routes, URL) == f"{into.outbox(URL)} *".encode()
    assert subscriptions.active_urls(fake_redis) == [URL]
    subscriptions.remove(fake_redis, URL, now=2.0)
    assert not any(fake_redis.exists(into.routes) for into in layouts(4))


def test_a_removed_url_is_forgotten_only_once_every_partitions_outbox_is_drained(fake_redis: redis.Redis) -> None:
    from plugwatch import subscriptions

    check_count(fake_redis, 4)
    subscriptions.add(fake_redis, URL, types=(), key=b"k" * 32, now=1.0)
    waiting = layout(3, 4).outbox(URL)
    entry = fake_redis.xadd(waiting, {"event": b"{}"})
    subscriptions.remove(fake_redis, URL, now=2.0)
    assert not subscriptions.forget_if_drained(fake_redis, URL)
    fake_redis.xdel(waiting, entry)
    fake_redis.set(layout(1, 4).lease(URL), "queued")  # a drain of partition 1's outbox is armed
    assert not subscriptions.forget_if_drained(fake_redis, URL)
    fake_redis.delete(layout(1, 4).lease(URL))
    assert subscriptions.forget_if_drained(fake_redis, URL)
    assert subscriptions.load(fake_redis, URL) is None


@pytest.mark.parametrize("step", [0, 2, 4])
def test_a_url_subscribed_again_while_it_is_being_forgotten_keeps_its_record_and_its_events(
    fake_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch, step: int
) -> None:
    """The forgetting goes slot by slot; a `subscribe` between any two of its steps must lose nothing."""
    from plugwatch import subscriptions

    check_count(fake_redis, 4)
    subscriptions.add(fake_redis, URL, types=(), key=b"k" * 32, now=1.0)
    subscriptions.remove(fake_redis, URL, now=2.0)
    evals = 0
    real_eval = fake_redis.eval

    def eval_then_subscribe(script: str, *args: object) -> object:
        nonlocal evals
        if evals == step:  # an operator subscribes the URL again, and a commit appends an event for it
            subscriptions.add(fake_redis, URL, types=(), key=b"n" * 32, now=3.0)
            fake_redis.xadd(layout(2, 4).outbox(URL), {"event": b"{}"})
        evals += 1
        return real_eval(script, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(fake_redis, "eval", eval_then_subscribe)
    assert not subscriptions.forget_if_drained(fake_redis, URL)
    again = subscriptions.load(fake_redis, URL)
    assert again is not None
    assert again.active
    assert again.signing_keys[0].key == b"n" * 32
    assert fake_redis.xlen(layout(2, 4).outbox(URL)) == 1
    assert subscriptions.active_urls(fake_redis) == [URL]


def test_a_replayed_dead_letter_goes_back_to_its_users_partition_and_only_that_outbox_is_armed(
    fake_redis: redis.Redis,
) -> None:
    from rq import Queue

    from plugwatch import dead_letters, subscriptions

    check_count(fake_redis, 4)
    subscriptions.add(fake_redis, URL, types=(), key=b"k" * 32, now=1.0)
    (user,) = users_in_distinct_partitions(4, 1)
    event = orjson.dumps({"id": "evt_1", "type": "control.failed", "userId": user}).decode()
    settings = Settings(process=ProcessSettings(partitions=4))
    armed = dead_letters.requeue_event(fake_redis, fake_redis, settings, URL, event)
    home = layout(partition_of(user, 4), 4)
    assert [box.stream for box in armed] == [home.outbox(URL)]
    assert fake_redis.xlen(home.outbox(URL)) == 1
    (job,) = Queue(keys.DELIVERY_QUEUE, connection=fake_redis).get_jobs()
    assert job.args == (URL, home.partition)


def test_a_urls_outboxes_share_its_breaker_but_each_keeps_its_own_heads_attempts_and_age(
    fake_redis: redis.Redis,
) -> None:
    from plugwatch import url_state

    url_state.record_failure(fake_redis, URL, head="5-0", attempts=3, error="HTTP 500", paused_until=50.0,
                             first_failed_at=10.0, partition=3)
    url_state.record_failure(fake_redis, URL, head="7-0", attempts=1, error="HTTP 502", paused_until=60.0,
                             first_failed_at=20.0, partition=2)
    three, two, one = (url_state.read_state(fake_redis, URL, p) for p in (3, 2, 1))
    assert (three.head, three.attempts, three.first_failed_at, three.last_error) == ("5-0", 3, 10.0, "HTTP 500")
    assert (two.head, two.attempts, two.others_attempts) == ("7-0", 1, 3)
    assert (one.head, one.attempts, one.others_attempts) == ("", 0, 3)  # no head, but the URL is failing
    assert one.failing(0.0)
    assert three.paused_until == two.paused_until == 60.0  # one breaker per URL
    whole = url_state.read_state(fake_redis, URL)  # what status and metrics show: the longest-failing head
    assert (whole.head, whole.attempts, whole.last_error) == ("5-0", 3, "HTTP 500")

    url_state.record_success(fake_redis, URL, partition=2)  # partition 2's head got through: the breaker closes
    three, two = url_state.read_state(fake_redis, URL, 3), url_state.read_state(fake_redis, URL, 2)
    assert not three.paused(0.0)
    assert (three.head, three.attempts, three.first_failed_at) == ("5-0", 3, 10.0)  # its age goes on
    assert (two.head, two.attempts, two.others_attempts) == ("", 0, 3)

    url_state.disable(fake_redis, URL, reason="410", now=1.0)
    assert url_state.enable(fake_redis, URL)
    cleared = fake_redis.hgetall(keys.downstream_state_key(URL))
    assert cleared == {b"url": URL.encode()}  # every partition's head, the pause and `disabled*` are gone


def test_a_full_reconcile_marks_every_partitions_epoch_reconciled(fake_redis: redis.Redis) -> None:
    from plugwatch import epoch
    from worker.enode.reconcile import ReconcileReport, record

    epochs = [epoch.ensure(fake_redis, 1000, previous="gone", into=into) for into in layouts(3)]  # all lost
    assert all(current.needs_reconcile for current in epoch.read_all(fake_redis, 3) if current)
    ran_in = [(into, current.id) for into, current in zip(layouts(3), epochs, strict=True)]
    record(fake_redis, ReconcileReport(), None, epochs=ran_in[1:])
    lost = [current.needs_reconcile for current in epoch.read_all(fake_redis, 3) if current]
    assert lost == [True, False, False]  # partition 0 was not in this run's epochs


def test_the_demos_env_file_carries_the_partition_count() -> None:
    from simulator.up_cli import exports

    assert "export PLUGWATCH_PARTITIONS=4\n" in exports({"REDIS_URL": "redis://x", "PLUGWATCH_PARTITIONS": "4"})
