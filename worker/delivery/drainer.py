"""The drain of one URL's outbox: deliver its events, several at once in per-vehicle order, until it is
empty or its breaker opens.

    claim the lease ─▶ loop: refresh lease, read state (and size the lease for the URL's read timeout)
                              disabled?  dead-letter everything queued, done
                              paused?    short: wait it out here; long: release, the pump resumes it
                              a window ─▶ up to `concurrency` POSTs in flight, one per order key (vehicle),
                                          each key's events in outbox order (`flight`); per answer:
                                                             ─▶ success: ack+del
                                                             ─▶ unwritable request: dead letter, next
                                                             ─▶ 410 or an unusable URL (InvalidURL):
                                                                disable URL, dead-letter its events
                                                             ─▶ retryable: open the breaker (pause); once
                                                                the event has failed for max age, dead-letter
                                                                it and every event that waited that long;
                                                                a timed-out attempt also raises the URL's
                                                                read timeout (`slowness`)
                                          a changed state (breaker, disabled, slowness) ends the window:
                                          nothing more is sent, the attempts in flight are answered, and
                                          the loop starts from the top
    empty ─▶ wait up to `idle_wait` for new events (a blocking read, lease kept): if some came, loop again
          ─▶ release the lease, re-check the outbox, take the lease again if there is more (and no kick did)

The breaker stays per URL: one retryable failure pauses the whole URL (nearly always the URL is down or
overloaded, not one event), and while the failed event is retried (the state's `head`) it goes alone,
first, with the other events waiting behind it; its success closes the breaker and concurrency resumes.
Within one window every attempt uses the same read timeout and at most one failure is recorded, so a
round of time-outs raises a slow URL's timeout once, and each event still reaches a sink at most
`slowness.attempts_bound` times.

Runs in a drainer thread (see `threads.py`), never in the RQ worker's own thread, so a slow URL holds
only its own thread.  The thread runs an event loop of its own (uvloop) while a window is
sent: the POSTs are tasks on one aiohttp session of at most `concurrency` keep-alive connections
(`sender.open_session`, one per drain), and the drainer's Redis calls (reads of up to `batch_size` entries,
one XACK+XDEL for every answer that came in together) are made between the answers, in this thread.
`stop` (set at shutdown) sends nothing more and waits for the attempts in flight; an unfinished event
stays pending in the consumer group and is delivered by the next drainer (at least once), which reads the
unfinished entries in outbox order, so first deliveries keep each vehicle's order across a crash.
"""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import aiohttp
import redis
import structlog
import uvloop
from prometheus_client import Counter, Histogram

from plugwatch import dead_letters, redis_clients, url_state
from plugwatch.outboxes import Outbox
from plugwatch.settings import DeliverySettings
from worker.delivery import outbox, slowness
from worker.delivery.event_info import EventInfo, parse_event
from worker.delivery.flight import Pool, Window
from worker.delivery.lease import Lease, attempt_seconds, lease_ms
from worker.delivery.policy import AttemptResult, Outcome, retry_delay
from worker.delivery.sender import open_session, post_event

log = structlog.get_logger(__name__)


SETTLE_WAIT = 0.005  # s: delivered entries are finished at the latest this long after no further answer came


class Step(enum.Enum):
    NEXT = "next"  # go on with the next entry of the batch
    REREAD = "reread"  # state or outbox changed under the batch: read state and a fresh batch
    EMPTY = "empty"  # the outbox is empty, nothing in flight


class Ending(enum.Enum):
    EMPTY = "empty"
    PAUSED = "paused"
    STOPPED = "stopped"
    LOST = "lost"


class AttemptMetrics(Protocol):
    """What a drain records (`worker.metrics.DeliveryMetrics`, built once per worker process)."""

    @property
    def attempts(self) -> Counter: ...  # labels: outcome

    @property
    def latency(self) -> Histogram: ...


