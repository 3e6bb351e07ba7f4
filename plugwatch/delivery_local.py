"""This process's drainer threads, when it has them, so `kick` can start a drain at once.

`kick` runs inside the ingest drain job; the drain job it enqueues would wait in RQ until that ingest job
ends (up to its time budget under load).  When the process has a delivery context installed, `kick` also
hands the URLs it armed straight to the local drainer threads; the queued RQ job then finds the work done
(or the lease held) and returns.  Kept apart from `context` so `arming` needs no import of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

_starters: list[Callable[[str], None]] = []


def set_starter(starter: Callable[[str], None] | None) -> None:
    _starters[:] = [] if starter is None else [starter]


def start_here(urls: Iterable[str]) -> None:
    if _starters:
        for url in urls:
            _starters[0](url)
