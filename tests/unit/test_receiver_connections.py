"""receiver.connections: the books on open connections, who is cut when the cap is reached, and the
rate-limited log of cuts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import structlog
from prometheus_client import CollectorRegistry

from plugwatch.settings import ReceiverSettings, Settings
from receiver.connections import ConnectionGuard, ConnectionLimits, CutLog, CutReason


@dataclass(eq=False)
class Connection:
    name: str
    cuts: list[CutReason] = field(default_factory=list)

    @property
    def peer(self) -> str:
        return f"10.0.0.1:{self.name}"

    def cut(self, reason: CutReason) -> None:
        self.cuts.append(reason)


@dataclass
class Timers:
    now: float = 0.0
    due: list[tuple[float, Callable[[], None]]] = field(default_factory=list)

    def schedule(self, delay: float, callback: Callable[[], None]) -> None:
        self.due.append((self.now + delay, callback))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for entry in [entry for entry in self.due if entry[0] <= self.now]:
            self.due.remove(entry)
            entry[1]()


def guard(max_connections: int, timers: Timers | None = None) -> tuple[ConnectionGuard, CollectorRegistry]:
    registry = CollectorRegistry()
    timers = timers or Timers()
    return ConnectionGuard(ConnectionLimits(1.0, 1.0, max_connections), registry, schedule=timers.schedule), registry


def cuts(registry: CollectorRegistry, reason: CutReason) -> float:
    return registry.get_sample_value("plugwatch_receiver_connections_cut_total", {"reason": reason.value}) or 0.0


def test_the_cap_is_lowered_to_fit_under_the_open_file_limit() -> None:
    settings = Settings(receiver=ReceiverSettings(max_connections=2048))
    assert ConnectionLimits.of(settings, float("inf")).max_connections == 2048
    assert ConnectionLimits.of(settings, 20000).max_connections == 2048
    assert ConnectionLimits.of(settings, 1024).max_connections == 1024 - 128
    assert ConnectionLimits.of(settings, 100).max_connections == 1


def test_over_the_cap_the_oldest_waiting_connection_is_cut_not_the_new_one() -> None:
    books, registry = guard(2)
    first, second, third = Connection("1"), Connection("2"), Connection("3")
    for connection in (first, second, third):
        books.opened(connection)
    assert (first.cuts, second.cuts, third.cuts) == ([CutReason.MAX_CONNECTIONS], [], [])
    assert cuts(registry, CutReason.MAX_CONNECTIONS) == 1
    assert registry.get_sample_value("plugwatch_receiver_open_connections") == 2


def test_a_connection_reading_its_body_goes_after_every_waiting_one_and_a_read_request_never() -> None:
    books, _ = guard(3)
    busy, body, waiting = Connection("busy"), Connection("body"), Connection("waiting")
    for connection in (busy, body, waiting):
        books.opened(connection)
    books.headers_read(busy)
    books.body_read(busy)  # fully read: the app is answering it
    books.headers_read(body)
    newcomers = [Connection(f"new-{n}") for n in range(2)]
    books.opened(newcomers[0])
    assert waiting.cuts == [CutReason.MAX_CONNECTIONS]
    books.headers_read(newcomers[0])
    books.opened(newcomers[1])  # waiting: only the newcomer itself; then the oldest body reader
    assert body.cuts == [CutReason.MAX_CONNECTIONS]
    assert busy.cuts == []
    books.headers_read(newcomers[1])
    books.body_read(newcomers[1])
    late = Connection("late")
    books.opened(late)  # waiting: itself; reading a body: newcomer 0
    assert newcomers[0].cuts == [CutReason.MAX_CONNECTIONS]
    books.headers_read(late)
    books.body_read(late)
    last = Connection("last")
    books.opened(last)  # everybody else's request is read: the new connection is refused
    assert last.cuts == [CutReason.MAX_CONNECTIONS]
    assert busy.cuts == newcomers[1].cuts == late.cuts == []


def test_a_kept_alive_connection_waiting_again_is_the_newest_waiting_one() -> None:
    books, _ = guard(2)
    old, fresh = Connection("old"), Connection("fresh")
    books.opened(old)
    books.opened(fresh)
    books.headers_read(old)
    books.body_read(old)
    books.waiting(old)  # answered, kept alive: waits for its next request after `fresh` started waiting
    books.opened(Connection("new"))
    assert (fresh.cuts, old.cuts) == ([CutReason.MAX_CONNECTIONS], [])


def test_a_closed_connection_frees_its_slot_and_is_never_cut() -> None:
    books, registry = guard(1)
    gone = Connection("gone")
    books.opened(gone)
    books.closed(gone)
    books.waiting(gone)  # a late callback after close changes nothing
    books.opened(Connection("next"))
    assert gone.cuts == []
    assert registry.get_sample_value("plugwatch_receiver_open_connections") == 1


def test_cuts_are_logged_at_once_then_at_most_once_per_interval_with_their_count() -> None:
    timers = Timers()
    log = CutLog(10.0, lambda: {"open_connections": 7}, timers.schedule, clock=lambda: timers.now)
    with structlog.testing.capture_logs() as logged:
        for _ in range(1500):
            log.cut(CutReason.HEADER_TIMEOUT, "10.0.0.1:1")
        log.cut(CutReason.IDLE, "10.0.0.2:2")
        timers.advance(5)
        assert [(line["reason"], line["count"]) for line in logged] == [("header_timeout", 1), ("idle", 1)]
        timers.advance(5)
        log.cut(CutReason.BODY_TIMEOUT, "10.0.0.3:3")
        log.cut(CutReason.BODY_TIMEOUT, "10.0.0.3:4")
        log.flush()
    assert [(line["reason"], line["count"]) for line in logged] == [
        ("header_timeout", 1), ("idle", 1), ("header_timeout", 1499), ("body_timeout", 1), ("body_timeout", 1)]
    assert {line["log_level"] for line in logged} == {"warning"}
    assert logged[2]["last_client"] == "10.0.0.1:1"
    assert logged[2]["open_connections"] == 7


@pytest.mark.parametrize("reason", list(CutReason))
def test_every_reason_is_exported_from_the_start(reason: CutReason) -> None:
    _, registry = guard(10)
    assert cuts(registry, reason) == 0.0
    assert registry.get_sample_value("plugwatch_receiver_max_connections") == 10