@dataclass(frozen=True)
class Tools:
    """What a drain needs, built once per worker process (see `worker.delivery.context.build`)."""

    connection: redis.Redis
    queues: redis.Redis  # RQ's Redis, where dead letters are kept (`connection` unless RQ_REDIS_URL differs)
    signing_keys: Callable[[str], Sequence[bytes]]  # a URL's keys now, newest first (`SubscriptionCache`)
    config: DeliverySettings
    metrics: AttemptMetrics
    clock: Callable[[], float]
    jitter: Callable[[], float]
    leases: dict[Outbox, Lease] = field(default_factory=dict)  # held right now, by outbox (for shutdown)

    def overdue(self, box: Outbox) -> bool:
        """This process's drainer of `box` holds a lease it has not renewed within its TTL (it is stuck)."""
        lease = self.leases.get(box)
        return lease is not None and lease.overdue()

    def release_leases(self) -> None:
        """Let other worker processes take over the URLs this process still drains (at shutdown)."""
        for lease in list(self.leases.values()):
            lease.release()


def drain(tools: Tools, box: Outbox, stop: threading.Event) -> None:
    """Deliver an outbox (a URL's, in one partition) while this drainer holds the outbox's lease."""
    # Before every attempt the lease must outlive it, so no second drainer can start mid-attempt.
    lease = Lease(tools.connection, box, lease_ms(tools.config), int(1000 * attempt_seconds(tools.config)))
    if not lease.claim():
        return  # another live drainer has it; it re-checks the outbox before letting go
    tools.leases[box] = lease
    try:
        outbox.ensure_group(tools.connection, box)
        while _drain_leased(tools, box, lease, stop) is Ending.EMPTY:
            lease.release()
            if not (_has_work(tools, box) and lease.reacquire()):
                return
    finally:
        if tools.leases.get(box) is lease:  # not a newer drainer's, if this one was abandoned
            del tools.leases[box]
        lease.release()


def _has_work(tools: Tools, box: Outbox) -> bool:
    current = url_state.read_state(tools.connection, box.url, _partition(box))
    return int(tools.connection.xlen(box.stream)) > 0 and not current.paused(tools.clock())


def _drain_leased(tools: Tools, box: Outbox, lease: Lease, stop: threading.Event) -> Ending:
    loop = uvloop.new_event_loop()
    session = loop.run_until_complete(open_session(tools.config, box.url))
    pool: Pool[Sent, Attempt] = Pool()
    try:
        while not stop.is_set():
            if not lease.refresh(force=True):
                log.warning("delivery.lease_lost")
                return Ending.LOST
            current = url_state.read_state(tools.connection, box.url, _partition(box))
            if not _fit_lease(tools, lease, current):
                log.warning("delivery.lease_lost")
                return Ending.LOST
            if current.disabled:
                _dead_letter_backlog(tools, box, f"URL disabled: {current.disabled_reason}")
                return Ending.EMPTY
            wait = current.paused_until - tools.clock()
            if wait > tools.config.inline_wait_max:
                return Ending.PAUSED
            if wait > 0:
                stop.wait(wait)  # the lease (just refreshed) outlives any inline wait
                continue
            window = _deliver_window(tools, box, current, lease, stop, pool, session)
            if loop.run_until_complete(window) is Step.EMPTY:
                if _wait_for_more(tools, box):
                    continue  # from the top: the lease, the state (it may have changed meanwhile), the window
                return Ending.EMPTY
        return Ending.STOPPED
    finally:
        loop.run_until_complete(pool.close())
        loop.run_until_complete(session.close())
        loop.close()


Sent = tuple[outbox.OutboxEntry, EventInfo]
Attempt = tuple[float, AttemptResult]  # (unix seconds when it started, its result)


@dataclass
class _Round:
    """One window's bookkeeping: where reading got to, and whether a result asked to re-read the state."""

    cursor: str = "0"  # pending entries (read before, unfinished) are read after this id, then new ones
    pending_done: bool = False
    step: Step = Step.NEXT  # REREAD once a result changed the URL's state: nothing more is sent
    breaker_set: bool = False  # a retryable failure (or a 410) was recorded: later failures leave it be


