"""The epoch: a marker in Redis that says which life of plugwatch's state the data belongs to.

    ensure(connection, now_ms, previous="", into=...) -> Epoch   the marker, written first (atomically) if absent
    read(connection, into=...) -> Epoch | None          read_all(connection, partitions): every partition's
    mark_reconciled(connection, epoch_id, now_ms, into=...) -> bool   a full `enode reconcile` ran in this epoch

Each partition (`plugwatch.partitions`, `into`) has its own marker, beside its users' states: on a Redis Cluster
a partition's node can lose its data alone.

The first worker to find no `plugwatch:epoch` writes one; how the epoch began:
- `first_start`: no marker and no user state: a new installation (or a wipe no running worker saw);
- `existing_data`: no marker but user states exist: an upgrade from a plugwatch without epochs;
- `lost_state`: a worker that had committed under another epoch found the marker gone or replaced: Redis was
  wiped, restored from an old backup or evicted keys, and every user's state went with it.

Its `sequence_base` (its start in Unix ms) is where a vehicle tracked anew numbers its events from
(`CoreConfig.sequence_base`), so `sequence` keeps increasing for consumers across a loss. The store's commit
checks the marker it committed under is still there (`worker.ingest.store`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from plugwatch.partitions import UNPARTITIONED, Layout, layouts

FIRST_START, EXISTING_DATA, LOST_STATE = "first_start", "existing_data", "lost_state"

# KEYS: the epoch hash. ARGV: new id, now (ms), previous epoch id ("" none), "1" if user states exist.
ENSURE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local began = 'first_start'
  if ARGV[3] ~= '' then began = 'lost_state' elseif ARGV[4] == '1' then began = 'existing_data' end
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'started_at_ms', ARGV[2], 'sequence_base', ARGV[2],
             'began', began, 'previous', ARGV[3], 'reconciled_at_ms', '0')
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: the epoch hash. ARGV: the epoch id, now (ms). Records the reconcile only in that same epoch.
RECONCILED_LUA = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'reconciled_at_ms', ARGV[2])
return 1
"""


@dataclass(frozen=True)
class Epoch:
    id: str
    started_at_ms: int
    sequence_base: int
    began: str  # FIRST_START, EXISTING_DATA or LOST_STATE
    previous: str = ""  # the epoch the detecting worker had committed under (LOST_STATE)
    reconciled_at_ms: int = 0  # a full `enode reconcile` completed in this epoch (0: none yet)

    @property
    def lost(self) -> bool:
        return self.began == LOST_STATE

    @property
    def needs_reconcile(self) -> bool:
        """State was lost and no full reconcile has completed since."""
        return self.lost and not self.reconciled_at_ms


def ensure(connection: redis.Redis, now_ms: int, previous: str = "", into: Layout = UNPARTITIONED) -> Epoch:
    """The current epoch (of partition `into`: each has its marker, beside its users' states); if there is
    none, this one (how it began decided inside one script)."""
    has_data = previous == "" and _has_user_state(connection, into)
    reply = connection.eval(ENSURE_LUA, 1, into.epoch, uuid.uuid4().hex, now_ms, previous,
                            "1" if has_data else "0")
    return _parse(dict(zip(reply[::2], reply[1::2], strict=True)))


def read(connection: redis.Redis, into: Layout = UNPARTITIONED) -> Epoch | None:
    fields = connection.hgetall(into.epoch)
    return _parse(fields) if fields else None


def read_all(connection: redis.Redis, partitions: int) -> list[Epoch | None]:
    """Every partition's epoch, partition 0 first (None where no worker has committed yet)."""
    pipe = connection.pipeline(transaction=False)
    for into in layouts(partitions):
        pipe.hgetall(into.epoch)
    return [_parse(fields) if fields else None for fields in pipe.execute()]


def mark_reconciled(connection: redis.Redis, epoch_id: str, now_ms: int, into: Layout = UNPARTITIONED) -> bool:
    return bool(connection.eval(RECONCILED_LUA, 1, into.epoch, epoch_id, now_ms))


def _has_user_state(connection: redis.Redis, into: Layout) -> bool:
    return next(iter(connection.scan_iter(match=into.user_state_prefix + "*", count=1000)), None) is not None


def _parse(fields: Mapping[Any, Any]) -> Epoch:
    text = {_text(k): _text(v) for k, v in fields.items()}
    return Epoch(id=text.get("id", ""), started_at_ms=int(text.get("started_at_ms") or 0),
                 sequence_base=int(text.get("sequence_base") or 0), began=text.get("began", ""),
                 previous=text.get("previous", ""), reconciled_at_ms=int(text.get("reconciled_at_ms") or 0))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class EpochCollector(Collector):
    """`plugwatch_state_lost_unreconciled` (1 while the epoch began as `lost_state` and no full reconcile
    completed since, else 0) and `plugwatch_epoch_started_timestamp_seconds`, read from the marker at each scrape
    (with partitions: 1 if any partition's epoch is so; the latest start)."""

    def __init__(self, connection: redis.Redis, partitions: int = 1) -> None:
        self._connection = connection
        self._partitions = partitions

    def describe(self) -> Iterable[Metric]:
        """Names only: registering the collector must not touch Redis."""
        return _families()

    def collect(self) -> Iterable[Metric]:
        lost, started = _families()
        try:
            found = [current for current in read_all(self._connection, self._partitions) if current is not None]
        except (redis.RedisError, OSError):
            return []  # plugwatch_redis_up (RedisCollector) says so
        lost.add_metric([], 1 if any(current.needs_reconcile for current in found) else 0)
        if found:
            started.add_metric([], max(current.started_at_ms for current in found) / 1000)
        return [lost, started]


def _families() -> list[GaugeMetricFamily]:
    return [
        GaugeMetricFamily("plugwatch_state_lost_unreconciled",
                          "1 while Redis lost plugwatch's state and no full `plugwatch enode reconcile` completed "
                          "since (epoch marker)"),
        GaugeMetricFamily("plugwatch_epoch_started_timestamp_seconds",
                          "When the current epoch of plugwatch's Redis state began (Unix seconds)"),
    ]
