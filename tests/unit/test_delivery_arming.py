"""plugwatch.delivery_arming and worker.delivery.lease, against fakeredis and a real redis-server."""

from __future__ import annotations

import time

import pytest
import redis
from rq import Queue

from plugwatch import keys
from plugwatch import url_state as state
from plugwatch.delivery_arming import kick, rearm
from plugwatch.outboxes import of_urls, only
from plugwatch.settings import DeliverySettings, Settings
from tests.support.servers import free_port
from worker.delivery.lease import Lease

URL_A = "http://a.example/hook"
URL_B = "http://b.example/hook"


@pytest.fixture(params=["fake", "real"])
def connection(request: pytest.FixtureRequest) -> redis.Redis:
    client: redis.Redis = request.getfixturevalue("fake_redis" if request.param == "fake" else "real_redis")
    return client


@pytest.fixture
def settings() -> Settings:
    return Settings(delivery=DeliverySettings(downstream_urls=(URL_A, URL_B), downstream_key=b"k" * 32))


def drain_jobs(connection: redis.Redis) -> list[tuple[str, ...]]:
    queue = Queue(keys.DELIVERY_QUEUE, connection=connection)
    return [(job.func_name, *job.args) for job in queue.get_jobs()]


def add_event(connection: redis.Redis, url: str) -> None:
    connection.xadd(keys.outbox_stream(url), {"event": b'{"id": "evt_1"}'})


def test_kick_enqueues_one_drain_job_per_url(connection: redis.Redis, settings: Settings) -> None:
    kick(connection, connection, [only(URL_A), only(URL_B), only(URL_A)])
    assert sorted(drain_jobs(connection)) == [(keys.DRAIN_OUTBOX_JOB, URL_A), (keys.DRAIN_OUTBOX_JOB, URL_B)]


def test_kick_while_a_drain_is_queued_or_running_enqueues_nothing(
    connection: redis.Redis, settings: Settings
) -> None:
    kick(connection, connection, [only(URL_A)])
    kick(connection, connection, [only(URL_A)])
    Lease(connection, only(URL_B), ttl_ms=10_000).claim()  # a running drainer holds B
    kick(connection, connection, [only(URL_B)])
    assert drain_jobs(connection) == [(keys.DRAIN_OUTBOX_JOB, URL_A)]


def test_kick_skips_a_paused_url(connection: redis.Redis, settings: Settings) -> None:
    state.record_failure(connection, URL_A, head="1-0", attempts=1, error="HTTP 500", paused_until=time.time() + 60)
    kick(connection, connection, [only(URL_A), only(URL_B)])
    assert drain_jobs(connection) == [(keys.DRAIN_OUTBOX_JOB, URL_B)]


def test_pump_rearms_a_url_with_backlog_and_no_drain(connection: redis.Redis, settings: Settings) -> None:
    add_event(connection, URL_A)
    rearm(connection, connection, of_urls(settings.delivery.downstream_urls, 1))
    rearm(connection, connection, of_urls(settings.delivery.downstream_urls, 1))
    assert drain_jobs(connection) == [(keys.DRAIN_OUTBOX_JOB, URL_A)]


def test_pump_resumes_a_paused_url_only_once_its_pause_is_over(
    connection: redis.Redis, settings: Settings
) -> None:
    add_event(connection, URL_A)
    state.record_failure(connection, URL_A, head="1-0", attempts=1, error="HTTP 500", paused_until=time.time() + 60)
    rearm(connection, connection, of_urls(settings.delivery.downstream_urls, 1))
    assert drain_jobs(connection) == []
    state.record_failure(connection, URL_A, head="1-0", attempts=1, error="HTTP 500", paused_until=time.time() - 1)
    rearm(connection, connection, of_urls(settings.delivery.downstream_urls, 1))
    assert drain_jobs(connection) == [(keys.DRAIN_OUTBOX_JOB, URL_A)]


