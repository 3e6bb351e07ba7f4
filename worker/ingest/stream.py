"""The ingest stream's consumer-group operations, one round trip each, for the drain in `worker.ingest.drain`.

    ensure_group        the `ingest` group on the partition's stream, `plugwatch:ingest` (MKSTREAM, from id 0)
    claim               take over one entry a dead drainer left pending; quarantine it as poison if needed
    read                refresh the drain's armed key and read a batch of new entries
    arm_helper          under a backlog, arm one more drain job (the next slot) for another worker
    forget_idle_consumers   drop group members of processes long gone
"""

from __future__ import annotations

import redis
import structlog

from plugwatch import ingest_arming, keys
from plugwatch.partitions import Layout
from worker.ingest import order
from worker.ingest.entries import Entry, quarantine_entry, text
from worker.ingest.ports import IngestContext
from worker.ingest.store import Ack

log = structlog.get_logger(__name__)


def ensure_group(connection: redis.Redis, into: Layout) -> None:
    try:
        connection.xgroup_create(into.ingest_stream, keys.INGEST_GROUP, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def forget_idle_consumers(context: IngestContext, into: Layout) -> None:
    """Every worker process that ever drained is a consumer of the group: forget those that hold nothing
    and were idle for `consumer_idle_ms` (restarted or scaled-down processes), so the group stays small."""
    connection = context.connection
    for consumer in connection.xinfo_consumers(into.ingest_stream, keys.INGEST_GROUP):
        name = text(consumer["name"]) if isinstance(consumer["name"], bytes) else str(consumer["name"])
        idle = not consumer["pending"] and consumer["idle"] > context.options.consumer_idle_ms
        if idle and name != context.consumer:
            # Atomically re-check: a consumer that read entries since XINFO keeps them (and stays).
            connection.eval(_DELETE_IF_EMPTY, 1, into.ingest_stream, keys.INGEST_GROUP, name)


_DELETE_IF_EMPTY = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
"""


def arm_helper(context: IngestContext, into: Layout, slot: int) -> bool:
    """A backlog: let one more worker process drain too (CAS commits make concurrent drains safe)."""
    if ingest_arming.arm(context.connection, context.queues, slot, into) is not None:
        log.info("ingest.helper_armed", slot=slot, partition=into.partition)
    return True


def claim(context: IngestContext, into: Layout, armed_key: str, cursor: bytes) -> tuple[list[Entry], bytes | None]:
    """Take over ONE entry a dead drainer left pending (one at a time, so that an entry which kills its
    drainer is the only one whose delivery count grows); quarantine it if it was delivered too often."""
    options = context.options
    pipe = context.connection.pipeline(transaction=False)
    pipe.set(armed_key, "1", px=options.armed_ttl_ms)
    pipe.xautoclaim(into.ingest_stream, keys.INGEST_GROUP, context.consumer,
                    min_idle_time=options.claim_idle_ms, start_id=cursor, count=1)
    _, reply = pipe.execute()
    following: bytes | None = None if reply[0] in (b"0-0", "0-0") else reply[0]
    entries: list[Entry] = [entry for entry in reply[1] if entry[1]]
    if not entries:
        return [], following
    entry_id = entries[0][0]
    pending = context.connection.xpending_range(into.ingest_stream, keys.INGEST_GROUP, min=entry_id,
                                                max=entry_id, count=1)
    times = int(pending[0]["times_delivered"]) if pending else 1
    log.info("ingest.claimed", entry_id=text(entry_id), times=times)
    if times > options.max_deliveries and order.waited(context, into, entry_id):
        log.info("ingest.poison_deferred", entry_id=text(entry_id), times=times)  # it failed behind an older one
    elif times > options.max_deliveries:
        quarantine_poison(context, into, entries[0], times)
        return [], following
    return entries, following


def quarantine_poison(context: IngestContext, into: Layout, entry: Entry, times: int) -> None:
    entry_id = entry[0]
    reason = f"poison: delivered {times} times without completing"
    quarantine_entry(context.connection, entry, reason, into=into)  # a crash before the ack: not quarantined twice
    log.warning("ingest.poison_quarantined", entry_id=text(entry_id), times=times)
    context.store.apply_batch([], Ack([entry_id], into))
    context.metrics.events.labels("other", "quarantined").inc()


def read(context: IngestContext, into: Layout, armed_key: str) -> list[Entry]:
    pipe = context.connection.pipeline(transaction=False)
    pipe.set(armed_key, "1", px=context.options.armed_ttl_ms)
    pipe.xreadgroup(keys.INGEST_GROUP, context.consumer, {into.ingest_stream: ">"},
                    count=context.options.batch_entries)
    _, reply = pipe.execute()
    return list(reply[0][1]) if reply else []