async def _deliver_window(
    tools: Tools, box: Outbox, current: url_state.UrlState, lease: Lease, stop: threading.Event,
    pool: Pool[Sent, Attempt], session: aiohttp.ClientSession,
) -> Step:
    """Send the outbox, up to `concurrency` POSTs at once and one per order key at a time (`flight.Window`),
    until it is empty (EMPTY) or a result changed the URL's state (REREAD), with nothing left in flight.

    While the head event of a retry is due (`current.head`: the breaker is half-open) only one event goes
    at a time, the head first, as before concurrency: its answer closes the breaker or keeps it open. So it
    does while another partition's outbox of the URL retries its head (the URL is failing)."""
    config = tools.config
    probing = bool(current.head) or current.others_attempts > 0
    limit = 1 if probing else config.concurrency
    head = current.head  # the retried head event of this outbox, if any
    timeout = slowness.timeout_for(current.read_timeout, config.read_timeout)
    window, round_ = Window(), _Round()
    finished: list[str] = []  # delivered, not finished in the outbox yet (one round trip for many)
    await asyncio.sleep(0)  # the loop notes connections the sink closed while it did not run, before reuse
    while True:
        going = round_.step is Step.NEXT and not stop.is_set() and lease.refresh()
        if going:
            if len(window.waiting) < limit:
                _fill(tools, box, window, round_, room=max(config.batch_size, 4 * limit) - len(window.waiting))
            if len(finished) >= limit or window.waits_on_settling():
                _settle(tools, box, window, finished)  # before the next events of these vehicles go
            for sent in window.ready(limit - pool.in_flight, first=head):
                pool.submit(sent, partial(_attempt, tools, session, box, sent, timeout))
        if pool.in_flight == 0:
            _settle(tools, box, window, finished)
            return Step.EMPTY if going else Step.REREAD
        # None within SETTLE_WAIT: finish what was delivered; none within 1 s: refresh the lease.
        answers = await pool.results(wait=SETTLE_WAIT if finished else 1.0)
        for (entry, event), answer in answers:
            window.answered(event)
            now, result = answer if isinstance(answer, tuple) else (tools.clock(), _crashed(answer))
            if _handle(tools, box, current, entry, event, now, result, timeout, round_) is Step.NEXT:
                finished.append(entry.entry_id)
        if not answers or round_.step is not Step.NEXT:
            _settle(tools, box, window, finished)


def _settle(tools: Tools, box: Outbox, window: Window, finished: list[str]) -> None:
    """Finish the delivered entries in one round trip; then their vehicles' next events may go (a crash
    before it sends them again, first: nothing is finished before its 2xx, and first sends keep order)."""
    if finished:
        outbox.finish(tools.connection, box, *finished)
        finished.clear()
    window.settled()


def _fill(tools: Tools, box: Outbox, window: Window, round_: _Round, room: int) -> None:
    """Read up to `room` more entries: the pending ones after the cursor, then new ones."""
    while room > 0:
        count = min(room, tools.config.batch_size)
        if not round_.pending_done:
            batch = outbox.read_pending(tools.connection, box, count, round_.cursor)
            round_.pending_done = not batch
            round_.cursor = batch[-1].entry_id if batch else round_.cursor
        else:
            batch = outbox.read_new(tools.connection, box, count)
            if not batch:
                return
        for entry in batch:
            if entry.body is None:
                outbox.finish(tools.connection, box, entry.entry_id)
                continue
            event = parse_event(entry.body)
            if event is None:
                _dead_letter(tools, box, entry, None, "malformed outbox entry: not a JSON object with an id")
                continue
            window.add(entry, event)
            room -= 1


async def _attempt(tools: Tools, session: aiohttp.ClientSession, box: Outbox, sent: Sent,
                   read_timeout: float) -> Attempt:
    """One POST (a task of the drain's event loop): the only call of `post_event`."""
    entry, event = sent
    now = tools.clock()
    return now, await post_event(session, box.url, key=tools.signing_keys(box.url), event_id=event.id,
                                 body=entry.body or b"", now=now, read_timeout=read_timeout)


