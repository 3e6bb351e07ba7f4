"""worker.delivery.flight: which outbox entries may be in flight together, and the POST thread pool."""

from __future__ import annotations

import threading
from functools import partial

import pytest

from worker.delivery.event_info import EventInfo, parse_event
from worker.delivery.flight import Pool, Window
from worker.delivery.outbox import OutboxEntry


def window_of(*keys: str) -> Window:
    """Entries 1-0, 2-0, ... with the given order keys, in that outbox order."""
    window = Window()
    for number, key in enumerate(keys, start=1):
        window.add(OutboxEntry(f"{number}-0", b"{}"), EventInfo(f"evt_{number}", "t", None, key))
    return window


def ids(taken: list[tuple[OutboxEntry, EventInfo]]) -> list[str]:
    return [entry.entry_id for entry, _ in taken]


def test_one_entry_per_key_in_outbox_order_up_to_the_count() -> None:
    window = window_of("a", "a", "b", "c", "b", "d")
    assert ids(window.ready(3)) == ["1-0", "3-0", "4-0"]
    assert ids(window.ready(5)) == ["6-0"]  # a, b, c are in flight; their later entries wait


def test_a_keys_next_entry_goes_only_once_its_previous_one_was_answered() -> None:
    window = window_of("a", "b", "a", "a")
    first = window.ready(16)
    assert ids(first) == ["1-0", "2-0"]
    window.answered(first[1][1])  # b answered: nothing of a may go yet
    assert window.ready(16) == []
    window.answered(first[0][1])
    assert ids(window.ready(16)) == ["3-0"]
    assert window.ready(16) == []


def test_the_retried_head_goes_first_but_never_before_an_earlier_entry_of_its_key() -> None:
    window = window_of("a", "b", "c")
    assert ids(window.ready(1, first="3-0")) == ["3-0"]
    held = window_of("a", "b", "a")
    assert ids(held.ready(1, first="3-0")) == ["1-0"]  # 3-0 waits behind 1-0 of the same key


@pytest.mark.parametrize(("event", "key"), [
    (b'{"id": "e1", "vehicleId": "v1", "userId": "u1"}', "vehicle:v1"),
    (b'{"id": "e1", "vehicleId": null, "userId": "u1"}', "user:u1"),
    (b'{"id": "e1", "vehicleId": null, "userId": null}', "event:e1"),
    (b'{"id": "e1", "vehicleId": "", "userId": 7}', "event:e1"),
])
def test_the_order_key_is_the_vehicle_else_the_user_else_the_event(event: bytes, key: str) -> None:
    parsed = parse_event(event)
    assert parsed is not None
    assert parsed.order_key == key


def test_the_pool_returns_every_result_and_an_exception_as_a_result() -> None:
    pool: Pool[int, int] = Pool(4, name="test")
    gate = threading.Event()

    def slow(n: int) -> int:
        gate.wait(5)
        return n * 10

    def broken() -> int:
        raise RuntimeError("boom")

    for n in range(3):
        pool.submit(n, partial(slow, n))
    pool.submit(3, broken)
    assert pool.in_flight == 4
    got: dict[int, int | Exception] = {}
    first = pool.results(timeout=5)  # the broken one ends at once, the others wait for the gate
    got.update(first)
    gate.set()
    while pool.in_flight:
        got.update(pool.results(timeout=5))
    pool.close()
    assert {k: v for k, v in got.items() if not isinstance(v, Exception)} == {0: 0, 1: 10, 2: 20}
    assert isinstance(got[3], RuntimeError)
    assert pool.results(timeout=0.01) == []
