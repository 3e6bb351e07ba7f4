"""Reconcile's optional second step: devices plugwatch tracks that Enode no longer lists were deleted.

After a complete listing (`reconcile`), every tracked vehicle or charger of the reconciled users that Enode
did not return is applied as a `user:<kind>:deleted` event through the core and store, so a vehicle deleted
while at home emits its missed `vehicle.unplugged_from_home` (`vehicle_deleted` / `charger_deleted`).

A deletion drops what the device reported up to it (a later update counts only with newer facts), so this
step is careful:
- only devices with a known fact, the newest older than `MARGIN_SECONDS` before the listing started (a
  device linked or updated around the listing is kept; one without facts cannot be at home anyway);
- it refuses when it would delete more than `max_fraction` of the tracked devices (credentials of another
  environment list other devices; an operator passes `--force` after checking).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

import redis
import structlog

from plugwatch.partitions import layouts
from worker.core import Fact, UserState
from worker.enode.observe import ApplyBatch, Kind, decode_all, deleted_event
from worker.enode.reconcile import ReconcileReport
from worker.ingest.store import Store

log = structlog.get_logger(__name__)

DEFAULT_MAX_FRACTION = 0.5
MARGIN_SECONDS = 600


class PruneRefused(RuntimeError):
    """Pruning would delete more tracked devices than allowed; nothing was deleted."""


def _newest(*facts: Fact | None) -> int:
    return max((fact.at for fact in facts if fact is not None), default=0)


def vanished(state: UserState, seen: dict[Kind, set[str]], before_ms: int) -> list[tuple[Kind, str]]:
    """Pure: the devices of `state` absent from `seen` with facts, the newest older than `before_ms`."""
    gone: list[tuple[Kind, str]] = []
    for charger_id, charger in sorted(state.chargers.items()):
        if charger_id not in seen["charger"] and 0 < _newest(charger.plug, charger.location) < before_ms:
            gone.append(("charger", charger_id))
    for vehicle_id, vehicle in sorted(state.vehicles.items()):
        if vehicle_id not in seen["vehicle"] and 0 < _newest(vehicle.plug, vehicle.location) < before_ms:
            gone.append(("vehicle", vehicle_id))
    return gone


def tracked_users(connection: redis.Redis, user_id: str | None, partitions: int = 1) -> Iterable[str]:
    if user_id is not None:
        return [user_id]
    return (key.decode()[len(into.user_state_prefix):] for into in layouts(partitions)
            for key in connection.scan_iter(match=into.user_state_prefix + "*", count=1000))


def prune_deleted(connection: redis.Redis, store: Store, apply_batch: ApplyBatch, report: ReconcileReport,
                  started: datetime, *, user_id: str | None = None,
                  max_fraction: float = DEFAULT_MAX_FRACTION) -> Counter[str]:
    """Apply a deletion for each vanished device; return the emitted event types (raises PruneRefused)."""
    before_ms = int((started.timestamp() - MARGIN_SECONDS) * 1000)
    tracked, deletions = 0, []
    for user in tracked_users(connection, user_id, store.partitions):
        state = store.load(user)
        tracked += len(state.vehicles) + len(state.chargers)
        deletions += [deleted_event(kind, device, user, started) for kind, device in vanished(
            state, report.seen, before_ms)]
    if deletions and len(deletions) > max_fraction * tracked:
        raise PruneRefused(f"{len(deletions)} of {tracked} tracked devices are not listed by Enode; "
                           "check ENODE_API_URL and the credentials' environment, then use --force")
    emitted: Counter[str] = Counter()
    if deletions:
        result = apply_batch(decode_all(deletions, started, store.config))
        emitted.update(event.type.value for event in result.events)
    log.info("enode.pruned", user_id=user_id, deleted=len(deletions), tracked=tracked,
             emitted=sum(emitted.values()))
    return emitted
