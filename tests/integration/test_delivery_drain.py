"""Delivery drains in this process (drainer threads, real redis-server, real HTTP sinks under uvicorn).

The RQ hop is skipped: `deliver()` hands URLs to the drainer threads as the `drain_outbox` job does.
End-to-end tests with worker processes are in test_delivery_e2e.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import orjson
import pytest
import redis
from prometheus_client import CollectorRegistry
from rq import Queue

from ops.status import read_status
from plugwatch import dead_letters as deadletters
from plugwatch import delivery_arming, keys
from plugwatch import url_state as state
from plugwatch.outboxes import only
from plugwatch.settings import Settings
from plugwatch.signing import decode_secret
from tests.conftest import TEST_DOWNSTREAM_SECRET
from tests.support.delivery import emit, first_arrivals_by_vehicle, interleaved, make_event, subscribe
from tests.support.servers import wait_until
from tests.support.sinks import Reply, Sink, SinkServer
from tests.unit.test_signing import spec_verify
from worker import delivery
from worker.bootstrap import bootstrap, install
from worker.delivery.slowness import attempts_bound

FAST = {
    "PLUGWATCH_DELIVERY_CONNECT_TIMEOUT_SECONDS": "0.5",
    "PLUGWATCH_DELIVERY_READ_TIMEOUT_SECONDS": "2",
    "PLUGWATCH_DELIVERY_BACKOFF_BASE_SECONDS": "0.05",
    "PLUGWATCH_DELIVERY_BACKOFF_MAX_SECONDS": "0.2",
    "PLUGWATCH_DELIVERY_INLINE_WAIT_SECONDS": "5",
}


@dataclass
class Harness:
    connection: redis.Redis
    settings: Settings
    context: delivery.DeliveryContext
    registry: CollectorRegistry

    def send(self, events: list[bytes], urls: list[str] | None = None) -> None:
        urls = urls or list(self.settings.delivery.downstream_urls)
        emit(self.connection, events, urls)
        for url in urls:
            self.context.threads.request(only(url))

    def backlog(self, url: str) -> int:
        return delivery_arming.backlog(self.connection, url)

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def sinks() -> Iterator[list[tuple[Sink, SinkServer]]]:
    pairs = [(sink, SinkServer(sink)) for sink in (Sink(), Sink())]
    for _, server in pairs:
        server.up()
    yield pairs
    for _, server in pairs:
        server.down()


def start(redis_url: str, urls: tuple[str, ...], **env: str) -> Harness:
    """Delivery to `urls` as they are (not checked as Settings.from_env would: a test may pass a bad one)."""
    settings = Settings.from_env({**FAST, "PLUGWATCH_DELIVERY_MAX_AGE_SECONDS": "3600", **env, "REDIS_URL": redis_url},
                                 require_enode_secret=False)
    settings = replace(settings, delivery=replace(settings.delivery, downstream_urls=urls,
                                                  downstream_key=decode_secret(TEST_DOWNSTREAM_SECRET)))
    connection = redis.Redis.from_url(redis_url)
    subscribe(connection, urls, decode_secret(TEST_DOWNSTREAM_SECRET))  # as `python -m worker` does at start-up
    registry = CollectorRegistry()
    worker = bootstrap(settings, registry=registry, connection=connection)
    install(worker)  # the drain_outbox jobs a kick enqueues find this process's drainer threads
    return Harness(connection, settings, worker.delivery, registry)


@pytest.fixture
def harness(redis_url: str, sinks: list[tuple[Sink, SinkServer]]) -> Iterator[Harness]:
    running = start(redis_url, tuple(server.url + "/hook" for _, server in sinks))
    yield running
    running.context.close()
    install(None)
    running.connection.close()


def test_events_arrive_in_order_signed_with_the_exact_bytes(harness: Harness, sinks: list) -> None:
    (sink, _), (other, _) = sinks
    events = [make_event(n) for n in range(5)]
    harness.send(events)
    for receiver in (sink, other):
        received = receiver.wait_for(5)
        assert [r.body for r in received] == events
        assert [r.webhook_id for r in received] == [f"evt_veh-1_{n}" for n in range(5)]
        for request in received:
            assert spec_verify(TEST_DOWNSTREAM_SECRET, request.headers, request.body)
            assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 10
            assert request.headers["content-type"] == "application/json"
    wait_until(lambda: all(harness.backlog(url) == 0 for url in harness.settings.delivery.downstream_urls))
    wait_until(lambda: harness.metric("plugwatch_downstream_latency_seconds_count") == 10)
    assert harness.metric("plugwatch_downstream_attempts_total", outcome="success") == 10


def test_500_twice_then_200_delivers_on_the_third_attempt_with_the_same_id(harness: Harness, sinks: list) -> None:
    (sink, _), _ = sinks
    sink.push(Reply(500), Reply(503))
    harness.send([make_event(1)], [harness.settings.delivery.downstream_urls[0]])
    received = sink.wait_for(3, accepted=False)
    wait_until(lambda: len(sink.accepted()) == 1)
    assert [r.status for r in received] == [500, 503, 200]
    assert len({r.webhook_id for r in received}) == 1
    assert len({r.body for r in received}) == 1
    assert all(spec_verify(TEST_DOWNSTREAM_SECRET, r.headers, r.body) for r in received)
    assert harness.metric("plugwatch_downstream_attempts_total", outcome="retry") == 2
    wait_until(lambda: state.read_state(harness.connection, harness.settings.delivery.downstream_urls[0]).attempts == 0)


def test_a_retrying_url_keeps_order_and_loses_nothing(harness: Harness, sinks: list) -> None:
    (sink, _), _ = sinks
    sink.push(*[Reply(500)] * 3)
    events = [make_event(n) for n in range(4)]
    harness.send(events, [harness.settings.delivery.downstream_urls[0]])
    accepted = sink.wait_for(4, accepted=True)
    assert [r.body for r in accepted] == events


def test_429_with_retry_after_waits_that_long(harness: Harness, sinks: list) -> None:
    (sink, _), _ = sinks
    sink.push(Reply(429, headers={"retry-after": "1"}))
    harness.send([make_event(1)], [harness.settings.delivery.downstream_urls[0]])
    first, second = sink.wait_for(2)
    assert second.at - first.at >= 0.95
    assert second.status == 200


def test_400_401_and_302_are_retried_until_the_consumer_accepts_in_order(harness: Harness, sinks: list) -> None:
    """Standard Webhooks: every non-2xx but 410 is a failure to retry; a redirect is not followed."""
    (sink, _), _ = sinks
    url = harness.settings.delivery.downstream_urls[0]
    sink.push(Reply(400, body=b"missing field"), Reply(401), Reply(302, headers={"location": "http://127.0.0.1:9/"}))
    events = [make_event(1), make_event(2)]
    harness.send(events, [url])
    accepted = sink.wait_for(2, accepted=True)
    assert [r.status for r in sink.requests] == [400, 401, 302, 200, 200]
    assert [r.body for r in accepted] == events
    assert all(spec_verify(TEST_DOWNSTREAM_SECRET, r.headers, r.body) for r in accepted)
    assert deadletters.list_all(harness.connection) == []
    assert harness.metric("plugwatch_downstream_attempts_total", outcome="retry") == 3
    assert harness.metric("plugwatch_downstream_attempts_total", outcome="dead_letter") == 0


def test_410_disables_the_url_dead_letters_its_events_and_others_keep_receiving(
    harness: Harness, sinks: list
) -> None:
    (gone, _), (healthy, _) = sinks
    gone_url = harness.settings.delivery.downstream_urls[0]
    gone.set_default(Reply(410))
    harness.send([make_event(n) for n in range(3)])
    healthy.wait_for(3)
    wait_until(lambda: len(deadletters.list_all(harness.connection, gone_url)) == 3)
    assert len(gone.requests) == 1  # one 410, then no more attempts
    assert state.read_state(harness.connection, gone_url).disabled
    assert harness.metric("plugwatch_downstream_attempts_total", outcome="disabled") == 1

    harness.send([make_event(3)])
    healthy.wait_for(4)
    wait_until(lambda: len(deadletters.list_all(harness.connection, gone_url)) == 4)
    assert len(gone.requests) == 1
    assert harness.backlog(gone_url) == 0
    assert harness.metric("plugwatch_downstream_disabled_urls") == 1
    assert harness.metric("plugwatch_dead_letters") == 4


def test_a_malformed_url_that_got_past_settings_is_disabled_and_dead_lettered_not_a_crash_loop(
    redis_url: str, sinks: list
) -> None:
    """`http://h:abc/hook` raised (httpx's) InvalidURL out of the drainer on every attempt, ~4 times a second,
    never dead-lettered, shown "ok".  Settings refuses it now; built directly, it still must not loop."""
    (healthy, server), _ = sinks
    bad = "http://h:abc/hook"
    running = start(redis_url, (bad, server.url + "/hook"))
    try:
        running.send([make_event(n) for n in range(3)])
        healthy.wait_for(3)
        wait_until(lambda: len(deadletters.list_all(running.connection, bad)) == 3)
        wait_until(lambda: running.context.threads.active() == [])
        current = state.read_state(running.connection, bad)
        assert current.disabled
        assert "InvalidURL: port can't be converted to integer (unusable URL)" in current.disabled_reason
        assert running.metric("plugwatch_downstream_attempts_total", outcome="disabled") == 1
        assert running.backlog(bad) == 0
        [letter, *_] = deadletters.list_all(running.connection, bad)
        assert "InvalidURL" in letter.reason
        for _ in range(3):  # the pump finds nothing to re-arm: no drain, no attempt, no crash
            running.context.pump()
        assert running.context.threads.active() == []
        assert running.metric("plugwatch_downstream_attempts_total", outcome="disabled") == 1
        assert running.metric("plugwatch_downstream_disabled_urls") == 1
        snapshot = read_status(running.connection, running.settings.delivery.downstream_urls, time.time())
        assert [url.health.value for url in snapshot.downstream] == ["disabled", "ok"]
    finally:
        running.context.close()
        install(None)


def test_a_sink_that_is_down_gets_every_event_once_it_is_back(harness: Harness, sinks: list) -> None:
    (sink, server), _ = sinks
    url = harness.settings.delivery.downstream_urls[0]
    server.down()
    events = [make_event(n) for n in range(5)]
    harness.send(events, [url])
    wait_until(lambda: state.read_state(harness.connection, url).attempts >= 2, timeout=10)
    server.up()
    accepted = sink.wait_for(5, accepted=True, timeout=15)
    assert [r.body for r in accepted] == events
    assert len({r.webhook_id for r in sink.requests}) == 5


def test_events_failing_past_the_max_age_are_dead_lettered(redis_url: str, sinks: list) -> None:
    (sink, server), _ = sinks
    sink.set_default(Reply(503))
    url = server.url + "/hook"
    running = start(redis_url, (url,), PLUGWATCH_DELIVERY_MAX_AGE_SECONDS="1")
    try:
        running.send([make_event(1), make_event(2)])
        wait_until(lambda: len(deadletters.list_all(running.connection)) == 2, timeout=10)
        first, second = deadletters.list_all(running.connection)
        assert first.event_id == "evt_veh-1_1"
        assert first.reason.startswith("gave up after")
        assert "HTTP 503" in first.reason
        assert second.reason.startswith("expired")
        assert running.backlog(url) == 0
    finally:
        running.context.close()
        install(None)


def test_with_partitions_an_event_the_url_always_refuses_is_dead_lettered_while_its_other_partitions_succeed(
    redis_url: str, sinks: list
) -> None:
    """A URL's outboxes share its breaker, but each keeps its own head's attempts and age: partition 2's
    successes must not restart the retry window of partition 3's event (it would be retried for ever, and
    partition 3's outbox would wait behind it)."""
    from plugwatch.outboxes import Outbox
    from plugwatch.partitions import check_count, layout

    (sink, server), _ = sinks
    url = server.url + "/hook"
    connection = redis.Redis.from_url(redis_url)
    check_count(connection, 4)
    running = start(redis_url, (url,), PLUGWATCH_PARTITIONS="4", PLUGWATCH_DELIVERY_MAX_AGE_SECONDS="1.5")
    good, bad = Outbox(url, layout(2, 4)), Outbox(url, layout(3, 4))
    poison = make_event(1, vehicle="veh-3")
    sink.refuse("evt_veh-3_1", Reply(500))
    try:
        connection.xadd(bad.stream, {"event": poison})
        running.context.threads.request(bad)
        given_up_at = None
        for number in range(1, 33):  # a success in partition 2 every 0.25 s, for 8 s
            connection.xadd(good.stream, {"event": make_event(number, vehicle="veh-2")})
            running.context.threads.request(good)
            time.sleep(0.25)
            if given_up_at is None and deadletters.list_all(connection):
                given_up_at = number
        assert given_up_at is not None, "the refused event was never dead-lettered while the others succeeded"
        assert given_up_at < 28, f"dead-lettered only after {given_up_at * 0.25:.1f} s, as the successes ended"
        [letter] = deadletters.list_all(connection)
        assert letter.event_id == "evt_veh-3_1"
        assert letter.reason.startswith("gave up after")
        sink.wait_for(32, timeout=10, accepted=True)
        assert [r.webhook_id for r in sink.accepted()] == [f"evt_veh-2_{n}" for n in range(1, 33)]
        assert state.read_state(connection, url, 3).head == ""
    finally:
        running.context.close()
        install(None)
        connection.close()


def test_a_slow_sink_does_not_delay_a_healthy_one(harness: Harness, sinks: list) -> None:
    (slow, _), (healthy, _) = sinks
    slow.set_default(Reply(200, delay=10))
    harness.send([make_event(0)])
    slow.wait_for(1)
    sent_at = time.time()
    harness.send([make_event(n) for n in range(1, 4)])
    received = healthy.wait_for(4, timeout=5)
    assert max(r.at for r in received) - sent_at < 1.0
    assert orjson.loads(received[-1].body)["sequence"] == 4  # make_event(3)
    assert len(slow.requests) == 1  # still answering the first one


def test_a_reply_slower_than_the_read_timeout_is_retried_at_least_once(harness: Harness, sinks: list) -> None:
    """The documented duplicate: the sink got the event but answered after the 2 s read timeout."""
    (sink, _), _ = sinks
    sink.push(Reply(200, delay=3))
    harness.send([make_event(1), make_event(2)], [harness.settings.delivery.downstream_urls[0]])
    received = sink.wait_for(3, timeout=15)
    assert [r.webhook_id for r in received] == ["evt_veh-1_1", "evt_veh-1_1", "evt_veh-1_2"]
    assert harness.metric("plugwatch_downstream_attempts_total", outcome="retry") == 1


def test_a_sink_slower_than_the_read_timeout_gets_each_event_at_most_the_bound_and_in_order(
    redis_url: str, sinks: list
) -> None:
    """A sink answering 200 after 1.2 s, base read timeout 0.5 s: the head event's time-outs raise the URL's
    timeout (0.5 -> 1 -> 2 s) instead of hammering it with the same event; the rest arrive once each."""
    (sink, server), _ = sinks
    url = server.url + "/hook"
    sink.set_default(Reply(200, delay=1.2))
    running = start(redis_url, (url,), PLUGWATCH_DELIVERY_READ_TIMEOUT_SECONDS="0.5",
                    PLUGWATCH_DELIVERY_READ_TIMEOUT_MAX_SECONDS="4", PLUGWATCH_DELIVERY_SLOW_RESET_SECONDS="1")
    try:
        events = [make_event(n) for n in range(4)]
        running.send(events)
        wait_until(lambda: running.backlog(url) == 0, timeout=30, message="the slow sink did not get every event")
        ids = [r.webhook_id for r in sink.requests]
        bound = attempts_bound(0.5, 4)
        assert bound == 4
        assert max(ids.count(event_id) for event_id in ids) <= bound, ids
        assert len(ids) - len(events) <= bound - 1, ids
        assert list(dict.fromkeys(ids)) == [f"evt_veh-1_{n}" for n in range(4)], ids  # in order
        assert ids == sorted(ids), "a duplicate only ever repeats the head event"
        slow = state.read_state(running.connection, url)
        assert slow.read_timeout >= 2.0
        assert running.metric("plugwatch_downstream_slow_urls") == 1
        assert running.metric("plugwatch_downstream_attempts_total", outcome="retry") == len(ids) - len(events)
        (shown,) = read_status(running.connection, (url,), time.time()).downstream
        assert (shown.health.value, shown.read_timeout_seconds) == ("slow", slow.read_timeout)

        sink.set_default(Reply(200))  # the sink is fast again: after 1 s of fast answers the base is back
        time.sleep(1.1)
        running.send([make_event(4)])
        wait_until(lambda: not state.read_state(running.connection, url).slow, timeout=10)
        assert running.metric("plugwatch_downstream_slow_urls") == 0
    finally:
        running.context.close()
        install(None)


def test_the_retry_window_starts_at_the_first_attempt_not_when_the_event_was_queued(
    redis_url: str, sinks: list
) -> None:
    """An event that waited longer than max age (say, the workers were down) still gets its retries."""
    (sink, server), _ = sinks
    sink.push(Reply(503), Reply(503))
    url = server.url + "/hook"
    running = start(redis_url, (url,), PLUGWATCH_DELIVERY_MAX_AGE_SECONDS="3")
    try:
        old = int((time.time() - 60) * 1000)
        running.connection.xadd(keys.outbox_stream(url), {"event": make_event(1)}, id=f"{old}-0")
        running.context.threads.request(only(url))
        accepted = sink.wait_for(1, accepted=True, timeout=10)
        assert accepted[0].webhook_id == "evt_veh-1_1"
        assert deadletters.list_all(running.connection) == []
    finally:
        running.context.close()
        install(None)


def test_kick_in_a_worker_process_starts_the_drain_without_waiting_for_rq(harness: Harness, sinks: list) -> None:
    """The queued drain job runs later (after the ingest job that kicked) and finds nothing left to do."""
    (sink, _), _ = sinks
    url = harness.settings.delivery.downstream_urls[0]
    emit(harness.connection, [make_event(1), make_event(2)], [url], kick=harness.context.kick)
    assert len(sink.wait_for(2, timeout=5)) == 2
    [job] = Queue(keys.DELIVERY_QUEUE, connection=harness.connection).get_jobs()
    wait_until(lambda: harness.context.threads.active() == [])
    job.perform()
    wait_until(lambda: harness.context.threads.active() == [])
    assert [r.webhook_id for r in sink.requests] == ["evt_veh-1_1", "evt_veh-1_2"]


def test_pump_in_a_worker_process_starts_what_it_armed_without_waiting_for_rq(
        harness: Harness, sinks: list) -> None:
    """Its RQ job may wait behind a long ingest drain, and meanwhile every kick would find the URL armed."""
    (sink, _), _ = sinks
    url = harness.settings.delivery.downstream_urls[0]
    harness.connection.xadd(keys.outbox_stream(url), {"event": make_event(1)})  # committed, never kicked

    harness.context.pump()

    assert [r.webhook_id for r in sink.wait_for(1, timeout=5)] == ["evt_veh-1_1"]
    assert Queue(keys.DELIVERY_QUEUE, connection=harness.connection).count == 1  # the armed job, left unrun


def test_an_emptied_drainer_delivers_events_committed_during_its_idle_wait_without_a_kick(
        redis_url: str, sinks: list) -> None:
    (sink, server), _ = sinks
    url = server.url + "/hook"
    running = start(redis_url, (url,), PLUGWATCH_DELIVERY_IDLE_WAIT_SECONDS="3")
    try:
        running.send([make_event(1)], [url])
        sink.wait_for(1)
        running.connection.xadd(keys.outbox_stream(url), {"event": make_event(2)})  # committed, never kicked
        assert [r.webhook_id for r in sink.wait_for(2)] == ["evt_veh-1_1", "evt_veh-1_2"]
        assert running.connection.get(keys.downstream_lease_key(url)) is not None  # still waiting for more
        wait_until(lambda: running.context.threads.active() == [], timeout=10)
        assert running.connection.get(keys.downstream_lease_key(url)) is None
        assert running.backlog(url) == 0
    finally:
        running.context.close()
        install(None)


def test_close_hands_over_a_url_still_waiting_on_a_slow_reply(harness: Harness, sinks: list) -> None:
    """At shutdown another worker can take the URL over at once instead of after the lease expires."""
    (slow, _), _ = sinks
    url = harness.settings.delivery.downstream_urls[0]
    slow.set_default(Reply(200, delay=10))
    harness.send([make_event(1)], [url])
    slow.wait_for(1)
    assert harness.connection.get(keys.downstream_lease_key(url)) is not None
    harness.context.close(timeout=0.2)
    assert harness.connection.get(keys.downstream_lease_key(url)) is None
    assert harness.backlog(url) == 1  # not acknowledged: the next drainer sends it again


def test_sixteen_in_flight_keep_each_vehicles_order_and_never_overlap_a_vehicle(harness: Harness, sinks: list) -> None:
    """8 vehicles x 40 events, shuffled together; the sink answers after random 0-30 ms: every vehicle's
    events arrive in `sequence` order, one at a time, while several vehicles' POSTs are in flight together
    (and 16 in flight in plain outbox order would overlap a vehicle's events)."""
    (sink, _), _ = sinks
    url = harness.settings.delivery.downstream_urls[0]
    sink.set_default(Reply(200, jitter=0.03))
    events = interleaved(8, 40)
    harness.send(events, [url])
    wait_until(lambda: harness.backlog(url) == 0, timeout=60, message="the outbox did not drain")
    assert harness.settings.delivery.concurrency == 16
    assert first_arrivals_by_vehicle(r.body for r in sink.requests) == {f"veh-{v}": list(range(1, 41))
                                                                        for v in range(8)}
    assert len(sink.requests) == len(events)  # each once: nothing failed
    assert sink.overlaps == []
    assert 1 < sink.max_in_flight <= 16


def test_a_retried_event_keeps_its_vehicles_order_and_the_others_go_on_after_the_pause(
    harness: Harness, sinks: list
) -> None:
    """veh-3's third event gets a 503 while other vehicles' events are in flight: it is sent again before
    any later event of veh-3, and every event arrives."""
    (sink, _), _ = sinks
    url = harness.settings.delivery.downstream_urls[0]
    sink.set_default(Reply(200, jitter=0.02))
    sink.fail_first("evt_veh-3_2", Reply(503))
    harness.send(interleaved(6, 6), [url])
    wait_until(lambda: harness.backlog(url) == 0, timeout=60, message="the outbox did not drain")
    veh3 = [r for r in sink.requests if r.event["vehicleId"] == "veh-3"]
    assert [(r.event["sequence"], r.status) for r in veh3] == [(1, 200), (2, 200), (3, 503), (3, 200), (4, 200),
                                                               (5, 200), (6, 200)]
    accepted = first_arrivals_by_vehicle(r.body for r in sink.accepted())
    assert accepted == {f"veh-{v}": list(range(1, 7)) for v in range(6)}
    assert sink.overlaps == []
    assert harness.metric("plugwatch_downstream_attempts_total", outcome="retry") >= 1
    assert not state.read_state(harness.connection, url).failing(time.time())


def test_events_without_a_vehicle_keep_their_users_order(harness: Harness, sinks: list) -> None:
    (sink, _), _ = sinks
    url = harness.settings.delivery.downstream_urls[0]
    sink.set_default(Reply(200, jitter=0.02))
    failed = {"actionId": "act-1", "kind": "START", "targetType": "charger", "targetId": "chg-1", "state": "FAILED",
              "failureReason": None, "consecutiveFailures": None}  # a charger's action, no vehicle paired
    events = [orjson.dumps({**orjson.loads(make_event(n, vehicle=f"v{n}")), "type": "control.failed", "data": failed,
                            "vehicleId": None, "sequence": None, "userId": f"user-{n % 3}", "id": f"evt_{n}"})
              for n in range(60)]
    harness.send(events, [url])
    wait_until(lambda: harness.backlog(url) == 0, timeout=60, message="the outbox did not drain")
    for user in ("user-0", "user-1", "user-2"):
        numbers = [int(r.event["id"].removeprefix("evt_")) for r in sink.requests if r.event["userId"] == user]
        assert numbers == sorted(numbers)
        assert len(numbers) == 20
