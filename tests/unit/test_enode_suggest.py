"""When a reconcile is suggested: heartbeats stopped, or pendingEvents stayed high; latched until reconciled."""

from __future__ import annotations

import pytest
import redis
from prometheus_client import CollectorRegistry

from plugwatch import keys
from worker.enode.suggest import Heartbeat, ReconcileAdvisor, Thresholds, advise

T = Thresholds(heartbeat_gap_seconds=600, pending_events=100, pending_seconds=300)
NOW = 1_000_000.0


def test_no_heartbeat_ever_suggests_nothing() -> None:
    assert advise(None, None, NOW, T).reason is None


def test_a_recent_heartbeat_with_few_pending_events_suggests_nothing() -> None:
    advice = advise(Heartbeat(NOW - 60, 3), None, NOW, T)
    assert (advice.reason, advice.high_since) == (None, None)


def test_heartbeats_stopped_longer_than_the_gap_suggest_a_reconcile() -> None:
    assert advise(Heartbeat(NOW - 599, 0), None, NOW, T).reason is None
    assert advise(Heartbeat(NOW - 601, 0), None, NOW, T).reason == "no Enode heartbeat for 601 s"


def test_pending_events_high_only_briefly_suggest_nothing_yet() -> None:
    advice = advise(Heartbeat(NOW - 10, 500), None, NOW, T)
    assert advice.reason is None
    assert advice.high_since == NOW - 10


def test_pending_events_high_for_long_suggest_a_reconcile() -> None:
    advice = advise(Heartbeat(NOW - 10, 500), NOW - 400, NOW, T)
    assert advice.reason == "Enode pendingEvents >= 100 for 400 s"


def test_pending_events_dropping_resets_the_clock() -> None:
    assert advise(Heartbeat(NOW - 10, 99), NOW - 400, NOW, T).high_since is None


def gauge(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("plugwatch_reconcile_suggested")


@pytest.fixture
def clock() -> list[float]:
    return [NOW]


@pytest.fixture
def advisor(fake_redis: redis.Redis, clock: list[float]) -> tuple[ReconcileAdvisor, CollectorRegistry]:
    registry = CollectorRegistry()
    return ReconcileAdvisor(fake_redis, registry, T, clock=lambda: clock[0]), registry


def test_a_suggestion_is_latched_counted_once_and_cleared_only_by_a_reconcile(
        fake_redis: redis.Redis, clock: list[float], advisor: tuple[ReconcileAdvisor, CollectorRegistry]) -> None:
    check, registry = advisor
    fake_redis.hset(keys.HEARTBEAT, mapping={"at": NOW - 700, "pending_events": 0})
    check.check()
    check.check()
    assert gauge(registry) == 1
    assert registry.get_sample_value("plugwatch_reconcile_suggestions_total") == 1
    assert fake_redis.hget(keys.RECONCILE_SUGGESTED, "reason") == b"no Enode heartbeat for 700 s"
    fake_redis.hset(keys.HEARTBEAT, "at", NOW)  # heartbeats resume: the missed events are still missed
    check.check()
    assert gauge(registry) == 1
    fake_redis.delete(keys.RECONCILE_SUGGESTED)  # what a full `plugwatch enode reconcile` does
    check.check()
    assert gauge(registry) == 0


def test_pending_events_high_across_checks_suggest_a_reconcile(
        fake_redis: redis.Redis, clock: list[float], advisor: tuple[ReconcileAdvisor, CollectorRegistry]) -> None:
    check, registry = advisor
    for minute in range(7):
        clock[0] = NOW + 60 * minute
        fake_redis.hset(keys.HEARTBEAT, mapping={"at": clock[0], "pending_events": 5000})
        check.check()
        assert gauge(registry) == (1 if minute >= 5 else 0)


def test_a_fractional_pending_events_is_read(
        fake_redis: redis.Redis, clock: list[float], advisor: tuple[ReconcileAdvisor, CollectorRegistry]) -> None:
    """Enode types pendingEvents as a JSON number: 100.5 is above the threshold of 100, 99.5 below it."""
    check, registry = advisor
    for minute, pending in enumerate(["100.5"] * 6 + ["99.5"]):
        clock[0] = NOW + 60 * minute
        fake_redis.hset(keys.HEARTBEAT, mapping={"at": clock[0], "pending_events": pending})
        advice = check.check()
        assert advice.high_since == (None if pending == "99.5" else NOW)
    assert gauge(registry) == 1


def test_an_unreadable_heartbeat_suggests_nothing(
        fake_redis: redis.Redis, advisor: tuple[ReconcileAdvisor, CollectorRegistry]) -> None:
    check, registry = advisor
    fake_redis.hset(keys.HEARTBEAT, mapping={"at": "yesterday", "pending_events": "many"})
    assert check.check().reason is None
    assert gauge(registry) == 0
