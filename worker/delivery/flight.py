"""Several POSTs to one URL at once, one per order key (vehicle) at a time.

- `Window`: the outbox entries a drainer has read and not sent yet, and the order keys with an event in
  flight.  `ready(n)` gives up to n entries that may go now: the oldest waiting entry of each order key
  whose key has nothing in flight, in outbox order.  So a vehicle's event is sent only after every earlier
  one of that vehicle to this URL was answered (and finished), and two of its events are never in flight
  together; events of different vehicles go side by side.  Pure: no I/O.
- `Pool`: up to `size` daemon threads of one drainer, each running one attempt at a time; the results come
  back on one queue in the order they finish, and the drainer thread handles them (every Redis write of
  a drain stays in the drainer thread).  Daemon threads, so an attempt waiting on a slow URL never holds
  up the process's exit (the unanswered event stays pending and is sent again: at least once).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from worker.delivery.event_info import EventInfo
from worker.delivery.outbox import OutboxEntry

Tag = TypeVar("Tag")
Result = TypeVar("Result")


class Window:
    def __init__(self) -> None:
        self.waiting: list[tuple[OutboxEntry, EventInfo]] = []
        self._busy: set[str] = set()  # order keys with an event in flight

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
            if key in self._busy or key in held:
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
        """The event's attempt ended: the next event of its order key may go."""
        self._busy.discard(event.order_key)


class Pool(Generic[Tag, Result]):
    def __init__(self, size: int, name: str) -> None:
        self._size, self._name = size, name
        self._jobs: queue.SimpleQueue[tuple[Tag, Callable[[], Result]] | None] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[tuple[Tag, Result | Exception]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self.in_flight = 0

    def submit(self, tag: Tag, call: Callable[[], Result]) -> None:
        self.in_flight += 1
        if len(self._threads) < min(self._size, self.in_flight):  # threads start as the load needs them
            thread = threading.Thread(target=self._work, daemon=True, name=f"{self._name}-{len(self._threads)}")
            self._threads.append(thread)
            thread.start()
        self._jobs.put((tag, call))

    def results(self, timeout: float) -> list[tuple[Tag, Result | Exception]]:
        """The attempts that ended: waits up to `timeout` s for the first, then takes what else is there."""
        try:
            done = [self._results.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                done.append(self._results.get_nowait())
            except queue.Empty:
                break
        self.in_flight -= len(done)
        return done

    def close(self) -> None:
        """Let the threads end once their current attempt (if any) is over."""
        for _ in self._threads:
            self._jobs.put(None)
        self._threads.clear()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            tag, call = job
            try:
                result: Result | Exception = call()
            except Exception as error:  # never lose the answer: the drainer waits for every attempt
                result = error
            self._results.put((tag, result))
