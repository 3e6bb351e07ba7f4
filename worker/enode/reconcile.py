"""Reconcile: catch up with Enode after webhooks were lost (an outage, a disabled webhook).

`reconcile()` pages through every charger and then every vehicle (of the whole client, or of one user) and
applies each as an observation through the same core and store as webhooks (`observe`).  What plugwatch
already knows is a duplicate and emits nothing; what changed while webhooks were down emits exactly the
missed transitions (each with its deterministic id, so a late webhook for the same change adds nothing).
Chargers go first so that a vehicle's at-home is judged against its charger's current Location.

A full (all users) reconcile records itself in `plugwatch:enode:reconcile:last`, clears the standing
suggestion (`suggest`) and, after Redis lost plugwatch's state, records on the epoch marker that the lost state
was rebuilt (`plugwatch.epoch`: every vehicle's first status was announced).  Devices deleted during the
outage are found by the optional `prune` step.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
import structlog

from plugwatch import epoch, keys
from plugwatch.enode_api.assets import iter_chargers, iter_vehicles
from plugwatch.enode_api.client import EnodeClient
from plugwatch.partitions import Layout
from worker.core import DEFAULT_CONFIG, CoreConfig
from worker.enode.observe import ApplyBatch, Kind, observations

log = structlog.get_logger(__name__)

DEFAULT_BATCH = 200


@dataclass
class ReconcileReport:
    chargers: int = 0
    vehicles: int = 0
    emitted: Counter[str] = field(default_factory=Counter)  # emitted event type -> count
    seen: dict[Kind, set[str]] = field(default_factory=lambda: {"charger": set(), "vehicle": set()})

    def summary(self) -> str:
        events = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.emitted.items())) or "none"
        return (f"reconciled {self.chargers} chargers and {self.vehicles} vehicles; "
                f"{sum(self.emitted.values())} events emitted ({events})")


def reconcile(client: EnodeClient, apply_batch: ApplyBatch, now: datetime, *, user_id: str | None = None,
              batch_size: int = DEFAULT_BATCH, page_size: int | None = None,
              config: CoreConfig = DEFAULT_CONFIG) -> ReconcileReport:
    """Fetch chargers, then vehicles, and apply them in batches of `batch_size` objects."""
    report = ReconcileReport()
    sources: list[tuple[Kind, Callable[..., Iterator[dict[str, Any]]]]] = [
        ("charger", iter_chargers), ("vehicle", iter_vehicles)]
    for kind, source in sources:
        for chunk in _chunks(source(client, user_id, page_size=page_size), batch_size):
            result = apply_batch(observations(kind, chunk, now, config))
            report.emitted.update(event.type.value for event in result.events)
            report.seen[kind].update(str(obj.get("id")) for obj in chunk)
    report.chargers, report.vehicles = len(report.seen["charger"]), len(report.seen["vehicle"])
    log.info("enode.reconciled", user_id=user_id, chargers=report.chargers, vehicles=report.vehicles,
             emitted=sum(report.emitted.values()))
    return report


def record(connection: redis.Redis, report: ReconcileReport, user_id: str | None, *,
           epochs: Sequence[tuple[Layout, str]] = ()) -> None:
    """Remember the run; a full one also clears a standing reconcile suggestion and marks reconciled each
    partition's epoch in `epochs` (those the run ran entirely in: (partition, epoch id)). One round trip, no
    MULTI: the two keys are in different slots of a cluster, and a suggestion left by a crash in between is
    only cleared by the next run."""
    pipe = connection.pipeline(transaction=False)
    pipe.hset(keys.RECONCILE_LAST, mapping={
        "at": time.time(), "scope": user_id or "all", "chargers": report.chargers,
        "vehicles": report.vehicles, "emitted": sum(report.emitted.values())})
    if user_id is None:
        pipe.delete(keys.RECONCILE_SUGGESTED)
    pipe.execute()
    if user_id is None:
        for into, epoch_id in epochs:
            epoch.mark_reconciled(connection, epoch_id, time.time_ns() // 1_000_000, into)


def _chunks(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
