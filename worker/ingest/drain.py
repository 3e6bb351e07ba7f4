"""The ingest drain: what RQ job `worker.jobs.drain_ingest` runs to turn ingest-stream entries into state and events.

    drain(context, slot) -> Drained   the loop (the job runs it with the process's context; tests with theirs)
    pump(connection, queues, options)  re-arm a drain when entries wait and nothing is armed

A drain first takes over, one at a time, the entries a killed drainer left pending (XAUTOCLAIM, idle longer
than `claim_idle_ms`; an entry delivered more than `max_deliveries` times keeps killing or failing its
drainer and is quarantined as poison). Then each pass refreshes its armed key and reads a batch of new
entries in the same round trip (XREADGROUP). Every event of every delivery is decoded in array order; a
malformed one goes to the quarantine with its `event_index` and the others go on. The whole batch is
applied and committed by the store in ONE Lua call that also XACKs and XDELs the entries, so processed
entries leave the stream together with the state they produced; an entry re-read after a crash meets that
state and emits nothing new.

Under a backlog (a full batch) a drain arms one helper drain in the next slot (`plugwatch:ingest:armed:<n>`,
up to `max_drainers`), so idle worker processes join in. Once the stream is empty, the main drain (slot 0)
waits up to `idle_wait_ms` for the next delivery (a blocking XREADGROUP) before it ends: while its armed key
lives the receiver enqueues no job, so a steady trickle of deliveries is drained by one job, each delivery
committed within milliseconds instead of after an RQ hop (which costs ~5-10 ms of latency and CPU per job).
The loop stops when nothing came during that wait or after `budget_seconds`; it then clears its armed key,
re-checks the stream and re-arms (a new RQ job) if entries arrived meanwhile.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import structlog
from rq.timeouts import JobTimeoutException

from plugwatch import ingest_arming, keys, redis_clients
from plugwatch.partitions import UNPARTITIONED, Layout, layout, layouts
from plugwatch.settings import IngestSettings
from worker.core import Observation
from worker.ingest import order, stream
from worker.ingest.entries import Entry, decode_delivery, text
from worker.ingest.ports import IngestContext
from worker.ingest.store import Ack

log = structlog.get_logger(__name__)
OTHERS_CHECK_MS = ingest_arming.MAKE_WAY_MS  # with several partitions, how often an idle drain looks for jobs


@dataclass
class Drained:
    """What one drain job did."""

    deliveries: int = 0
    events: int = 0
    emitted: int = 0
    batches: int = 0
    conflicts: int = 0  # commits retried because another drainer changed the same user first
    ordered: int = 0  # older pending entries (another drain's) whose observations of a batch's users went first
    rearmed: bool = False


def drain(context: IngestContext, slot: int = 0, partition: int = 0) -> Drained:
    """Drain `partition`'s stream until it is empty or the budget is spent; under load arm the next helper slot."""
    connection, options = context.connection, context.options
    into = layout(partition, context.settings.process.partitions)
    armed_key = into.armed_key(slot)
    stream.ensure_group(connection, into)
    drained = Drained()
    deadline = time.monotonic() + options.budget_seconds
    claim_from: bytes | None = b"0-0"  # XAUTOCLAIM's scan position; None once the scan is complete
    helped = slot + 1 >= options.max_drainers
    progressed = False  # a job always processes one batch, however slow the machine: no job ends idle-handed
    while not progressed or time.monotonic() < deadline:
        if claim_from is not None:
            entries, claim_from = stream.claim(context, into, armed_key, claim_from)  # at most one entry
        else:
            entries = stream.read(context, into, armed_key)
            if not entries and slot == 0:
                entries = _await_entries(context, into, deadline)
            if not entries:
                break
            if not helped and len(entries) == options.batch_entries:
                helped = stream.arm_helper(context, into, slot + 1)
        if entries:
            _process(context, into, entries, drained)
            progressed = True
    connection.delete(armed_key)
    stream.forget_idle_consumers(context, into)
    drained.rearmed = (needs_drain(connection, options.claim_idle_ms, into)
                       and ingest_arming.arm(connection, context.queues, into=into) is not None)
    log.info("ingest.drained", partition=partition, deliveries=drained.deliveries, events=drained.events,
             emitted=drained.emitted, batches=drained.batches, conflicts=drained.conflicts, ordered=drained.ordered,
             rearmed=drained.rearmed)
    return drained


