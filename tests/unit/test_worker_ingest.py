"""The ingest drain job: deliveries from the stream become state and events; bad input is quarantined.

Every test runs against fakeredis and against the suite's private redis-server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import orjson
import pytest
import redis
from prometheus_client import CollectorRegistry
from rq import Queue

from plugwatch import ingest_arming, keys, quarantine
from plugwatch.partitions import layouts
from plugwatch.settings import DeliverySettings, ProcessSettings, Settings
from tests.support.delivery import subscribe
from tests.support.event_schema import stream_events
from tests.support.eventlog import START, Delivery, charger_event, feed, vehicle_event
from worker.bootstrap import WorkerContext, bootstrap
from worker.core import Observation
from worker.ingest import drain as ingest
from worker.ingest.store import Ack, BatchResult, Store

USER, VEHICLE, CHARGER, HOME = "usr-1", "veh-1", "chg-1", "loc-home"
FAST = {"PLUGWATCH_INGEST_CLAIM_IDLE_SECONDS": "0.001"}
NOW_S = 1_700_000_000.0


@pytest.fixture(params=["fake_redis", "real_redis"])
def connection(request: pytest.FixtureRequest) -> redis.Redis:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


class Contexts:
    """Builds worker contexts on the test's connection (fresh metrics each) and closes them afterwards."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection
        self.built: list[WorkerContext] = []

    def __call__(self, urls: tuple[str, ...] = (), partitions: int = 1, **environ: str) -> WorkerContext:
        settings = replace(Settings.from_env(environ, require_enode_secret=False),  # PLUGWATCH_INGEST_* tuning
                           process=ProcessSettings(redis_url="redis://unused", partitions=partitions),
                           delivery=DeliverySettings(downstream_urls=urls, downstream_key=b"k" * 32 if urls else None))
        context = bootstrap(settings, registry=CollectorRegistry(), connection=self.connection, consumer="c1")
        subscribe(self.connection, urls)  # as `python -m worker` does at start-up
        self.built.append(context)
        return context


@pytest.fixture
def make_context(connection: redis.Redis) -> Iterator[Contexts]:
    contexts = Contexts(connection)
    yield contexts
    for context in contexts.built:
        context.close()


@pytest.fixture
def context(make_context: Contexts) -> WorkerContext:
    return make_context(**FAST)


@pytest.fixture
def registry(context: WorkerContext) -> CollectorRegistry:
    return context.metrics.registry


def plug_in_at_home(user: str = USER, minute: int = 0) -> list[dict[str, Any]]:
    at = START + timedelta(minutes=minute)
    return [charger_event(user, CHARGER, at, vehicle=VEHICLE, location=HOME),
            vehicle_event(user, VEHICLE, at, charger=CHARGER, location=HOME)]


def unplug_at_home(user: str = USER, minute: int = 0) -> list[dict[str, Any]]:
    at = START + timedelta(minutes=minute)
    return [charger_event(user, CHARGER, at, vehicle=None, location=HOME),
            vehicle_event(user, VEHICLE, at, charger=None, location=HOME)]


def delivery(delivery_id: str, events: Sequence[object]) -> Delivery:
    return Delivery(delivery_id, orjson.dumps(list(events)))


def emitted(connection: redis.Redis) -> list[dict[str, Any]]:
    return stream_events(connection)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_drain_applies_every_delivery_and_empties_the_stream(
        context: WorkerContext, connection: redis.Redis, registry: CollectorRegistry) -> None:
    feed(connection, [delivery("d1", plug_in_at_home("usr-a")), delivery("d2", plug_in_at_home("usr-b"))])
    connection.set(keys.INGEST_ARMED, "1")

    drained = ingest.drain(context)

    assert (drained.deliveries, drained.events, drained.emitted) == (2, 4, 2)
    assert [event["userId"] for event in emitted(connection)] == ["usr-a", "usr-b"]
    assert connection.xlen(keys.INGEST_STREAM) == 0
    assert connection.exists(keys.INGEST_ARMED) == 0
    assert not drained.rearmed
    assert sample(registry, "plugwatch_worker_events_total", kind="vehicle", outcome="applied") == 2
    assert sample(registry, "plugwatch_emitted_events_total", type="vehicle.plugged_in_at_home") == 2
    assert sample(registry, "plugwatch_worker_deliveries_total") == 2


