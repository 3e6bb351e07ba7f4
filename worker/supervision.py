"""Keep one worker process working through Redis outages, and make SIGTERM end it within its grace.

RQ 3.0's `Worker.work()` returns on any error it did not expect ("found an unhandled exception, quitting",
"Redis connection timeout, quitting"), e.g. a Redis restart or an OOM answer outside its dequeue loop; its
constructor and `register_birth` talk to Redis too. `supervise` runs a fresh RQ worker again after each such
return, with a bounded exponential backoff, in the same process (the drainer threads, the pump and the
metrics endpoint live on). Each RQ worker registers with a short TTL (`PLUGWATCH_WORKER_TTL_SECONDS`), so a
registration its teardown could not remove (Redis was down) expires by itself.

SIGTERM (and SIGINT): the first one asks for RQ's warm shutdown (the running job finishes: a drain job
within its budget) and starts a watchdog; a worker that has not exited `PLUGWATCH_WORKER_SHUTDOWN_GRACE_SECONDS`
later (its Redis calls stuck behind a blackhole, say) logs `worker.shutdown_forced`, stops RQ's scheduler
process and exits at once with status 1. That loses nothing: whatever it held is re-claimed like after a
SIGKILL. RQ installs its own handlers inside `work()`; `SupervisedWorker` wraps them, and between runs the
supervisor's own handler stands in.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import structlog
from rq import SimpleWorker

log = structlog.get_logger("worker")

BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 10.0


class Shutdown:
    """The process's shutdown request: set by the first SIGTERM/SIGINT, enforced by a watchdog after `grace`."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.requested = threading.Event()
        self.on_forced: Callable[[], None] = lambda: None  # e.g. stop the running RQ worker's scheduler

    def request(self) -> None:
        if self.requested.is_set():
            return
        self.requested.set()
        log.info("worker.shutdown_requested", grace_seconds=self.grace)
        threading.Thread(target=self._watch, name="shutdown-watchdog", daemon=True).start()

    def _watch(self) -> None:
        time.sleep(self.grace)
        log.error("worker.shutdown_forced", grace_seconds=self.grace,
                  hint="the worker did not stop in time (Redis unreachable?); what it held is re-claimed")
        with contextlib.suppress(Exception):
            self.on_forced()
        os._exit(1)

    def install(self) -> None:
        """The handler while no RQ worker runs (start-up, the backoff between runs)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._between_runs)

    def _between_runs(self, _signum: int, _frame: FrameType | None) -> None:
        self.request()


class SupervisedWorker(SimpleWorker):
    """RQ's SimpleWorker whose SIGTERM/SIGINT also start the process's shutdown watchdog."""

    shutdown: Shutdown | None = None

    def _install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop_requested_by_signal)

    def _stop_requested_by_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.shutdown is not None:
            self.shutdown.request()
        self.request_stop(signum, frame)  # type: ignore[no-untyped-call]

    def stop_scheduler_process(self) -> None:
        process = getattr(self.scheduler, "_process", None) if self.scheduler else None
        if process is not None and process.pid:
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGTERM)


def backoff(failures: int) -> float:
    return float(min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, failures - 1)))


def supervise(make_worker: Callable[[], SupervisedWorker], shutdown: Shutdown, *, burst: bool,
              work: Callable[[SupervisedWorker], Any] | None = None) -> None:
    """Run RQ workers made by `make_worker` until a shutdown is requested (or, with `burst`, one run ends
    without an error); after each unexpected end: log, back off, run a new one."""
    run = work or (lambda worker: worker.work(burst=burst, with_scheduler=True))
    failures = 0
    while not shutdown.requested.is_set():
        shutdown.install()
        started = time.monotonic()
        try:
            worker = make_worker()
            worker.shutdown = shutdown
            shutdown.on_forced = worker.stop_scheduler_process
            run(worker)
            if burst:
                return
            error = "RQ's work loop ended"
        except Exception as exc:  # Redis down or refusing writes at registration, ...
            error = repr(exc)
        if shutdown.requested.is_set():
            return
        failures = 1 if time.monotonic() - started > BACKOFF_MAX_SECONDS else failures + 1
        delay = backoff(failures)
        log.warning("worker.restarting", error=error, failures=failures, delay=delay,
                    hint="Redis unreachable or refusing writes? the worker resumes by itself when it answers")
        shutdown.requested.wait(delay)
