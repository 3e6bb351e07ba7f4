"""Drainer threads: one per outbox with work (a URL's, in one partition: `plugwatch.outboxes`), in each worker
process, so a slow or dead URL holds only its own threads while the RQ worker thread stays free for ingest and
the other URLs' drain jobs.

`request(box)` is what the `drain_outbox` RQ job calls: it starts the outbox's thread, or, if that thread is
still running, tells it to run the drain once more before it exits (the job may have been armed after the
running drain released the lease).  All threads share the process's httpx.Client (thread-safe).

A thread whose drain has outlived its lease (`overdue(box)`: stuck in a call that did not end in time) is
abandoned: the next request for its outbox starts a new thread beside it (`delivery.drainer_abandoned`).  The
abandoned one cannot act when it wakes: its lease is gone, and the drain checks the lease before each
attempt; it then exits without touching the new thread's bookkeeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis
import structlog

from plugwatch.outboxes import Outbox

log = structlog.get_logger(__name__)

DrainFunction = Callable[[Outbox, threading.Event], None]


class DrainerThreads:
    def __init__(self, drain: DrainFunction, overdue: Callable[[Outbox], bool] = lambda _box: False) -> None:
        self._drain = drain
        self._overdue = overdue
        self._lock = threading.Lock()
        self._threads: dict[Outbox, threading.Thread] = {}
        self._requested: set[Outbox] = set()
        self.stop = threading.Event()

    def request(self, box: Outbox) -> None:
        with self._lock:
            if self.stop.is_set():
                return
            self._requested.add(box)
            if box in self._threads:
                if not self._overdue(box):
                    return
                log.error("delivery.drainer_abandoned", outbox=box.name,
                          hint="its drain outlived its lease (stuck on Redis or the URL); a new one takes over")
            thread = threading.Thread(target=self._run, args=(box,), daemon=True,
                                      name=f"drainer-{box.name}")
            self._threads[box] = thread
        thread.start()

    def _run(self, box: Outbox) -> None:
        with structlog.contextvars.bound_contextvars(url_key=box.name):
            while True:
                with self._lock:
                    if self._threads.get(box) is not threading.current_thread():
                        return  # abandoned: a newer thread serves the URL
                    if box not in self._requested or self.stop.is_set():
                        del self._threads[box]
                        return
                    self._requested.discard(box)
                try:
                    self._drain(box, self.stop)
                except (redis.ConnectionError, redis.TimeoutError) as error:  # an outage or a failover: expected
                    log.warning("delivery.drain_redis_unavailable", error=repr(error),
                                hint="the lease expires; the pump re-arms the URL once Redis answers")
                except Exception:
                    log.exception("delivery.drain_crashed")  # the lease expires; the pump re-arms the URL

    def active(self) -> list[Outbox]:
        with self._lock:
            return list(self._threads)

    def close(self, timeout: float) -> None:
        """Stop after the current attempts; wait up to `timeout` s for the threads to finish."""
        self.stop.set()
        with self._lock:
            threads = list(self._threads.values())
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