def test_a_malformed_event_is_quarantined_and_the_others_are_applied(
        context: WorkerContext, connection: redis.Redis, registry: CollectorRegistry) -> None:
    broken = {"event": "user:vehicle:updated", "createdAt": "2025-03-14T18:00:00Z", "version": "2024-10-01",
              "user": {"id": USER}, "vehicle": {"userId": USER}}  # no vehicle id
    feed(connection, [delivery("d1", [plug_in_at_home()[0], broken, plug_in_at_home()[1]])])

    ingest.drain(context)

    [entry] = quarantine.entries(connection)
    assert (entry.delivery_id, entry.event_index) == ("d1", 1)
    assert "vehicle.id" in entry.reason
    assert [event["type"] for event in emitted(connection)] == ["vehicle.plugged_in_at_home"]
    assert sample(registry, "plugwatch_worker_events_total", kind="vehicle", outcome="quarantined") == 1
    assert connection.xlen(keys.INGEST_STREAM) == 0


def test_a_body_that_is_not_a_json_array_is_quarantined_whole(
        context: WorkerContext, connection: redis.Redis) -> None:
    feed(connection, [Delivery("d1", b"{not json"), delivery("d2", plug_in_at_home())])

    drained = ingest.drain(context)

    [entry] = quarantine.entries(connection)
    assert (entry.delivery_id, entry.event_index, entry.body) == ("d1", None, b"{not json")
    assert drained.emitted == 1


def test_untracked_devices_and_heartbeats_are_counted_as_ignored_not_quarantined(
        context: WorkerContext, connection: redis.Redis, registry: CollectorRegistry) -> None:
    hvac = {"event": "user:hvac:updated", "createdAt": "2025-03-14T18:00:00Z", "version": "2024-10-01",
            "user": {"id": USER}, "hvac": {"id": "h1"}, "updatedFields": []}
    heartbeat = {"event": "system:heartbeat", "createdAt": "2025-03-14T18:00:00Z", "version": "2024-10-01",
                 "pendingEvents": 0}
    feed(connection, [delivery("d1", [hvac, heartbeat])])

    ingest.drain(context)

    assert quarantine.count(connection) == 0
    assert sample(registry, "plugwatch_worker_events_total", kind="other", outcome="ignored") == 1
    assert sample(registry, "plugwatch_worker_events_total", kind="system", outcome="ignored") == 1
    assert connection.xlen(keys.INGEST_STREAM) == 0


def test_a_fractional_heartbeat_beside_a_plug_in_costs_nothing(
        context: WorkerContext, connection: redis.Redis, registry: CollectorRegistry) -> None:
    """The receiver recorded `pendingEvents: 0.5` (see test_receiver_app); the worker ignores the heartbeat."""
    heartbeat = {"event": "system:heartbeat", "createdAt": "2025-03-14T18:00:00Z", "version": "2024-10-01",
                 "pendingEvents": 0.5}
    feed(connection, [delivery("d1", [*plug_in_at_home(), heartbeat])])

    ingest.drain(context)

    assert [event["type"] for event in emitted(connection)] == ["vehicle.plugged_in_at_home"]
    assert quarantine.count(connection) == 0
    assert sample(registry, "plugwatch_worker_events_total", kind="system", outcome="ignored") == 1


@pytest.mark.parametrize(("odd", "reason"), [
    (7, "event is not a JSON object"),
    ({"version": "2024-10-01"}, "event has no string 'event' name"),
    ({**vehicle_event(USER, "veh-2", START, charger=None, location=None), "version": "2030-01-01"},
     "version is missing or not one plugwatch reads (2024-10-01)"),
    ({**vehicle_event(USER, "veh-2", START, charger=None, location=None), "version": ["2024-10-01"]},
     "version is missing or not one plugwatch reads (2024-10-01)"),
])
def test_an_event_without_a_readable_envelope_is_quarantined_alone(
        context: WorkerContext, connection: redis.Redis, odd: object, reason: str) -> None:
    feed(connection, [delivery("d1", [plug_in_at_home()[0], odd, plug_in_at_home()[1]])])

    ingest.drain(context)

    [entry] = quarantine.entries(connection)
    assert (entry.delivery_id, entry.event_index, entry.reason) == ("d1", 1, reason)
    assert [event["type"] for event in emitted(connection)] == ["vehicle.plugged_in_at_home"]