def _partition(box: Outbox) -> int | None:
    """Whose head fields in the URL's state are `box`'s (`url_state`): its partition's, when there are several."""
    return box.partition if box.into.count > 1 else None


def _crashed(error: Exception) -> AttemptResult:
    log.warning("delivery.attempt_crashed", exc_info=error)
    return AttemptResult(Outcome.RETRY, f"{type(error).__name__}: {error}"[:300])


def _fit_lease(tools: Tools, lease: Lease, current: url_state.UrlState) -> bool:
    timeout = slowness.timeout_for(current.read_timeout, tools.config.read_timeout)
    return lease.fit(lease_ms(tools.config, timeout), int(1000 * attempt_seconds(tools.config, timeout)))


def _wait_for_more(tools: Tools, box: Outbox) -> bool:
    """The outbox is empty: keep the lease a little (`idle_wait`) for the next events, so a steady flow is
    delivered as it is committed rather than through a kick, an RQ job and a new drainer each time.  The
    wait stays well inside the lease and the connection's socket timeout."""
    socket_timeout = redis_clients.socket_timeout(tools.connection)
    wait_ms = min(int(1000 * tools.config.idle_wait), lease_ms(tools.config) // 4,
                  int(500 * socket_timeout) if socket_timeout else lease_ms(tools.config))
    return wait_ms > 0 and outbox.wait_for_new(tools.connection, box, tools.config.batch_size, wait_ms)


def _handle(
    tools: Tools, box: Outbox, current: url_state.UrlState, entry: outbox.OutboxEntry, event: EventInfo, now: float,
    result: AttemptResult, timeout: float, round_: _Round,
) -> Step:
    """Act on one attempt's result; NEXT: a success, for the caller to finish (in one round trip with the
    others that ended together).  Marks the round REREAD when the URL's state changed."""
    tools.metrics.attempts.labels(result.outcome.value).inc()
    if result.outcome is Outcome.SUCCESS:
        if _delivered(tools, box, current, event, result.elapsed) is Step.REREAD:
            round_.step = Step.REREAD
        return Step.NEXT
    if result.outcome is Outcome.DEAD_LETTER:
        _dead_letter(tools, box, entry, event, f"{result.detail}: rejected by the URL, not retried")
        if current.head:
            url_state.forget_head(tools.connection, box.url, _partition(box))
            round_.step = Step.REREAD
    elif round_.breaker_set:
        pass  # the URL is already paused or disabled: this event stays pending, sent again after the pause
    elif result.outcome is Outcome.DISABLED:
        _disable(tools, box, entry, event, result)
        round_.step, round_.breaker_set = Step.REREAD, True
    else:
        _retry_later(tools, box, current, entry, event, result, now, timeout)
        round_.step, round_.breaker_set = Step.REREAD, True
    return Step.REREAD


def _delivered(tools: Tools, box: Outbox, current: url_state.UrlState, event: EventInfo, elapsed: float) -> Step:
    if event.occurred_at is not None:
        tools.metrics.latency.observe(max(0.0, tools.clock() - event.occurred_at))
    log.debug("delivery.delivered", event_id=event.id)
    noted = _note_answer(tools, box, current, elapsed)
    if current.head or current.paused_until:
        url_state.record_success(tools.connection, box.url, _partition(box))  # the breaker closes
        return Step.REREAD
    return Step.REREAD if noted else Step.NEXT


def _note_answer(tools: Tools, box: Outbox, current: url_state.UrlState, elapsed: float) -> bool:
    """Keep a slow URL's raised read timeout while it stays slow, drop it once it has recovered."""
    now, config = tools.clock(), tools.config
    verdict = slowness.after_answer(elapsed, now, raised_timeout=current.read_timeout, slow_at=current.slow_at,
                                    base=config.read_timeout, reset_after=config.slow_reset)
    if verdict is slowness.Verdict.STILL_SLOW:
        url_state.record_slow(tools.connection, box.url, read_timeout=current.read_timeout, at=now)
    elif verdict is slowness.Verdict.RECOVERED:
        url_state.forget_slow(tools.connection, box.url)
        log.info("delivery.url_recovered", read_timeout=config.read_timeout)
    return verdict is not slowness.Verdict.UNCHANGED


