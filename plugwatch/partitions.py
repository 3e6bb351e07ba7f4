"""Partitions: which part of plugwatch's Redis data a user's facts live in (PLUGWATCH_PARTITIONS).

    partition_of(user_id, count) -> int        crc32(user id) mod count: stable across processes and versions
    layout(partition, count) -> Layout         every data-path key name of one partition
    layouts(count) -> tuple[Layout, ...]       all of them, partition 0 first
    check_count(connection, count)             record the count in Redis, or refuse another one

A partition's keys carry a Redis Cluster hash tag (`plugwatch:{p3}:ingest`, `plugwatch:{p3}:user:<id>`, ...).
A delivery whose events concern users of several partitions is split by the receiver, one part per partition,
each deduped and stored by one Lua call in its own slot (`receiver.webhook`); each partition has its own
ingest stream and drains (`worker.ingest.drain`), dedupe marks, quarantine, user states, epoch marker, events
stream, copy of the subscription routes and, per downstream URL, outbox with its drain lease
(`plugwatch.outboxes`); the store commits each partition's users on their own, in one Lua call in that slot.
Not partitioned: the subscriptions and the URLs' delivery states (the control plane, never in a commit).

With one partition (the default) the key names are the ones plugwatch always used (`plugwatch:ingest`,
`plugwatch:events`, ...): no tag, nothing to migrate. System events (heartbeats, tests) and deliveries that are
not an array of events belong to partition 0.

The count is recorded in Redis (`plugwatch:partitions`) by the first process to start: a user's partition
is `hash mod count`, so a process started with another count would look for every user in the wrong place,
and refuses to run (`PartitionCountMismatch`, naming PLUGWATCH_PARTITIONS).
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import redis

from plugwatch import keys

MAX_PARTITIONS = 1024
PARTITIONS_KEY = f"{keys.PREFIX}:partitions"  # the count every process must be started with (a string)


def partition_of(user_id: str, count: int) -> int:
    """The partition of a user's data (0 with one partition)."""
    return zlib.crc32(user_id.encode()) % count if count > 1 else 0


@dataclass(frozen=True)
class Layout:
    """The key names of one partition (see the module doc; `keys` documents what each holds)."""

    partition: int
    count: int
    ingest_stream: str
    ingest_armed: str  # slot 0's armed key; helper slots append `:<slot>` (`armed_key`)
    ingest_users_prefix: str
    ingest_waited_prefix: str
    ack_mark: str
    dedupe_marks: str
    dedupe_prefix: str  # the previous version's marks (only ever in the unpartitioned layout)
    quarantine_stream: str
    quarantined_once_prefix: str
    heartbeat: str  # written by partition 0's deliveries
    user_state_prefix: str
    epoch: str
    events_stream: str
    outbox_prefix: str
    routes: str  # this partition's copy of the subscription routes (`plugwatch.subscriptions`)
    lease_prefix: str

    @property
    def tag(self) -> str:
        """The hash tag of the partition's keys ("" with one partition)."""
        return "" if self.count == 1 else f"{{p{self.partition}}}"

    def armed_key(self, slot: int) -> str:
        """Set while the drain job of `slot` of this partition is queued or running."""
        return self.ingest_armed if slot == 0 else f"{self.ingest_armed}:{slot}"

    def user_state_key(self, user_id: str) -> str:
        return self.user_state_prefix + user_id

    def dedupe_key(self, delivery_id: str) -> str:
        return self.dedupe_prefix + delivery_id

    def outbox(self, url: str) -> str:
        """This partition's outbox stream of a downstream URL (`plugwatch.outboxes`)."""
        return self.outbox_prefix + keys.url_key(url)

    def lease(self, url: str) -> str:
        """Set while a drain of this partition's outbox of `url` is queued ("queued") or running (a token)."""
        return self.lease_prefix + keys.url_key(url)


@functools.lru_cache(maxsize=4096)
def layout(partition: int, count: int) -> Layout:
    if not 0 <= partition < count:
        raise ValueError(f"partition {partition} is not one of {count}")
    if count == 1:
        return Layout(0, 1, keys.INGEST_STREAM, keys.INGEST_ARMED, keys.INGEST_USERS_PREFIX,
                      keys.INGEST_WAITED_PREFIX, keys.ACK_MARK, keys.DEDUPE_MARKS, keys.DEDUPE_PREFIX,
                      keys.QUARANTINE_STREAM, keys.QUARANTINED_ONCE_PREFIX, keys.HEARTBEAT, keys.USER_STATE_PREFIX,
                      keys.EPOCH, keys.EVENTS_STREAM, keys.OUTBOX_PREFIX, keys.ROUTES, keys.DOWNSTREAM_LEASE_PREFIX)
    base = f"{keys.PREFIX}:{{p{partition}}}:"
    return Layout(partition, count, base + "ingest", base + "ingest:armed", base + "ingest:users:",
                  base + "ingest:waited:", base + "ingest:ack", base + "marks", base + "dedupe:",
                  base + "quarantine", base + "quarantined:", base + "heartbeat", base + "user:", base + "epoch",
                  base + "events", base + "outbox:", base + "routes", base + "downstream:lease:")


UNPARTITIONED = layout(0, 1)  # the names of one partition: plugwatch's keys as they always were


def layouts(count: int) -> tuple[Layout, ...]:
    return tuple(layout(partition, count) for partition in range(count))


def of_user(user_id: str, count: int) -> Layout:
    return layout(partition_of(user_id, count), count)


def recorded(connection: redis.Redis) -> int:
    """The count recorded in Redis (1 before any is): what every process checked its PLUGWATCH_PARTITIONS
    against (the control plane reads it, so that it writes every partition's copy of what it changes)."""
    value = connection.get(PARTITIONS_KEY)
    return int(value) if value is not None else 1


class PartitionCountMismatch(RuntimeError):
    """Redis holds data partitioned another way than this process was started with."""

    def __init__(self, recorded: int, wanted: int) -> None:
        super().__init__(f"PLUGWATCH_PARTITIONS is {wanted} but plugwatch's Redis data is in {recorded} partitions "
                         f"(recorded in {PARTITIONS_KEY}); start every process with PLUGWATCH_PARTITIONS={recorded}")
        self.recorded, self.wanted = recorded, wanted


def check_count(connection: redis.Redis, count: int) -> None:
    """Record `count` if nothing is recorded yet, else raise PartitionCountMismatch if it differs. Data
    written before the count was recorded (an older plugwatch: the unpartitioned layout) counts as 1."""
    recorded = connection.get(PARTITIONS_KEY)
    if recorded is None:
        unpartitioned = connection.exists(keys.EPOCH) or connection.exists(keys.INGEST_STREAM)  # (two slots)
        first = 1 if unpartitioned else count
        connection.set(PARTITIONS_KEY, first, nx=True)
        recorded = connection.get(PARTITIONS_KEY)
    if recorded is not None and int(recorded) != count:
        raise PartitionCountMismatch(int(recorded), count)