@pytest.mark.parametrize("levels", [1000, 5000, 100_000])
def test_an_event_nested_deeper_than_the_parsers_go_is_quarantined_alone_not_poison(
        context: WorkerContext, connection: redis.Redis, levels: int) -> None:
    """msgspec raises RecursionError near 1000 levels (fewer deep in a call stack), orjson refuses 1024: the
    body is split without recursion, the deep element quarantined with its index, the plug-in applied."""
    charger, vehicle = (orjson.dumps(event) for event in plug_in_at_home())
    deep = b'{"a":' + b"[" * levels + b"]" * levels + b"}"
    body = b"[" + charger + b"," + deep + b"," + vehicle + b"]"
    feed(connection, [Delivery("d1", body)])

    def nested(calls: int) -> ingest.Drained:  # as deep in a stack as an RQ job runs, and then some
        return ingest.drain(context) if calls == 0 else nested(calls - 1)

    drained = nested(300)

    [entry] = quarantine.entries(connection)
    assert (entry.delivery_id, entry.event_index, entry.body) == ("d1", 1, b"[" + deep + b"]")
    if levels >= 5000:
        assert entry.reason.startswith("event cannot be parsed as JSON: depth limit exceeded")
    assert [event["type"] for event in emitted(connection)] == ["vehicle.plugged_in_at_home"]
    assert (drained.deliveries, connection.xlen(keys.INGEST_STREAM)) == (1, 0)


@pytest.mark.parametrize(("odd", "reason"), [
    (b'{"event":"user:vehicle:updated","version":"2024-10-01","createdAt":1e400}', "number is infinity"),
    (b'{"event":"user:vehicle:updated","version":"2024-10-01","createdAt":"\xff"}', "str is not valid UTF-8"),
])
def test_an_event_no_parser_reads_is_quarantined_alone_byte_for_byte(
        context: WorkerContext, connection: redis.Redis, odd: bytes, reason: str) -> None:
    """A number out of range or invalid UTF-8 in one event: the body is not valid as a whole, its array is."""
    charger, vehicle = (orjson.dumps(event) for event in plug_in_at_home())
    feed(connection, [Delivery("d1", b"[" + charger + b",\n " + odd + b" ," + vehicle + b"]")])

    ingest.drain(context)

    [entry] = quarantine.entries(connection)
    assert (entry.event_index, entry.body) == (1, b"[" + odd + b"]")
    assert entry.reason.startswith("event cannot be parsed as JSON: " + reason)
    assert [event["type"] for event in emitted(connection)] == ["vehicle.plugged_in_at_home"]


def test_a_replayed_entry_that_is_quarantined_again_stays_listed(
        context: WorkerContext, connection: redis.Redis) -> None:
    """Nothing leaves the quarantine except by purge or by being processed: a replay the worker quarantines
    again comes back as a new entry naming the old one, however often it is replayed."""
    broken = {"event": "user:vehicle:updated", "createdAt": "2025-03-14T18:00:00Z", "version": "2024-10-01",
              "user": {"id": USER}, "vehicle": {"userId": USER}}  # no vehicle id
    feed(connection, [delivery("d1", [plug_in_at_home()[0], broken])])
    ingest.drain(context)
    [first] = quarantine.entries(connection)

    replayed = quarantine.replay(connection, first.id, queues=connection, now=time.time())
    assert replayed is quarantine.ReplayOutcome.REPLAYED
    ingest.drain(context)

    [second] = quarantine.entries(connection)
    assert (second.delivery_id, second.reason, second.replay_of) == ("d1", first.reason, first.id)
    assert second.body == first.replay_body() == orjson.dumps([broken])
    assert second.event_index == 0
    quarantine.replay(connection, second.id, queues=connection, now=time.time())
    ingest.drain(context)
    [third] = quarantine.entries(connection)
    assert (third.reason, third.replay_of, third.replay_body()) == (first.reason, second.id, first.replay_body())
    assert connection.xlen(keys.INGEST_STREAM) == 0


