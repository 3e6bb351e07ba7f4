"""worker.delivery.slowness: a slow URL's read timeout doubles after a time-out and is kept while it stays slow."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from worker.delivery.slowness import Verdict, after_answer, attempts_bound, raised, timeout_for


def test_the_timeout_doubles_up_to_the_max_and_never_shrinks_on_a_time_out() -> None:
    steps = [15.0]
    for _ in range(5):
        steps.append(raised(steps[-1], 120.0))
    assert steps == [15, 30, 60, 120, 120, 120]
    assert raised(100.0, 120.0) == 120.0
    assert raised(15.0, 15.0) == 15.0  # max == base: raising is off


def test_a_url_that_was_never_slow_uses_the_base_timeout() -> None:
    assert timeout_for(0.0, 15.0) == 15.0
    assert timeout_for(60.0, 15.0) == 60.0


def test_the_bound_is_one_attempt_more_than_the_doublings_from_base_to_max() -> None:
    assert attempts_bound(15, 120) == 4  # 15 -> 30 -> 60 -> 120
    assert attempts_bound(0.5, 4) == 4
    assert attempts_bound(15, 100) == 4  # 15 -> 30 -> 60 -> 100
    assert attempts_bound(15, 15) == 1


def answer(elapsed: float, *, now: float = 1000.0, raised_timeout: float = 60.0, slow_at: float = 990.0) -> Verdict:
    return after_answer(elapsed, now, raised_timeout=raised_timeout, slow_at=slow_at, base=15.0, reset_after=600.0)


def test_a_slow_answer_keeps_the_raised_timeout_and_notes_the_time_now_and_then() -> None:
    assert answer(40.0, slow_at=990.0) is Verdict.UNCHANGED  # noted 10 s ago: no write per event
    assert answer(40.0, slow_at=900.0) is Verdict.STILL_SLOW  # noted 100 s ago (over a tenth of 600 s)


def test_fast_answers_restore_the_base_only_after_the_reset_time_without_a_slow_one() -> None:
    assert answer(1.0, slow_at=990.0) is Verdict.UNCHANGED
    assert answer(1.0, slow_at=1000.0 - 600.0) is Verdict.RECOVERED


def test_a_url_at_the_base_timeout_is_never_changed_by_an_answer() -> None:
    assert answer(40.0, raised_timeout=0.0) is Verdict.UNCHANGED
    assert answer(1.0, raised_timeout=0.0, slow_at=0.0) is Verdict.UNCHANGED


@given(st.lists(st.floats(min_value=0.01, max_value=4.0), min_size=1, max_size=40),
       st.floats(min_value=0.1, max_value=2.0))
def test_a_sink_answering_within_the_max_gets_each_event_at_most_the_bound_and_k_extra_in_all(
    latencies: list[float], base: float
) -> None:
    """Simulates the drainer's rule: one attempt per event until one is answered within its timeout."""
    maximum, raised_timeout, now, slow_at = 4.0, 0.0, 0.0, 0.0
    arrivals = []
    for latency in latencies:
        count = 0
        while True:
            count += 1
            timeout = timeout_for(raised_timeout, base)
            if latency > timeout and timeout < maximum:  # timed out: the sink got it anyway
                raised_timeout, slow_at = raised(timeout, maximum), now
                now += timeout
                continue
            verdict = after_answer(latency, now, raised_timeout=raised_timeout, slow_at=slow_at, base=base,
                                   reset_after=600.0)
            if verdict is Verdict.STILL_SLOW:
                slow_at = now
            now += latency
            break
        arrivals.append(count)
    bound = attempts_bound(base, maximum)
    assert max(arrivals) <= bound
    assert sum(arrivals) - len(arrivals) <= bound - 1
