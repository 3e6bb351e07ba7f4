"""How the webhook logs what it did: a line per delivery off the success path, a summary for the rest.

A delivery answered `accepted`, `duplicate`, `heartbeat` or `test` (thousands a second under load) is counted,
not logged alone: `deliveries.handled` carries the count of each such outcome, `deliveries` (their sum),
`events` and `slowest_ms` since the previous summary; the first at once, then at most one per
`INTERVAL_SECONDS`, and what is left at shutdown (`flush`). Each delivery is in the ingest stream under its
id anyway. Every other outcome (`quarantined`, `unauthorized`, `too_large`, `bad_request`, `unavailable`)
keeps its own `delivery.handled` line with `delivery_id`, `events`, `outcome` and `ms`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

import structlog

from receiver.connections import Schedule
from receiver.metrics import Outcome

log = structlog.get_logger(__name__)

INTERVAL_SECONDS = 10.0
SUMMARISED = frozenset({Outcome.ACCEPTED, Outcome.DUPLICATE, Outcome.HEARTBEAT, Outcome.TEST})


class HandledLog:
    def __init__(self, interval: float = INTERVAL_SECONDS, schedule: Schedule | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._schedule = schedule  # default: the running loop's call_later
        self._clock = clock
        self._counts: dict[str, int] = {}
        self._events = 0
        self._slowest = 0.0
        self._logged_at = -math.inf
        self._scheduled = False

    def handled(self, outcome: Outcome, delivery_id: str, events: int, seconds: float) -> None:
        if outcome not in SUMMARISED:
            log.info("delivery.handled", delivery_id=delivery_id, events=events, outcome=outcome.value,
                     ms=round(seconds * 1000, 2))
            return
        self._counts[outcome.value] = self._counts.get(outcome.value, 0) + 1
        self._events += events
        self._slowest = max(self._slowest, seconds)
        if self._scheduled:
            return
        wait = self._logged_at + self._interval - self._clock()
        if wait <= 0:
            self.flush()
        else:
            self._scheduled = True
            (self._schedule or asyncio.get_running_loop().call_later)(wait, self.flush)

    def flush(self) -> None:
        """Log the summary of what was counted since the last one (nothing if nothing was)."""
        self._scheduled = False
        if not self._counts:
            return
        self._logged_at = self._clock()
        log.info("deliveries.handled", deliveries=sum(self._counts.values()), events=self._events,
                 slowest_ms=round(self._slowest * 1000, 2), **self._counts)
        self._counts, self._events, self._slowest = {}, 0, 0.0