def test_a_replayed_poison_delivery_that_now_succeeds_leaves_the_quarantine(
        context: WorkerContext, connection: redis.Redis) -> None:
    body = orjson.dumps(plug_in_at_home())
    entry_id = quarantine.add(connection, "d1", body, "poison: delivered 6 times without completing", now=NOW_S)
    assert entry_id is not None
    quarantine.replay(connection, entry_id, queues=connection, now=NOW_S)

    ingest.drain(context)

    assert quarantine.count(connection) == 0
    assert [event["type"] for event in emitted(connection)] == ["vehicle.plugged_in_at_home"]


def test_entries_a_killed_drainer_left_pending_are_claimed_and_applied_once(
        context: WorkerContext, connection: redis.Redis) -> None:
    feed(connection, [delivery("d1", plug_in_at_home())])
    connection.xgroup_create(keys.INGEST_STREAM, keys.INGEST_GROUP, id="0", mkstream=True)
    connection.xreadgroup(keys.INGEST_GROUP, "dead-worker", {keys.INGEST_STREAM: ">"})  # then it died
    time.sleep(0.01)

    drained = ingest.drain(context)

    assert drained.deliveries == 1
    assert len(emitted(connection)) == 1
    assert connection.xpending(keys.INGEST_STREAM, keys.INGEST_GROUP)["pending"] == 0


def test_an_entry_delivered_too_often_is_quarantined_as_poison(
        connection: redis.Redis, make_context: Contexts) -> None:
    context = make_context(PLUGWATCH_INGEST_MAX_DELIVERIES="2", **FAST)
    feed(connection, [delivery("d1", plug_in_at_home())])
    connection.xgroup_create(keys.INGEST_STREAM, keys.INGEST_GROUP, id="0", mkstream=True)
    connection.xreadgroup(keys.INGEST_GROUP, "w1", {keys.INGEST_STREAM: ">"})  # delivered once, w1 died
    time.sleep(0.005)
    connection.xautoclaim(keys.INGEST_STREAM, keys.INGEST_GROUP, "w2", min_idle_time=1)  # twice, w2 died
    time.sleep(0.005)

    drained = ingest.drain(context)

    [entry] = quarantine.entries(connection)
    assert entry.delivery_id == "d1"
    assert entry.reason.startswith("poison")
    assert drained.deliveries == 0
    assert emitted(connection) == []
    assert connection.xlen(keys.INGEST_STREAM) == 0


def held_by_a_stalled_drain(connection: redis.Redis, deliveries: Sequence[Delivery]) -> None:
    """Feed `deliveries` and let a drain read them and stop (it lost Redis): they stay pending under it."""
    feed(connection, deliveries)
    connection.xgroup_create(keys.INGEST_STREAM, keys.INGEST_GROUP, id="0", mkstream=True)
    connection.xreadgroup(keys.INGEST_GROUP, "stalled", {keys.INGEST_STREAM: ">"})


def types(connection: redis.Redis) -> list[tuple[str, str]]:
    return [(event["userId"], event["type"]) for event in emitted(connection)]


PLUGGED, UNPLUGGED = "vehicle.plugged_in_at_home", "vehicle.unplugged_from_home"


def test_a_users_delivery_another_drain_still_holds_is_applied_before_that_users_later_one(
        connection: redis.Redis, make_context: Contexts, registry: CollectorRegistry) -> None:
    context = make_context(PLUGWATCH_INGEST_CLAIM_IDLE_SECONDS="60")  # the stalled drain's entry is not claimed
    held_by_a_stalled_drain(connection, [delivery("d1", plug_in_at_home())])
    feed(connection, [delivery("d2", unplug_at_home(minute=5)), delivery("d3", plug_in_at_home("usr-other"))])

    drained = ingest.drain(context)

    # Applied after d2, d1's plug-in would be stale: neither transition would ever be emitted.
    assert types(connection) == [(USER, PLUGGED), (USER, UNPLUGGED), ("usr-other", PLUGGED)]
    assert (drained.deliveries, drained.events, drained.ordered) == (2, 4, 1)  # d1's events are not d2's
    [held] = connection.xpending_range(keys.INGEST_STREAM, keys.INGEST_GROUP, min="-", max="+", count=10)
    assert held["consumer"] == b"stalled"  # acknowledged by whoever applies d1 as its own
    assert sample(context.metrics.registry, "plugwatch_worker_ordered_entries_total") == 1

    claimer = make_context(**FAST)
    time.sleep(0.01)
    assert ingest.drain(claimer).deliveries == 1  # claimed: what it holds for USER is applied already

    assert types(connection) == [(USER, PLUGGED), (USER, UNPLUGGED), ("usr-other", PLUGGED)]
    assert connection.xlen(keys.INGEST_STREAM) == 0
    assert list(connection.scan_iter(keys.INGEST_USERS_PREFIX + "*")) == []  # each commit deleted its records


