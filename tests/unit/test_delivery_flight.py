"""worker.delivery.flight: which outbox entries may be in flight together, and the POST thread pool."""

from __future__ import annotations

import asyncio
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
    window.settled()
    assert window.ready(16) == []
    window.answered(first[0][1])
    window.settled()
    assert ids(window.ready(16)) == ["3-0"]
    assert window.ready(16) == []


def test_a_keys_next_entry_waits_until_its_answered_one_is_settled_and_says_so() -> None:
    """Answered is not enough: the next event of a key goes only once the answered one was finished in the
    outbox (a crash in between would otherwise let the later event's first send overtake the earlier's)."""
    window = window_of("a", "b", "a", "c")
    first = window.ready(16)
    assert ids(first) == ["1-0", "2-0", "4-0"]
    window.answered(first[1][1])  # b: no later entry of b waits
    assert not window.waits_on_settling()
    window.answered(first[0][1])  # a: 3-0 waits for it
    assert window.waits_on_settling()
    assert window.ready(16) == []
    window.settled()
    assert not window.waits_on_settling()
    assert ids(window.ready(16)) == ["3-0"]


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
    async def run() -> tuple[dict[int, int | Exception], list[tuple[int, int | Exception]]]:
        pool: Pool[int, int] = Pool()
        gate = asyncio.Event()

        async def slow(n: int) -> int:
            await gate.wait()
            return n * 10

        async def broken() -> int:
            raise RuntimeError("boom")

        for n in range(3):
            pool.submit(n, partial(slow, n))
        pool.submit(3, broken)
        assert pool.in_flight == 4
        got: dict[int, int | Exception] = dict(await pool.results(wait=5))  # the broken one ends at once
        assert list(got) == [3]
        gate.set()
        while pool.in_flight:
            got.update(await pool.results(wait=5))
        left = await pool.results(wait=0.01)
        await pool.close()
        return got, left

    got, left = asyncio.run(run())
    assert {k: v for k, v in got.items() if not isinstance(v, Exception)} == {0: 0, 1: 10, 2: 20}
    assert isinstance(got[3], RuntimeError)
    assert left == []


def test_a_pool_closed_early_cancels_what_is_still_in_flight() -> None:
    async def run() -> bool:
        pool: Pool[int, None] = Pool()
        never = asyncio.Event()
        pool.submit(1, never.wait)  # type: ignore[arg-type]
        await asyncio.sleep(0)
        await pool.close()
        return pool.in_flight == 1 and await pool.results(wait=0.01) == []

    assert asyncio.run(run())
