"""worker.supervision: the RQ work loop is run again after it gives up, until a shutdown is requested."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from worker import supervision
from worker.supervision import Shutdown, supervise


class FakeWorker:
    shutdown: Shutdown | None = None

    def stop_scheduler_process(self) -> None:
        pass


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Short backoffs; and pytest's own SIGTERM/SIGINT handlers back after the test (supervise installs its)."""
    monkeypatch.setattr(supervision, "BACKOFF_BASE_SECONDS", 0.001)
    monkeypatch.setattr(supervision, "BACKOFF_MAX_SECONDS", 0.01)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_work_loop_that_gives_up_or_a_worker_that_cannot_register_is_run_again() -> None:
    shutdown = Shutdown(grace=60)
    runs: list[str] = []
    outcomes: list[Any] = [redis.ConnectionError("restarted"), None, redis.exceptions.OutOfMemoryError("OOM")]

    def make() -> Any:
        if len(runs) == 1:
            runs.append("registration failed")
            raise redis.ConnectionError("refused")
        return FakeWorker()

    def work(_worker: Any) -> None:
        runs.append("work")
        if len(runs) >= 5:
            shutdown.requested.set()  # as SIGTERM does
            return
        outcome = outcomes.pop(0) if outcomes else None
        if outcome is not None:
            raise outcome

    supervise(make, shutdown, burst=False, work=work)
    # a ConnectionError, a failed registration, a loop that just ended, an OOM: each run again, until SIGTERM
    assert runs == ["work", "registration failed", "work", "work", "work"]


def test_a_burst_ends_after_one_clean_run() -> None:
    shutdown = Shutdown(grace=60)
    runs: list[int] = []
    supervise(FakeWorker, shutdown, burst=True, work=lambda _w: runs.append(1))  # type: ignore[arg-type]
    assert runs == [1]


def test_the_backoff_doubles_and_is_bounded() -> None:
    delays = [supervision.backoff(failures) for failures in range(1, 12)]
    assert delays == sorted(delays)
    assert delays[1] == 2 * delays[0]
    assert max(delays) == supervision.BACKOFF_MAX_SECONDS


def test_a_shutdown_request_starts_the_watchdog_once() -> None:
    shutdown = Shutdown(grace=10**7)  # the watchdog never fires here
    before = threading.active_count()
    shutdown.request()
    shutdown.request()
    assert shutdown.requested.is_set()
    assert threading.active_count() == before + 1
