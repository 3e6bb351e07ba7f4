"""worker.delivery.threads: one drainer thread per URL; a request during a drain runs it once more."""

from __future__ import annotations

import threading
import time

import pytest
import redis
import structlog

from plugwatch.outboxes import Outbox, only
from tests.support.servers import wait_until
from worker.delivery.threads import DrainerThreads

A, B = only("http://a"), only("http://b")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Outbox] = []
        self.release = threading.Event()
        self.fail_first = False
        self.failure: Exception = RuntimeError("boom")

    def drain(self, box: Outbox, stop: threading.Event) -> None:
        self.calls.append(box)
        if self.fail_first and len(self.calls) == 1:
            raise self.failure
        self.release.wait(5)


def test_each_url_gets_its_own_thread() -> None:
    recorder = Recorder()
    threads = DrainerThreads(recorder.drain)
    threads.request(A)
    threads.request(B)
    wait_until(lambda: sorted(recorder.calls) == [A, B], timeout=5)
    assert sorted(threads.active()) == [A, B]
    recorder.release.set()
    wait_until(lambda: threads.active() == [], timeout=5)


def test_a_request_during_a_drain_runs_it_once_more_not_concurrently() -> None:
    recorder = Recorder()
    threads = DrainerThreads(recorder.drain)
    threads.request(A)
    wait_until(lambda: recorder.calls == [A], timeout=5)
    threads.request(A)
    threads.request(A)
    assert threads.active() == [A]
    recorder.release.set()
    wait_until(lambda: threads.active() == [], timeout=5)
    assert recorder.calls == [A, A]


def test_a_crashing_drain_does_not_kill_the_thread_for_later_requests() -> None:
    recorder = Recorder()
    recorder.fail_first = True
    recorder.release.set()
    threads = DrainerThreads(recorder.drain)
    threads.request(A)
    wait_until(lambda: threads.active() == [], timeout=5)
    threads.request(A)
    wait_until(lambda: len(recorder.calls) == 2, timeout=5)


def test_close_waits_at_most_the_timeout_in_total_and_refuses_new_work() -> None:
    recorder = Recorder()
    threads = DrainerThreads(recorder.drain)
    for url in (A, B, only("http://c")):
        threads.request(url)
    wait_until(lambda: len(recorder.calls) == 3, timeout=5)
    started = time.monotonic()
    threads.close(0.5)
    assert time.monotonic() - started < 2.0
    threads.request("http://d")
    assert "http://d" not in threads.active()
    recorder.release.set()


def test_an_overdue_drainer_is_abandoned_and_replaced_and_the_old_one_leaves_the_new_alone() -> None:
    """A drain stuck past its lease must not keep its URL: the next request starts a new thread beside it;
    when the stuck one wakes, it exits without ending the new one's bookkeeping."""
    recorder = Recorder()
    overdue = {A: False}
    threads = DrainerThreads(recorder.drain, overdue=lambda url: overdue[url])
    threads.request(A)
    wait_until(lambda: len(recorder.calls) == 1, timeout=5)
    threads.request(A)
    assert len(recorder.calls) == 1, "a drainer within its lease is not replaced"
    overdue[A] = True
    threads.request(A)
    wait_until(lambda: len(recorder.calls) == 2, timeout=5)  # a second drain runs while the first is stuck
    overdue[A] = False
    recorder.release.set()
    wait_until(lambda: threads.active() == [], timeout=5)


def test_a_stuck_drainers_lease_is_overdue_once_its_ttl_passed_unrenewed() -> None:
    import fakeredis

    from worker.delivery.lease import Lease

    lease = Lease(fakeredis.FakeRedis(), A, ttl_ms=50)
    assert not lease.overdue(), "a lease never claimed (or released) is not overdue"
    assert lease.claim()
    assert not lease.overdue()
    time.sleep(0.1)
    assert lease.overdue()
    lease.release()
    assert not lease.overdue()


@pytest.mark.parametrize(("failure", "event", "traceback"), [
    (redis.ConnectionError("Connection refused"), "delivery.drain_redis_unavailable", False),
    (redis.TimeoutError("Timeout reading from socket"), "delivery.drain_redis_unavailable", False),
    (RuntimeError("boom"), "delivery.drain_crashed", True),
])
def test_redis_going_away_under_a_drain_is_one_warning_line_and_a_bug_keeps_its_traceback(
    failure: Exception, event: str, traceback: bool
) -> None:
    recorder = Recorder()
    recorder.fail_first, recorder.failure = True, failure
    recorder.release.set()
    with structlog.testing.capture_logs() as logged:
        threads = DrainerThreads(recorder.drain)
        threads.request(A)
        wait_until(lambda: threads.active() == [], timeout=5)
    [entry] = [entry for entry in logged if entry["event"].startswith("delivery.drain")]
    assert entry["event"] == event
    assert entry["log_level"] == ("error" if traceback else "warning")
    assert entry.get("exc_info", False) is traceback
