"""When to suggest a reconcile: Enode's heartbeats stopped, or its `pendingEvents` stayed high.

    advise(heartbeat, high_since, now, thresholds) -> Advice        pure
    ReconcileAdvisor(connection, registry).check()                  the worker's pump calls this each tick

Heartbeats stopping means webhooks are not arriving (receiver down, webhook disabled after a day of
failures); a high `pendingEvents` for long means Enode is struggling to deliver and may drop events.  Either
way some transitions may be lost, and `plugwatch enode reconcile` recovers them.  A suggestion is latched in
`plugwatch:enode:reconcile:suggested` (so it survives heartbeats resuming and worker restarts) until a full
reconcile clears it; the gauge `plugwatch_reconcile_suggested` is 1 while it stands (alert on it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from plugwatch import keys
from plugwatch.redis_collector import number_or_none

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Thresholds:
    heartbeat_gap_seconds: float = 30 * 60  # no heartbeat for this long
    pending_events: int = 1000  # pendingEvents at or above this ...
    pending_seconds: float = 15 * 60  # ... for this long


@dataclass(frozen=True)
class Heartbeat:
    at: float  # unix seconds the receiver recorded it
    pending_events: float  # a JSON number >= 0 (Enode types it `number`: 0.5 is as valid as 3)


@dataclass(frozen=True)
class Advice:
    reason: str | None  # None: no reconcile needed
    high_since: float | None  # when pendingEvents first reached the threshold in the current run of highs


def advise(heartbeat: Heartbeat | None, high_since: float | None, now: float,
           thresholds: Thresholds = Thresholds()) -> Advice:
    """Pure: whether to suggest a reconcile, given the last heartbeat and when pending events got high."""
    if heartbeat is None:
        return Advice(None, None)  # no heartbeat ever: the webhook may not exist yet, nothing to compare
    if now - heartbeat.at > thresholds.heartbeat_gap_seconds:
        return Advice(f"no Enode heartbeat for {int(now - heartbeat.at)} s", high_since)
    if heartbeat.pending_events < thresholds.pending_events:
        return Advice(None, None)
    high_since = heartbeat.at if high_since is None else high_since
    if now - high_since >= thresholds.pending_seconds:
        return Advice(f"Enode pendingEvents >= {thresholds.pending_events} for {int(now - high_since)} s",
                      high_since)
    return Advice(None, high_since)


class ReconcileAdvisor:
    """Reads the heartbeat hash, latches a suggestion, logs it once, and exports it as a gauge."""

    def __init__(self, connection: redis.Redis, registry: CollectorRegistry,
                 thresholds: Thresholds = Thresholds(), clock: Callable[[], float] = time.time,
                 heartbeat: str = keys.HEARTBEAT) -> None:
        """`heartbeat`: the hash the receiver records heartbeats in (partition 0's: `plugwatch.partitions`)."""
        self._connection = connection
        self._heartbeat_key = heartbeat
        self._thresholds = thresholds
        self._clock = clock
        self._high_since: float | None = None
        self.gauge = Gauge("plugwatch_reconcile_suggested",
                           "1 while a reconcile is suggested (heartbeats stopped or pendingEvents stayed high)",
                           registry=registry)
        self.suggestions = Counter("plugwatch_reconcile_suggestions_total",
                                   "Times a reconcile was newly suggested", registry=registry)

    def check(self) -> Advice:
        now = self._clock()
        advice = advise(self._heartbeat(), self._high_since, now, self._thresholds)
        self._high_since = advice.high_since
        if advice.reason is not None and self._connection.hsetnx(keys.RECONCILE_SUGGESTED, "at", now):
            self._connection.hset(keys.RECONCILE_SUGGESTED, "reason", advice.reason)
            self.suggestions.inc()
            log.warning("enode.reconcile_suggested", reason=advice.reason,
                        command="plugwatch enode reconcile")
        self.gauge.set(1 if self._connection.exists(keys.RECONCILE_SUGGESTED) else 0)
        return advice

    def _heartbeat(self) -> Heartbeat | None:
        at, pending = self._connection.hmget(self._heartbeat_key, ["at", "pending_events"])
        try:
            return Heartbeat(float(at), number_or_none(pending) or 0.0) if at is not None else None
        except ValueError:
            return None
