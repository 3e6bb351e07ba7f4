"""Sentinel failover under steady traffic: one primary, one replica, three sentinels (all real redis-server
processes on free ports), the real receiver and two real workers given `REDIS_URL=redis+sentinel://…`.

The primary is SIGKILLed while simulated Enode traffic flows in order, right after its replica lagged for a
second (its replication link held up in a TCP proxy), so writes the primary acknowledged in that second exist
nowhere else. The receiver answers 503 while no primary answers and 200 again once a replica is promoted;
receiver and workers carry on without a restart. The killed server is started again (as an operator or a
supervisor would), and the sentinels make it a replica of the new primary.

- With `PLUGWATCH_ACK_REPLICAS=1` every delivery answered 200 was on the replica before its answer, so the
  emitted events are exactly the undisturbed run's (the simulator's ground truth), and so is the state.
- Without it, the deliveries acknowledged by the primary alone in that second are lost with it; the test
  counts them and the events they would have caused (README *Failover*), and checks what must hold all the
  same: the invariants of what was emitted, and the system carrying on after the failover.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from plugwatch import keys
from simulator.sender import SendReport
from simulator.stories import build_scenario
from simulator.truth import expected_events
from tests.e2e.harness import (
    System,
    assert_invariants,
    comparable_in,
    emitted,
    in_order,
    per_user,
    reference_facts,
    send_in_background,
    stored_facts,
    wait_until_idle,
)
from tests.support.sentinels import SentinelGroup
from tests.support.servers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

USERS = 200
SEED = 11
LAG_SECONDS = 1.0  # how long the replica lags just before the primary dies


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelGroup]:
    with SentinelGroup(tmp_path / "redis").start() as group:
        yield group


def _fail_over(group: SentinelGroup, join: Callable[[], SendReport]) -> tuple[float, float]:
    """Mid-run, the replica lags for a second (SIGSTOP: replication is asynchronous, and this is the window
    it leaves), then the primary is SIGKILLed and the replica resumes; wait for its promotion, then start the
    killed server again."""
    link = group.replicate_through_proxy()
    try:
        time.sleep(2.0)
        assert join.alive(), "the traffic ended before the failover: make the run longer"  # type: ignore[attr-defined]
        link.blackhole()
        lagging_since = time.time()
        time.sleep(LAG_SECONDS)
        victim = group.kill_primary()
        killed_at = time.time()
        link.reset()  # what the replica had not received yet is gone with the primary
    finally:
        link.close()
    wait_until(lambda: group.primary_port() not in (None, victim.port), timeout=30, interval=0.1,
               message="the sentinels promoted no replica")
    victim.start()  # comes back as a primary of nothing; the sentinels turn it into the new primary's replica
    wait_until(group.replica_in_sync, timeout=30, interval=0.2, message="the old primary did not rejoin")
    return lagging_since, killed_at


def _primary(group: SentinelGroup) -> redis.Redis:
    return group.current_primary().client()


def _run(group: SentinelGroup, tmp_path: Path, **env: str) -> tuple[SendReport, int]:
    system = System(group.url, None, tmp_path / "logs", workers=2, **env)
    pids = [process.pid for process in [system.receiver, *system.workers]]
    deliveries = in_order(build_scenario(USERS, seed=SEED))
    # paced (~8 s for the 153 deliveries) so the run outlasts the failover; Enode's retries for a minute
    join = send_in_background(system.url, deliveries, delay=0.05, give_up_after=60.0)
    try:
        lagging_since, killed_at = _fail_over(group, join)
        report = join()
        with _primary(group) as client:
            wait_until_idle(client, timeout=60)
    finally:
        join()
        alive = [process.alive() for process in [system.receiver, *system.workers]]
        system.stop()
    assert all(alive), f"a process died during the failover (receiver, workers): {alive}"
    assert [process.pid for process in [system.receiver, *system.workers]] == pids  # none was restarted
    assert report.ok, report
    assert report.accepted == len(deliveries)
    alone = sum(lagging_since <= at <= killed_at for at in report.accepted_at.values())
    return report, alone  # deliveries answered 200 while only the primary held what it wrote


def test_acknowledged_means_replicated_across_a_failover(sentinels: SentinelGroup, tmp_path: Path) -> None:
    scenario = build_scenario(USERS, seed=SEED)
    truth = expected_events(scenario.events)
    report, _alone = _run(sentinels, tmp_path, PLUGWATCH_ACK_REPLICAS="1")
    assert report.resends > 0, "no delivery was refused during the failover: the test did not exercise it"
    receiver_log = (tmp_path / "logs" / "receiver.log").read_text()
    assert "delivery.store_failed" in receiver_log or "delivery.not_replicated" in receiver_log
    with _primary(sentinels) as client:
        assert client.xlen(keys.QUARANTINE_STREAM) == 0
        got = emitted(client)
        assert_invariants(got)
        assert per_user(map(comparable_in(client), got)) == per_user(truth)
        assert stored_facts(client) == reference_facts(scenario)


def test_without_ack_replicas_a_failover_may_lose_acknowledged_deliveries(
    sentinels: SentinelGroup, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """What the README's *Failover* states: counted here, not assumed. What must hold all the same does."""
    scenario = build_scenario(USERS, seed=SEED)
    truth = expected_events(scenario.events)
    report, alone = _run(sentinels, tmp_path)
    with _primary(sentinels) as client:
        got = emitted(client)
        assert_invariants(got)  # no id twice; per vehicle, sequences increase and at-home alternates
        missing = Counter(map(comparable_in(client), got))
    missing.subtract(Counter(truth))
    lost, extra = -sum(n for n in missing.values() if n < 0), sum(n for n in missing.values() if n > 0)
    record_property("deliveries_acknowledged_by_the_primary_alone", alone)
    record_property("events_lost", lost)
    sys.stderr.write(f"without PLUGWATCH_ACK_REPLICAS: {alone} deliveries answered 200 while the replica lagged; "
                     f"{lost} of {len(truth)} ground-truth events missing after the failover, {extra} emitted that "
                     f"the truth lacks ({report.resends} resends)\n")
    assert alone > 0, "no delivery was answered while the replica lagged: the test did not exercise the loss"
    assert lost > 0, "what the lagging replica lacked was not lost: the failover did not happen as planned"
