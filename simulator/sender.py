"""The shell: POST signed deliveries to a receiver, resending on 5xx and transport errors as Enode does.

Deliveries go out with up to `concurrency` in flight, optionally paced to `rate` events/s or with a delay
between deliveries. A 2xx ends a delivery; a 5xx, 429 or transport error is resent (same delivery id, same
body) with capped exponential backoff until `give_up_after` seconds; any other 4xx is final (Enode, too,
counts it as a failure but the body will never become acceptable).

`on_sending(delivery)` is called before a delivery's first attempt, `on_accepted(delivery)` after its 2xx.
`on_progress(report)` is called every `progress_every` seconds, and within half a second once nothing answers
(a transport error: `report.unreachable_since` is set until the next HTTP answer). With `unreachable_limit`,
sending stops once nothing has answered for that long (`report.stopped`; what was not accepted is `unsent`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from simulator.deliveries import Delivery


@dataclass(frozen=True)
class SendOptions:
    concurrency: int = 4
    rate: float = 0.0  # events per second across all deliveries (0: as fast as possible)
    delay: float = 0.0  # seconds to wait after each delivery, per sender slot
    timeout: float = 5.0  # Enode's own limit for an answer
    give_up_after: float = 120.0  # stop resending one delivery after this long
    max_backoff: float = 2.0
    connect_timeout: float = 2.0  # a receiver that does not accept the connection is told apart quickly
    progress_every: float = 5.0  # seconds between on_progress calls
    unreachable_limit: float = 0.0  # stop after this long without any answer (0: resend until give_up_after)


@dataclass
class SendReport:
    accepted: int = 0
    events: int = 0
    rejected: dict[int, int] = field(default_factory=dict)  # final status code -> count
    resends: int = 0
    gave_up: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, POST to 2xx, last attempt
    accepted_at: dict[str, float] = field(default_factory=dict)  # delivery id -> time.time() of the 2xx
    total: int = 0  # deliveries to send
    sent: int = 0  # deliveries whose first attempt has been made
    retrying: int = 0  # deliveries waiting to be resent now
    unreachable_since: float | None = None  # time.monotonic() of the first transport error since an answer
    stopped: bool = False  # nothing answered for `unreachable_limit`

    @property
    def unsent(self) -> int:
        """Deliveries neither accepted, rejected nor given up (only after a stop)."""
        return self.total - self.accepted - sum(self.rejected.values()) - self.gave_up

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.gave_up and not self.unsent


async def send_all(url: str, secret: str, deliveries: Sequence[Delivery], options: SendOptions,
                   on_accepted: Callable[[Delivery], None] | None = None,
                   on_progress: Callable[[SendReport], None] | None = None,
                   on_sending: Callable[[Delivery], None] | None = None) -> SendReport:
    report = SendReport(total=len(deliveries))
    queue: asyncio.Queue[Delivery] = asyncio.Queue()
    for delivery in deliveries:
        queue.put_nowait(delivery)
    pacer = _Pacer(options.rate)
    limits = httpx.Limits(max_connections=options.concurrency, max_keepalive_connections=options.concurrency)
    timeout = httpx.Timeout(options.timeout, connect=min(options.timeout, options.connect_timeout))
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def slot() -> None:
            while not queue.empty():
                delivery = queue.get_nowait()
                await pacer.wait(delivery.events)
                if on_sending is not None:
                    on_sending(delivery)
                await _send_one(client, url, secret, delivery, options, report)
                if on_accepted is not None and delivery.id in report.accepted_at:
                    on_accepted(delivery)
                if options.delay:
                    await asyncio.sleep(options.delay)

        slots = [asyncio.create_task(slot()) for _ in range(max(1, options.concurrency))]
        watching = asyncio.create_task(_watch(report, options, on_progress, slots))
        try:
            await asyncio.wait(slots)
        finally:
            watching.cancel()
        for task in slots:
            if not task.cancelled():
                task.result()  # an error in a slot is the caller's
    return report


async def _watch(report: SendReport, options: SendOptions, on_progress: Callable[[SendReport], None] | None,
                 slots: Sequence[asyncio.Task[None]]) -> None:
    """Call `on_progress` on its period and as soon as nothing answers; stop the slots at the limit."""
    next_call = time.monotonic() + options.progress_every
    told = False  # on_progress has been called since the receiver stopped answering
    while True:
        await asyncio.sleep(0.5)
        now = time.monotonic()
        since = report.unreachable_since
        if on_progress is not None and (now >= next_call or (since is not None and not told)):
            on_progress(report)
            next_call = now + options.progress_every
        told = since is not None
        if since is not None and options.unreachable_limit and now - since >= options.unreachable_limit:
            report.stopped = True
            for task in slots:
                task.cancel()
            return


async def _send_one(client: httpx.AsyncClient, url: str, secret: str, delivery: Delivery,
                    options: SendOptions, report: SendReport) -> None:
    headers = delivery.headers(secret)
    deadline = time.monotonic() + options.give_up_after
    backoff = 0.05
    report.sent += 1
    retrying = False
    try:
        while True:
            started = time.perf_counter()
            try:
                response = await client.post(url, content=delivery.body, headers=headers)
                status = response.status_code
                report.unreachable_since = None
            except httpx.TransportError:
                status = 0
                report.unreachable_since = report.unreachable_since or time.monotonic()
            if 200 <= status < 300:
                report.accepted += 1
                report.events += delivery.events
                report.latencies.append(time.perf_counter() - started)
                report.accepted_at[delivery.id] = time.time()
                return
            if status and status < 500 and status != 429:
                report.rejected[status] = report.rejected.get(status, 0) + 1
                return
            if time.monotonic() > deadline:
                report.gave_up += 1
                return
            report.resends += 1
            report.retrying += not retrying
            retrying = True
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 (jitter)
            backoff = min(backoff * 2, options.max_backoff)
    finally:
        report.retrying -= retrying


class _Pacer:
    """Spaces deliveries so that events flow at `rate` per second on average (0: no pacing)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.next_at = 0.0

    async def wait(self, events: int) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        self.next_at = max(self.next_at, now)
        start = self.next_at
        self.next_at += events / self.rate
        if start > now:
            await asyncio.sleep(start - now)
