"""Several POSTs to one URL at once, one per order key (vehicle) at a time.

- `Window`: the outbox entries a drainer has read and not sent yet, the order keys with an event in
  flight, and those whose event was answered but not finished yet (acknowledged in the outbox: `settling`).
  `ready(n)` gives up to n entries that may go now: the oldest waiting entry of each order key that has
  nothing in flight or settling, in outbox order.  So a vehicle's event is sent only after every earlier
  one of that vehicle to this URL was answered and finished, and two of its events are never in flight
  together; events of different vehicles go side by side.  The drainer finishes answered events in one
  round trip for many (`settled()` afterwards), and at once when a waiting entry needs it
  (`waits_on_settling()`).  Pure: no I/O.
- `Pool`: the attempts in flight of one drainer, as tasks on the drainer thread's own event loop (one
  aiohttp session, see `sender`); `results` returns the ones that ended, in the order they finished, and
  the drainer coroutine handles them (every Redis write of a drain happens between two awaits, in the
  drainer thread).  A drainer thread is a daemon, so an attempt waiting on a slow URL never holds up the
  process's exit (the unanswered event stays pending and is sent again: at least once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Generic, TypeVar

from worker.delivery.event_info import EventInfo
from worker.delivery.outbox import OutboxEntry

Tag = TypeVar("Tag")
Result = TypeVar("Result")


class Window:
    def __init__(self) -> None:
        self.waiting: list[tuple[OutboxEntry, EventInfo]] = []
        self._busy: set[str] = set()  # order keys with an event in flight
        self._settling: set[str] = set()  # order keys whose answered event is not finished yet

    def add(self, entry: OutboxEntry, event: EventInfo) -> None:
        self.waiting.append((entry, event))

    def ready(self, count: int, first: str = "") -> list[tuple[OutboxEntry, EventInfo]]:
        """Up to `count` entries that may be sent now, marked in flight; `first` (an entry id) goes before
        the others when it may go (the retried head event)."""
        taken: list[tuple[OutboxEntry, EventInfo]] = []
        held: set[str] = set()  # keys whose oldest waiting entry was passed over: their later ones wait too
        for item in self._first(first) + self.waiting:
            if len(taken) >= count:
                break
            key = item[1].order_key
            if key in self._busy or key in held or key in self._settling:
                held.add(key)
                continue
            self._busy.add(key)
            taken.append(item)
        if taken:
            chosen = {id(item) for item in taken}
            self.waiting = [item for item in self.waiting if id(item) not in chosen]
        return taken

    def _first(self, entry_id: str) -> list[tuple[OutboxEntry, EventInfo]]:
        """The waiting entry `entry_id`, if no earlier waiting entry has its order key (else it waits)."""
        keys: set[str] = set()
        for item in self.waiting if entry_id else ():
            if item[0].entry_id == entry_id:
                return [] if item[1].order_key in keys else [item]
            keys.add(item[1].order_key)
        return []

    def answered(self, event: EventInfo) -> None:
        """The event's attempt ended: the next event of its order key may go once it is `settled`."""
        self._busy.discard(event.order_key)
        self._settling.add(event.order_key)

    def settled(self) -> None:
        """Every answered event was finished (or will be sent again, first): their keys' next events may go."""
        self._settling.clear()

    def waits_on_settling(self) -> bool:
        """Some waiting entry's order key has an answered event not finished yet."""
        return bool(self._settling) and any(event.order_key in self._settling for _, event in self.waiting)


class Pool(Generic[Tag, Result]):
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Result]] = set()
        self._done: list[tuple[Tag, Result | Exception]] = []
        self._wakeup: asyncio.Future[None] | None = None
        self.in_flight = 0  # submitted and not yet returned by `results`

    def submit(self, tag: Tag, call: Callable[[], Awaitable[Result]]) -> None:
        """Start `call()` as a task of the running event loop."""
        self.in_flight += 1
        task = asyncio.ensure_future(call())
        self._tasks.add(task)
        task.add_done_callback(partial(self._finished, tag))

    async def results(self, wait: float) -> list[tuple[Tag, Result | Exception]]:
        """The attempts that ended: waits up to `wait` s for the first, then takes what else is there."""
        if not self._done and self._tasks:
            self._wakeup = asyncio.get_running_loop().create_future()
            await asyncio.wait([self._wakeup], timeout=wait)
            self._wakeup = None
        done, self._done = self._done, []
        self.in_flight -= len(done)
        return done

    async def close(self) -> None:
        """Cancel what is still running (nothing, unless the drain ended on an error) and let it end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, tag: Tag, task: asyncio.Task[Result]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # never lose the answer: the drainer waits for every attempt
        self._done.append((tag, error if isinstance(error, Exception) else task.result()))
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