def test_an_older_pending_delivery_of_other_users_is_left_to_its_drain(
        connection: redis.Redis, make_context: Contexts) -> None:
    context = make_context(PLUGWATCH_INGEST_CLAIM_IDLE_SECONDS="60")
    held_by_a_stalled_drain(connection, [delivery("d1", plug_in_at_home("usr-held"))])
    feed(connection, [delivery("d2", plug_in_at_home())])

    drained = ingest.drain(context)

    assert types(connection) == [(USER, PLUGGED)]  # usr-held's delivery is the stalled drain's (or a claimer's)
    assert drained.ordered == 0
    assert connection.xpending(keys.INGEST_STREAM, keys.INGEST_GROUP)["pending"] == 1


class FailingStore(Store):
    """A store that fails (as a bug would) on any batch holding an observation of `user`."""

    def __init__(self, connection: redis.Redis, user: str) -> None:
        super().__init__(connection)
        self.user = user

    def apply_batch(self, observations: Sequence[Observation], ack: Ack | None = None) -> BatchResult:
        if any(observation.user_id == self.user for observation in observations):
            raise RuntimeError("bug")
        return super().apply_batch(observations, ack)


class PoisonStore(Store):
    """A store that fails (as a bug would) on any batch holding `user`'s observations of START's minute (one
    poison delivery)."""

    def __init__(self, connection: redis.Redis, user: str) -> None:
        super().__init__(connection)
        self.user, self.at = user, int(START.timestamp() * 1000)

    def apply_batch(self, observations: Sequence[Observation], ack: Ack | None = None) -> BatchResult:
        if any(observation.user_id == self.user and observation.at < self.at + 60_000 for observation in observations):
            raise RuntimeError("bug")
        return super().apply_batch(observations, ack)


def test_a_delivery_that_fails_only_behind_an_older_poison_one_is_not_quarantined_with_it(
        connection: redis.Redis, make_context: Contexts) -> None:
    context = make_context(PLUGWATCH_INGEST_MAX_DELIVERIES="2", PLUGWATCH_INGEST_IDLE_WAIT_SECONDS="0", **FAST)
    poisoned = replace(context, store=PoisonStore(connection, "usr-bad"))
    feed(connection, [delivery("d1", plug_in_at_home("usr-bad")), delivery("d2", plug_in_at_home("usr-bad", 5))])

    for _ in range(3):  # each drain claims both again; d2, applied behind d1, fails as long as d1 is pending
        ingest.drain(poisoned)
        time.sleep(0.01)

    [entry] = quarantine.entries(connection)
    assert (entry.delivery_id, entry.reason.startswith("poison")) == ("d1", True)
    assert types(connection) == [("usr-bad", PLUGGED)]  # d2, once d1 was quarantined
    assert connection.xlen(keys.INGEST_STREAM) == 0


def test_an_unexpected_failure_leaves_only_the_failing_delivery_pending(
        connection: redis.Redis, make_context: Contexts) -> None:
    context = make_context(PLUGWATCH_INGEST_CLAIM_IDLE_SECONDS="60")
    failing = replace(context, store=FailingStore(connection, "usr-bad"))
    feed(connection, [delivery("d1", plug_in_at_home("usr-a")), delivery("d2", plug_in_at_home("usr-bad")),
                      delivery("d3", plug_in_at_home("usr-c"))])

    drained = ingest.drain(failing)

    assert drained.deliveries == 2
    assert [event["userId"] for event in emitted(connection)] == ["usr-a", "usr-c"]
    [(_, fields)] = connection.xrange(keys.INGEST_STREAM)
    assert fields[b"d"] == b"d2"
    assert connection.xpending(keys.INGEST_STREAM, keys.INGEST_GROUP)["pending"] == 1
    assert not drained.rearmed  # it is not idle yet: no busy loop of re-armed jobs