def _await_entries(context: IngestContext, into: Layout, deadline: float) -> list[Entry]:
    """The stream is empty: block for new entries, at most `idle_wait_ms` and the rest of the budget.

    The armed key was refreshed by the read just before and outlives the wait, which is also kept well
    under the connection's socket timeout (if it has one), so a quiet stream is no Redis error.
    With several partitions the wait is cut into slices of `OTHERS_CHECK_MS`, and ends as soon as another drain
    job waits in the ingest or delivery queue: a worker idling on a quiet partition must not hold up a busy one
    (with fewer worker processes than partitions, it would add up to the idle wait to that partition's
    latency; a delivery job waiting is quick: it starts a drainer thread, `worker.delivery.threads`).
    """
    connection, options = context.connection, context.options
    socket_timeout = redis_clients.socket_timeout(connection)
    wait_ms = min(options.idle_wait_ms, int(1000 * (deadline - time.monotonic())), options.armed_ttl_ms // 2,
                  int(500 * socket_timeout) if socket_timeout else options.idle_wait_ms)
    shared = context.settings.process.partitions > 1
    until = time.monotonic() + wait_ms / 1000
    while wait_ms > 0:
        if shared and ingest_arming.drains_waiting(context.queues):
            return []
        reply: Any = connection.xreadgroup(keys.INGEST_GROUP, context.consumer, {into.ingest_stream: ">"},
                                           count=options.batch_entries,
                                           block=min(wait_ms, OTHERS_CHECK_MS) if shared else wait_ms)
        if reply:
            return list(reply[0][1])
        wait_ms = int(1000 * (until - time.monotonic()))
    return []


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC during a batch: parsing deliveries allocates many short-lived, acyclic objects that
    reference counting frees, and each collection would walk the whole heap (it halves the throughput)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _process(context: IngestContext, into: Layout, entries: Sequence[Entry], drained: Drained) -> None:
    """Decode, apply and commit one batch; if that fails unexpectedly, retry entry by entry."""
    batch: _Batch | None = None
    try:
        with _gc_paused():
            batch = _prepare(context, into, entries)
            _commit(context, into, batch, drained)
    except (redis.ConnectionError, redis.TimeoutError, JobTimeoutException):
        raise  # the job fails and is retried; the entries stay pending and are claimed later
    except Exception:
        if len(entries) == 1:
            log.exception("ingest.entry_failed", entry_id=text(entries[0][0]))
            if batch is not None and batch.earlier.entries:  # the older entry may be the poison
                order.mark_waited(context, into, entries[0][0])
            return  # left pending: claimed again later, quarantined as poison after max_deliveries
        log.exception("ingest.batch_failed", entries=len(entries))
        for entry in entries:
            _process(context, into, [entry], drained)


@dataclass
class _Batch:
    """A batch decoded, with what of older pending entries of its users must be applied before it."""

    entries: Sequence[Entry]
    observations: list[Observation]  # the batch's own, in entry and array order
    counts: Counter[tuple[str, str]]
    earlier: order.Earlier
    started: float


def _prepare(context: IngestContext, into: Layout, entries: Sequence[Entry]) -> _Batch:
    started = time.perf_counter()
    counts: Counter[tuple[str, str]] = Counter()
    decoded = [decode_delivery(context.connection, entry, counts, context.store.config, into=into)
               for entry in entries]
    earlier = order.earlier(context, into, entries, decoded)
    return _Batch(entries, [observation for part in decoded for observation in part], counts, earlier, started)


def _commit(context: IngestContext, into: Layout, batch: _Batch, drained: Drained) -> None:
    entries, counts, observations = batch.entries, batch.counts, batch.observations
    first = batch.earlier.observations
    result = context.store.apply_batch([*first, *observations] if first else observations,
                                       Ack([entry_id for entry_id, _ in entries], into))
    own = result.outcomes[len(first):] if first else result.outcomes  # (in observation order)
    for (kind, outcome), number in Counter(own).items():  # str() once per distinct pair
        counts[(kind, str(outcome))] += number
    context.metrics.record_skewed(observations)
    context.metrics.record_batch(counts, result, deliveries=len(entries),
                                 seconds=time.perf_counter() - batch.started, ordered=batch.earlier.entries)
    drained.deliveries += len(entries)
    drained.events += sum(counts.values())
    drained.batches += 1
    drained.conflicts += result.conflicts
    drained.ordered += batch.earlier.entries
    emitted = len(result.events)
    looked_up = context.enode.after_batch(result)  # chargers vehicles are plugged into but never seen
    if looked_up is not None:
        context.metrics.record_emitted(looked_up.events)
        emitted += len(looked_up.events)
    drained.emitted += emitted
    if result.outboxes:  # the subscriptions' outboxes this commit reached (a look-up's commit arms its own)
        context.delivery.kick(result.outboxes)


def needs_drain(connection: redis.Redis, claim_idle_ms: int, into: Layout = UNPARTITIONED) -> bool:
    """Unread entries in `into`'s stream, or entries pending longer than `claim_idle_ms` (a dead drainer's)?

    Processed entries are deleted, so XLEN counts exactly the unread plus the pending ones.
    """
    pipe = connection.pipeline(transaction=False)
    pipe.xlen(into.ingest_stream)
    pipe.xpending(into.ingest_stream, keys.INGEST_GROUP)
    pipe.xpending_range(into.ingest_stream, keys.INGEST_GROUP, min="-", max="+", count=1, idle=claim_idle_ms)
    length, summary, stale = pipe.execute(raise_on_error=False)
    if isinstance(length, Exception) or not length:
        return False
    if isinstance(summary, Exception):  # NOGROUP: nothing was ever read
        return True
    unread = int(length) > int(summary["pending"])
    return unread or (bool(stale) and not isinstance(stale, Exception))


def pump(connection: redis.Redis, queues: redis.Redis, options: IngestSettings, partitions: int = 1) -> bool:
    """Arm a drain job in every partition where entries wait and none is armed (a lost arming, a killed
    drainer); True if one was armed."""
    armed = False
    for into in layouts(partitions):
        armed = _pump_partition(connection, queues, options, into) or armed
    return armed


def _pump_partition(connection: redis.Redis, queues: redis.Redis, options: IngestSettings, into: Layout) -> bool:
    if not needs_drain(connection, options.claim_idle_ms, into):
        return False
    ttl = int(connection.pttl(into.ingest_armed))  # -2: no key
    if ttl != -2 and not (ttl > 0 and ingest_arming.arming_lost(queues, ttl, options.armed_ttl_ms)):
        return False
    connection.delete(into.ingest_armed)
    armed = ingest_arming.arm(connection, queues, into=into) is not None
    if armed:
        log.info("ingest.pump_rearmed", lost_arming=ttl > 0, partition=into.partition)
    return armed

