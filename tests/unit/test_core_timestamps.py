"""Timestamps within reason: a clock far ahead never wins over real data, an unrepresentable instant is a
DecodeError (its event is quarantined alone), and parsing and formatting never raise."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_core_rules import HOME, C, action, charger, kinds, run, ts, vehicle
from worker.core import (
    ActionUpdated,
    CoreConfig,
    DecodeError,
    UserState,
    VehicleObserved,
    apply,
    decode_event,
)
from worker.core.timestamps import MAX_MS, MIN_MS, format_ms, parse_ms

YEAR_2099 = "2099-01-01T00:00:00.000Z"
PLUGGED, UNPLUGGED = ("vehicle.plugged_in_at_home", None), ("vehicle.unplugged_from_home", "unplugged")


def received(payload: dict[str, Any]) -> int:
    return (parse_ms(payload["createdAt"]) or 0) + 1000


def with_time(payload: dict[str, Any], path: str, value: str) -> dict[str, Any]:
    container = payload
    *parents, key = path.split(".")
    for part in parents:
        container = container[part]
    container[key] = value
    return payload


def test_a_2099_last_updated_is_clamped_and_real_updates_after_it_win() -> None:
    bogus = with_time(vehicle(C, HOME, 10), "vehicle.chargeState.lastUpdated", YEAR_2099)
    bogus = with_time(bogus, "vehicle.location.lastUpdated", YEAR_2099)
    obs = decode_event(bogus, received(bogus))
    assert isinstance(obs, VehicleObserved)
    assert obs.skewed, "counted by the shell (plugwatch_worker_clock_skew_total)"
    assert obs.plug is not None
    assert obs.plug.at == received(bogus), "clamped to the receipt time, not receipt + bound"

    state, events = run(charger(HOME, 0))
    for payload in (bogus, vehicle(None, HOME, 12), vehicle(C, HOME, 20), vehicle(None, "loc-public", 30)):
        result = apply(state, decode_event(payload, received(payload)))
        state = result.state
        events.extend(result.events)
    assert kinds(events) == [PLUGGED, UNPLUGGED, PLUGGED, UNPLUGGED], "the vehicle follows the real updates"
    assert [e.to_dict()["occurredAt"] for e in events] == [format_ms(received(bogus)), ts(12), ts(20), ts(30)]


def test_a_timestamp_within_the_skew_bound_is_kept() -> None:
    payload = vehicle(C, HOME, 10)
    obs = decode_event(payload, received(payload) - 200_000, CoreConfig(max_clock_skew_seconds=300))
    assert isinstance(obs, VehicleObserved)
    assert not obs.skewed
    assert obs.plug is not None
    assert obs.plug.at == parse_ms(ts(10))
    assert decode_event(payload, received(payload) - 200_000, CoreConfig(max_clock_skew_seconds=60)).skewed


def test_a_2099_created_at_without_last_updated_is_clamped() -> None:
    payload = with_time(vehicle(C, HOME, 10), "createdAt", YEAR_2099)
    del payload["vehicle"]["chargeState"]["lastUpdated"]
    obs = decode_event(payload, parse_ms(ts(11)) or 0)
    assert isinstance(obs, VehicleObserved)
    assert obs.skewed
    assert obs.at == obs.plug.at == parse_ms(ts(11))  # type: ignore[union-attr]


def test_a_2099_confirmation_does_not_hide_every_later_failure() -> None:
    confirmed = with_time(action("ok", "CONFIRMED", 10), "vendorAction.updatedAt", YEAR_2099)
    obs = decode_event(confirmed, received(confirmed))
    assert isinstance(obs, ActionUpdated)
    assert obs.skewed
    state = apply(UserState(), obs).state
    _, events = run(action("f1", "FAILED", 20), action("f2", "FAILED", 21), state=state)
    assert [e.data["consecutiveFailures"] for e in events] == [1, 2]


@pytest.mark.parametrize("path", ["createdAt", "vehicle.chargeState.lastUpdated", "vehicle.location.lastUpdated"])
@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+00:01",
                                   "0000-01-01T00:00:00Z", "2025-03-14T23:59:60Z", "soon"])
def test_an_unrepresentable_device_time_is_a_decode_error_naming_it(path: str, value: str) -> None:
    payload = with_time(vehicle(C, HOME, 10), path, value)
    with pytest.raises(DecodeError, match=path.rsplit(".", 1)[-1]):
        decode_event(payload, received(vehicle(C, HOME, 10)))


@pytest.mark.parametrize("path", ["createdAt", "vendorAction.updatedAt"])
def test_an_unrepresentable_action_time_is_a_decode_error_naming_it(path: str) -> None:
    payload = with_time(action("a1", "FAILED", 10), path, "9999-12-31T23:59:59-23:59")
    with pytest.raises(DecodeError, match=path.rsplit(".", 1)[-1]):
        decode_event(payload, received(action("a1", "FAILED", 10)))


def test_the_ends_of_the_representable_range_parse_and_format() -> None:
    assert parse_ms("0001-01-01T00:00:00Z") == MIN_MS
    assert parse_ms("9999-12-31T23:59:59.999Z") == MAX_MS
    assert parse_ms("9999-12-31T23:59:59.999-00:00") == MAX_MS
    assert parse_ms("9999-12-31T23:59:59.9995Z") == MAX_MS, "sub-millisecond digits are dropped, not rounded up"
    assert format_ms(MIN_MS) == "0001-01-01T00:00:00.000Z"
    assert format_ms(MAX_MS) == "9999-12-31T23:59:59.999Z"


@settings(max_examples=500, deadline=None)
@given(st.integers())
def test_format_ms_is_total_and_parse_ms_inverts_it_in_range(ms: int) -> None:
    text = format_ms(ms)
    assert parse_ms(text) == min(max(ms, MIN_MS), MAX_MS)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.timezones()) | st.datetimes(), st.sampled_from(["seconds", "milliseconds", "auto"]))
def test_parse_ms_never_raises_and_every_result_formats(moment: Any, timespec: str) -> None:
    ms = parse_ms(moment.isoformat(timespec=timespec))
    if ms is not None:
        assert parse_ms(format_ms(ms)) == ms