def _retry_later(
    tools: Tools, box: Outbox, current: url_state.UrlState, entry: outbox.OutboxEntry, event: EventInfo,
    result: AttemptResult, now: float, timeout: float,
) -> Step:
    # This outbox's head failed again (its attempts and age go on), or a new head failed. With partitions the
    # URL's breaker is shared, so the pause grows with the most attempts of any of its outboxes' heads.
    retrying = current.head == entry.entry_id
    attempts = (current.attempts if retrying else 0) + 1
    first_failed_at = current.first_failed_at if retrying and current.first_failed_at else now
    if now - first_failed_at >= tools.config.max_age_seconds:
        reason = f"gave up after {attempts} attempts over {now - first_failed_at:.0f} s: {result.detail}"
        _dead_letter(tools, box, entry, event, reason)
        _dead_letter_expired(tools, box, now, result.detail)
        url_state.forget_head(tools.connection, box.url, _partition(box))
        return Step.REREAD
    config = tools.config
    delay = retry_delay(max(attempts, current.others_attempts), result.retry_after, base=config.backoff_base,
                        cap=config.backoff_max, retry_after_max=config.retry_after_max, jitter=tools.jitter())
    raised = slowness.raised(timeout, config.read_timeout_max) if result.timed_out else None
    url_state.record_failure(tools.connection, box.url, head=entry.entry_id, attempts=attempts, error=result.detail,
                             paused_until=now + delay, first_failed_at=first_failed_at, read_timeout=raised,
                             slow_at=now if raised else None, partition=_partition(box))
    if raised is not None and raised > timeout:
        log.warning("delivery.read_timeout_raised", event_id=event.id, read_timeout=raised, previous=timeout,
                    hint="the URL answers slower than its read timeout; the next attempt waits longer")
    log.warning("delivery.retry_scheduled", event_id=event.id, attempts=attempts, delay=round(delay, 3),
                error=result.detail)
    return Step.REREAD


def _disable(
    tools: Tools, box: Outbox, entry: outbox.OutboxEntry, event: EventInfo, result: AttemptResult
) -> None:
    why = "410 Gone" if result.status == 410 else "unusable URL"
    reason = f"{result.detail} ({why}) on event {event.id}"
    url_state.disable(tools.connection, box.url, reason=reason, now=tools.clock())
    log.error("delivery.url_disabled", url=box.url, event_id=event.id, error=result.detail,
              hint="events for this URL now go to the dead letters; re-enable with plugwatch dead-letters enable")
    _dead_letter(tools, box, entry, event, f"URL disabled: {reason}")


def _dead_letter_backlog(tools: Tools, box: Outbox, reason: str) -> None:
    while batch := outbox.read_batch(tools.connection, box, tools.config.batch_size):
        for entry in batch:
            _dead_letter(tools, box, entry, None, reason)


def _dead_letter_expired(tools: Tools, box: Outbox, now: float, detail: str) -> None:
    cutoff = now - tools.config.max_age_seconds
    while batch := outbox.expired(tools.connection, box, cutoff, tools.config.batch_size):
        for entry in batch:
            reason = f"expired: older than {tools.config.max_age_seconds:.0f} s while the URL failed ({detail})"
            _dead_letter(tools, box, entry, None, reason)


def _dead_letter(
    tools: Tools, box: Outbox, entry: outbox.OutboxEntry, event: EventInfo | None, reason: str
) -> None:
    if entry.body is not None:
        info = event or parse_event(entry.body)
        job_id = dead_letters.add(
            tools.queues, box.url, entry.body, reason=reason, ttl=tools.config.dead_letter_ttl,
            event_id=info.id if info else "", event_type=info.type if info else "",
            now=tools.clock(), enqueued_at=entry.enqueued_at,
        )
        log.warning("delivery.dead_lettered", event_id=info.id if info else None, job_id=job_id, reason=reason)
    outbox.finish(tools.connection, box, entry.entry_id)