def test_pump_ignores_urls_that_are_not_configured(connection: redis.Redis, settings: Settings) -> None:
    add_event(connection, "http://gone.example/hook")
    rearm(connection, connection, of_urls(settings.delivery.downstream_urls, 1))
    assert drain_jobs(connection) == []


def test_a_drainer_claims_a_queued_lease_but_not_a_live_drainers(connection: redis.Redis) -> None:
    connection.set(keys.downstream_lease_key(URL_A), "queued")
    first, second = Lease(connection, only(URL_A), ttl_ms=10_000), Lease(connection, only(URL_A), ttl_ms=10_000)
    assert first.claim()
    assert not second.claim()
    assert first.refresh(force=True)
    assert not second.refresh(force=True)
    second.release()  # not its lease: nothing happens
    assert connection.get(keys.downstream_lease_key(URL_A)) == first.token.encode()
    first.release()
    assert connection.get(keys.downstream_lease_key(URL_A)) is None


def test_an_expired_lease_can_be_claimed_and_the_old_holder_notices(connection: redis.Redis) -> None:
    old = Lease(connection, only(URL_A), ttl_ms=10_000)
    assert old.claim()
    connection.delete(keys.downstream_lease_key(URL_A))  # as if it expired
    new = Lease(connection, only(URL_A), ttl_ms=10_000)
    assert new.claim()
    assert not old.refresh(force=True)
    assert not old.reacquire()


def test_refresh_skips_the_round_trip_while_the_lease_is_fresh(connection: redis.Redis) -> None:
    lease = Lease(connection, only(URL_A), ttl_ms=60_000)
    assert lease.claim()
    connection.pexpire(keys.downstream_lease_key(URL_A), 1000)
    assert lease.refresh()
    assert connection.pttl(keys.downstream_lease_key(URL_A)) <= 1000
    assert lease.refresh(force=True)
    assert connection.pttl(keys.downstream_lease_key(URL_A)) > 1000


def test_refresh_keeps_the_lease_longer_than_an_attempt(connection: redis.Redis) -> None:
    """Skipping a refresh must never leave less lease than one attempt may take (else a second drainer
    could start mid-attempt); while plenty is left, no round trip is spent."""
    lease = Lease(connection, only(URL_A), ttl_ms=10_000, must_outlive_ms=9_000)
    assert lease.claim()
    key = keys.downstream_lease_key(URL_A)
    connection.pexpire(key, 9_500)  # as if 0.5 s had passed: still more than an attempt left
    assert lease.refresh()
    assert connection.pttl(key) <= 9_500
    lease._renewed_at -= 1.0  # 1 s since the renewal: less than an attempt would be left
    connection.pexpire(key, 9_000)
    assert lease.refresh()
    assert connection.pttl(key) > 9_500


def test_an_enqueue_on_a_down_rq_redis_releases_the_queued_leases_so_the_next_pump_rearms(
        connection: redis.Redis, settings: Settings) -> None:
    down = redis.Redis(port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2)
    add_event(connection, URL_A)
    add_event(connection, URL_B)
    connection.set(keys.downstream_lease_key(URL_B), b"a-drainers-token")  # B is being drained: not ours
    with pytest.raises(redis.ConnectionError):
        kick(connection, down, [only(URL_A), only(URL_B)])
    assert not connection.exists(keys.downstream_lease_key(URL_A))  # released, not left for ARM_TTL_MS
    assert connection.get(keys.downstream_lease_key(URL_B)) == b"a-drainers-token"  # untouched
    connection.delete(keys.downstream_lease_key(URL_B))
    rearmed = rearm(connection, connection, of_urls(settings.delivery.downstream_urls, 1))
    assert sorted(box.url for box in rearmed) == [URL_A, URL_B]
    assert sorted(drain_jobs(connection)) == [(keys.DRAIN_OUTBOX_JOB, URL_A), (keys.DRAIN_OUTBOX_JOB, URL_B)]
