"""What the worker process calls into the Enode area: one object, built once in `bootstrap`.

    hooks = build_hooks(settings, connection, store, registry, deliver=...)   # in worker.bootstrap
    hooks.after_batch(result)                                      # in worker.ingest.drain, after a batch commit
    hooks.pump()                                                   # in the pump thread, every tick

`after_batch` looks up chargers vehicles report but plugwatch has never seen (`lookup`; off without API
credentials) and returns the store's result for what that emitted (for the worker's metrics), or None.
`pump` checks whether to suggest a reconcile (`suggest`; works without credentials: it only reads the
heartbeat).  Neither raises: the batch is already committed, and the pump must keep running.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
import structlog
from prometheus_client import CollectorRegistry

from plugwatch.partitions import layout
from plugwatch.settings import Settings
from worker.enode.lookup import ChargerLookup
from worker.enode.observe import Deliver
from worker.enode.suggest import ReconcileAdvisor, Thresholds
from worker.ingest.store import BatchResult, Store

log = structlog.get_logger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class EnodeHooks:
    lookup: ChargerLookup | None
    advisor: ReconcileAdvisor
    now: Callable[[], datetime] = _utc_now

    def after_batch(self, committed: BatchResult) -> BatchResult | None:
        if self.lookup is None or not committed.states:
            return None
        try:
            return self.lookup.after_batch(committed, self.now())
        except Exception:  # a look-up is an optimisation: never fail the committed batch's job for it
            log.exception("enode.lookup_crashed")
            return None

    def pump(self) -> None:
        try:
            self.advisor.check()
        except Exception:  # the pump thread must survive (e.g. Redis briefly unavailable)
            log.exception("enode.reconcile_check_failed")

    def close(self) -> None:
        if self.lookup is not None:
            self.lookup.close()


def build_hooks(settings: Settings, connection: redis.Redis, store: Store, registry: CollectorRegistry, *,
                deliver: Deliver, thresholds: Thresholds | None = None) -> EnodeHooks:
    """No I/O: the look-up's HTTP client connects on first use. `deliver` arms delivery of what a look-up
    emitted."""
    return EnodeHooks(lookup=ChargerLookup.from_settings(settings, connection, store, deliver),
                      advisor=ReconcileAdvisor(connection, registry, thresholds or Thresholds(),
                                               heartbeat=layout(0, settings.process.partitions).heartbeat))