@pytest.fixture
def real_context(real_redis: redis.Redis) -> Iterator[WorkerContext]:
    """Real Redis only: fakeredis answers a blocking read at once."""
    contexts = Contexts(real_redis)
    yield contexts(PLUGWATCH_INGEST_IDLE_WAIT_SECONDS="1", **FAST)
    for context in contexts.built:
        context.close()


@pytest.mark.parametrize(("slot", "deliveries"), [(0, 2), (1, 1)])
def test_an_emptied_drain_takes_a_delivery_that_arrives_during_its_idle_wait_unless_it_is_a_helper(
        real_redis: redis.Redis, real_context: WorkerContext, slot: int, deliveries: int) -> None:
    """No RQ job per delivery under a steady trickle: the main drain picks the next one up itself; a helper
    (armed only for a backlog) ends as soon as the backlog is gone."""
    feed(real_redis, [delivery("d1", plug_in_at_home("usr-a"))])
    later = threading.Timer(0.3, feed, args=(real_redis, [delivery("d2", plug_in_at_home("usr-b"))]))
    later.start()

    drained = ingest.drain(real_context, slot)
    later.join()

    assert drained.deliveries == deliveries
    assert Queue(keys.INGEST_QUEUE, connection=real_redis).count == 0


@pytest.mark.parametrize(("queued", "deliveries"), [(False, 1), (True, 0)])
def test_with_partitions_an_idle_drain_ends_its_wait_once_another_drain_job_is_queued(
        real_redis: redis.Redis, queued: bool, deliveries: int) -> None:
    """A worker idling on a quiet partition must not hold up another partition's drain job (fewer workers
    than partitions): with one queued, the idle wait ends at once and a delivery arriving later is left to
    the drain the receiver then arms."""
    contexts = Contexts(real_redis)
    context = contexts(partitions=2, PLUGWATCH_INGEST_IDLE_WAIT_SECONDS="1.5", **FAST)
    busy, quiet = layouts(2)
    if queued:
        assert ingest_arming.arm(real_redis, real_redis, into=busy) is not None

    def arrive() -> None:
        pipe = real_redis.pipeline()
        ingest_arming.requeue(pipe, "d1", delivery("d1", plug_in_at_home("usr-b")).body, now=time.time(),
                              replay_of="", into=quiet)
        pipe.execute()

    later = threading.Timer(0.5, arrive)
    later.start()
    try:
        drained = ingest.drain(context, 0, quiet.partition)
    finally:
        later.join()
        for built in contexts.built:
            built.close()
    assert drained.deliveries == deliveries
    assert real_redis.xlen(quiet.ingest_stream) == 1 - deliveries


def test_a_drain_that_runs_out_of_budget_rearms_a_successor(
        connection: redis.Redis, make_context: Contexts) -> None:
    context = make_context(PLUGWATCH_INGEST_BATCH="1",
                           PLUGWATCH_INGEST_BUDGET_SECONDS="0.000001", PLUGWATCH_INGEST_MAX_DRAINERS="1")
    feed(connection, [delivery("d1", plug_in_at_home("usr-a")), delivery("d2", plug_in_at_home("usr-b"))])

    drained = ingest.drain(context)

    assert drained.rearmed
    assert connection.exists(keys.INGEST_ARMED) == 1
    assert Queue(keys.INGEST_QUEUE, connection=connection).count == 1


def test_a_backlog_arms_a_helper_drain_for_another_worker(
        connection: redis.Redis, make_context: Contexts) -> None:
    context = make_context(PLUGWATCH_INGEST_BATCH="1", PLUGWATCH_INGEST_MAX_DRAINERS="2")
    feed(connection, [delivery("d1", plug_in_at_home("usr-a")), delivery("d2", plug_in_at_home("usr-b"))])

    ingest.drain(context)

    [job] = Queue(keys.INGEST_QUEUE, connection=connection).get_jobs()
    assert (job.func_name, job.args) == (keys.DRAIN_INGEST_JOB, (1,))
    assert connection.exists(keys.ingest_armed_key(1)) == 1


def test_pump_arms_a_drain_only_when_entries_wait_and_none_is_armed(
        context: WorkerContext, connection: redis.Redis) -> None:
    options = context.options
    assert not ingest.pump(connection, connection, options)  # nothing waits
    feed(connection, [delivery("d1", plug_in_at_home())])
    connection.set(keys.INGEST_ARMED, "1")
    assert not ingest.pump(connection, connection, options)  # one is armed
    connection.delete(keys.INGEST_ARMED)

    assert ingest.pump(connection, connection, options)
    assert Queue(keys.INGEST_QUEUE, connection=connection).count == 1


