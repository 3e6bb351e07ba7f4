"""HandledLog: a line per delivery off the success path, summaries (at once, then per interval) for the rest."""

from __future__ import annotations

import pytest
import structlog

from receiver.handled_log import SUMMARISED, HandledLog
from receiver.metrics import Outcome
from tests.unit.test_receiver_connections import Timers


def test_successes_are_summarised_at_once_then_at_most_once_per_interval_and_at_shutdown() -> None:
    timers = Timers()
    log = HandledLog(10.0, timers.schedule, clock=lambda: timers.now)
    with structlog.testing.capture_logs() as logged:
        log.handled(Outcome.ACCEPTED, "d-0", 2, 0.004)
        for i in range(1, 1000):
            log.handled(Outcome.ACCEPTED if i % 10 else Outcome.DUPLICATE, f"d-{i}", 2, 0.001 * (i % 7))
        timers.advance(9)
        assert len(logged) == 1
        timers.advance(1)
        log.handled(Outcome.HEARTBEAT, "hb", 1, 0.002)
        log.flush()
        log.flush()  # nothing counted since: no line
    assert [{k: v for k, v in line.items() if k not in ("event", "log_level")} for line in logged] == [
        {"deliveries": 1, "events": 2, "slowest_ms": 4.0, "accepted": 1},
        {"deliveries": 999, "events": 1998, "slowest_ms": 6.0, "accepted": 900, "duplicate": 99},
        {"deliveries": 1, "events": 1, "slowest_ms": 2.0, "heartbeat": 1},
    ]
    assert {line["event"] for line in logged} == {"deliveries.handled"}


@pytest.mark.parametrize("outcome", sorted(set(Outcome) - SUMMARISED))
def test_every_other_outcome_gets_its_own_line(outcome: Outcome) -> None:
    log = HandledLog(10.0, Timers().schedule)
    with structlog.testing.capture_logs() as logged:
        log.handled(outcome, "odd-1", 3, 0.0125)
        log.flush()
    assert logged == [{"event": "delivery.handled", "log_level": "info", "delivery_id": "odd-1", "events": 3,
                       "outcome": outcome.value, "ms": 12.5}]