def test_pump_rearms_for_entries_pending_longer_than_the_claim_idle_time(
        context: WorkerContext, connection: redis.Redis) -> None:
    feed(connection, [delivery("d1", plug_in_at_home())])
    connection.xgroup_create(keys.INGEST_STREAM, keys.INGEST_GROUP, id="0", mkstream=True)
    connection.xreadgroup(keys.INGEST_GROUP, "dead-worker", {keys.INGEST_STREAM: ">"})

    assert not ingest.pump(connection, connection, replace(context.options, claim_idle_ms=60_000))
    time.sleep(0.01)
    assert ingest.pump(connection, connection, replace(context.options, claim_idle_ms=5))


def test_pump_rearms_when_the_armed_job_vanished_before_its_drain_started(
        context: WorkerContext, connection: redis.Redis) -> None:
    """A worker took the receiver's job and was killed at once: don't wait a minute for the key to expire."""
    feed(connection, [delivery("d1", plug_in_at_home())])
    connection.set(keys.INGEST_ARMED, "1", px=ingest_arming.ARMED_TTL_MS - 1_000)  # armed a second ago
    assert not ingest.pump(connection, connection, context.options)  # its job may be starting right now
    connection.set(keys.INGEST_ARMED, "1", px=ingest_arming.ARMED_TTL_MS - 10_000)  # ten seconds ago
    Queue(keys.INGEST_QUEUE, connection=connection).enqueue_call(keys.DRAIN_INGEST_JOB)
    assert not ingest.pump(connection, connection, context.options)  # its job is still queued
    Queue(keys.INGEST_QUEUE, connection=connection).empty()

    assert ingest.pump(connection, connection, context.options)
    assert Queue(keys.INGEST_QUEUE, connection=connection).count == 1


def test_pump_leaves_a_running_drain_alone(context: WorkerContext, connection: redis.Redis) -> None:
    feed(connection, [delivery("d1", plug_in_at_home())])
    connection.set(keys.INGEST_ARMED, "1", px=context.options.armed_ttl_ms)  # refreshed by the drain

    assert not ingest.pump(connection, connection, context.options)


def test_idle_consumers_without_pending_entries_are_forgotten(
        connection: redis.Redis, make_context: Contexts) -> None:
    context = make_context(PLUGWATCH_INGEST_CONSUMER_IDLE_SECONDS="0.005")
    feed(connection, [delivery("d1", plug_in_at_home()), delivery("d2", plug_in_at_home("usr-b"))])
    connection.xgroup_create(keys.INGEST_STREAM, keys.INGEST_GROUP, id="0", mkstream=True)
    connection.xreadgroup(keys.INGEST_GROUP, "gone-idle", {keys.INGEST_STREAM: ">"}, count=1)
    connection.xack(keys.INGEST_STREAM, keys.INGEST_GROUP, connection.xrange(keys.INGEST_STREAM)[0][0])
    connection.xreadgroup(keys.INGEST_GROUP, "still-holding", {keys.INGEST_STREAM: ">"}, count=1)
    time.sleep(0.01)

    ingest.drain(context)

    consumers = connection.xinfo_consumers(keys.INGEST_STREAM, keys.INGEST_GROUP)
    names = {consumer["name"].decode() for consumer in consumers}
    assert "gone-idle" not in names
    assert "still-holding" in names


def test_emitted_events_reach_each_downstream_outbox_and_arm_its_delivery(
        connection: redis.Redis, make_context: Contexts) -> None:
    url = "https://sink.example/hook"
    context = make_context(urls=(url,), **FAST)
    feed(connection, [delivery("d1", plug_in_at_home())])

    ingest.drain(context)

    [(_, fields)] = connection.xrange(keys.outbox_stream(url))
    assert orjson.loads(fields[b"event"])["type"] == "vehicle.plugged_in_at_home"
    assert connection.exists(keys.downstream_lease_key(url)) == 1
    [job] = Queue(keys.DELIVERY_QUEUE, connection=connection).get_jobs()
    assert (job.func_name, job.args) == (keys.DRAIN_OUTBOX_JOB, (url,))
