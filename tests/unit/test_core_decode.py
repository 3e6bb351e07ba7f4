"""Tolerant decoding: unknown fields ignored, unknown values mapped, only unusable tracked events raise."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_core_rules import action, charger, vehicle
from worker.core import (
    ActionState,
    ActionUpdated,
    ChargerObserved,
    DecodeError,
    DeviceDeleted,
    Fact,
    Ignored,
    VehicleObserved,
    decode_event,
)
from worker.core.timestamps import format_ms, parse_ms

_LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
_JSON = st.recursive(_LEAVES, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
_KEYS = st.sampled_from(["id", "userId", "user", "createdAt", "chargeState", "location", "lastUpdated", "kind",
                         "targetType", "targetId", "state", "failureReason", "updatedAt", "pluggedInChargerId"])
JSON_OBJECTS = st.dictionaries(_KEYS | st.text(max_size=5), _JSON, max_size=8)
RECEIVED_AT = 1_741_975_400_000  # 2025-03-14T18:03:20Z: when these events were received


def test_reference_example_a_decodes_to_plug_and_location_facts() -> None:
    raw = {
        "event": "user:vehicle:updated", "createdAt": "2025-03-14T18:02:11.512Z", "version": "2024-10-01",
        "user": {"id": "usr-4711"},
        "vehicle": {"id": "b3f1", "userId": "usr-4711", "vendor": "VOLKSWAGEN", "somethingNew": {"x": 1},
                    "chargeState": {"pluggedInChargerId": "9c2e", "lastUpdated": "2025-03-14T18:02:05.000Z",
                                    "powerDeliveryState": "PLUGGED_IN:SOMETHING_NEW"},
                    "location": {"id": "5a0d", "latitude": 59.9, "longitude": 10.7,
                                 "lastUpdated": "2025-03-14T18:01:40.000Z"}},
        "updatedFields": ["chargeState.pluggedInChargerId"],
    }
    obs = decode_event(raw, RECEIVED_AT)
    assert obs == VehicleObserved(
        "usr-4711", "b3f1", parse_ms("2025-03-14T18:02:11.512Z") or 0,
        Fact(parse_ms("2025-03-14T18:02:05.000Z") or 0, "9c2e"),
        Fact(parse_ms("2025-03-14T18:01:40.000Z") or 0, "5a0d"), RECEIVED_AT,
    )


def test_charger_location_id_is_read_from_location_object() -> None:
    obs = decode_event(charger("loc", 0), RECEIVED_AT)
    assert isinstance(obs, ChargerObserved)
    assert obs.location is not None
    assert obs.location.value == "loc"


def test_discovered_event_with_null_state_learns_nothing_but_the_device() -> None:
    raw = {"event": "user:vehicle:discovered", "createdAt": "2025-03-14T18:00:00Z", "version": "2024-10-01",
           "user": {"id": "u"}, "vehicle": {"id": "v", "chargeState": None, "location": None,
                                            "information": {"brand": "Tesla"}}}
    obs = decode_event(raw, RECEIVED_AT)
    assert isinstance(obs, VehicleObserved)
    assert (obs.plug, obs.location) == (None, None)


def test_missing_last_updated_falls_back_to_created_at() -> None:
    raw = vehicle("c", "l", 0)
    del raw["vehicle"]["chargeState"]["lastUpdated"]
    obs = decode_event(raw, RECEIVED_AT)
    assert isinstance(obs, VehicleObserved)
    assert obs.plug is not None
    assert obs.plug.at == obs.at


def test_deleted_events_decode() -> None:
    raw = {"event": "user:charger:deleted", "createdAt": "2025-03-14T18:00:00Z", "version": "2024-10-01",
           "user": {"id": "u"}, "charger": {"id": "c"}}
    deleted_at = parse_ms("2025-03-14T18:00:00Z") or 0
    assert decode_event(raw, RECEIVED_AT) == DeviceDeleted("u", "charger", "c", deleted_at, RECEIVED_AT)


def test_unknown_action_state_is_mapped_not_raised() -> None:
    obs = decode_event(action("a", "BRAND_NEW_STATE", 1), RECEIVED_AT)
    assert isinstance(obs, ActionUpdated)
    assert obs.state is ActionState.UNKNOWN


@pytest.mark.parametrize("payload", [
    {"event": "system:heartbeat", "createdAt": "2025-03-14T18:30:00Z", "version": "2024-10-01", "pendingEvents": 0},
    {"event": "enode:webhook:test", "createdAt": "2025-03-14T18:30:00Z", "version": "2024-10-01"},
    {"event": "user:hvac:updated", "user": {"id": "u"}, "hvac": {}},
    {"event": "user:credentials:invalidated", "user": {"id": "u"}, "vendor": "TESLA"},
    {"event": "user:vehicle:smart-charging-status-updated", "user": {"id": "u"}},
    {"event": "user:vendor-action:updated", "user": {"id": "u"},
     "vendorAction": {"id": "x", "targetType": "hvac", "targetId": "h"}},
    {"event": "user:vendor-action:updated", "user": {"id": "u"},
     "vendorAction": {"id": "x", "targetType": "charger", "targetId": "c", "targetCurrent": 16}},
    {"event": "some:future:event"},
])
def test_events_plugwatch_does_not_track_are_ignored(payload: dict[str, Any]) -> None:
    assert isinstance(decode_event(payload, RECEIVED_AT), Ignored)


@pytest.mark.parametrize(("payload", "reason"), [
    ([], "not a JSON object"),
    ({"createdAt": "2025-03-14T18:30:00Z"}, "no string 'event'"),
    ({"event": "user:vehicle:updated", "createdAt": "2025-03-14T18:30:00Z", "user": {"id": "u"}}, "vehicle is"),
    ({"event": "user:vehicle:updated", "user": {"id": "u"}, "vehicle": {"id": "v"}}, "createdAt"),
    ({"event": "user:vehicle:updated", "createdAt": "2025-03-14T18:30:00Z", "vehicle": {"id": "v"}}, "userId"),
    ({"event": "user:vehicle:updated", "createdAt": "2025-03-14T18:30:00Z", "user": {"id": "u"},
      "vehicle": {"id": 7}}, "vehicle.id"),
    ({"event": "user:charger:updated", "createdAt": "2025-03-14T18:30:00Z", "user": {"id": "u"},
      "charger": {"id": "c", "location": {"id": 42}}}, "location.id"),
    ({"event": "user:charger:updated", "createdAt": "2025-03-14T18:30:00Z", "user": {"id": "u"},
      "charger": {"id": "c", "chargeState": "plugged"}}, "chargeState is not an object"),
])
def test_unusable_tracked_events_raise_decode_error_with_reason(payload: object, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_event(payload, RECEIVED_AT)


@pytest.mark.parametrize(("text", "ms"), [
    ("2025-03-14T18:02:05.512Z", 1_741_975_325_512),
    ("2025-03-14T18:02:05Z", 1_741_975_325_000),
    ("2025-03-14T19:02:05+01:00", 1_741_975_325_000),
    ("not a time", None),
    (None, None),
    (1234, None),
])
def test_parse_ms(text: object, ms: int | None) -> None:
    assert parse_ms(text) == ms


def test_format_ms_round_trips() -> None:
    assert format_ms(1_741_975_325_512) == "2025-03-14T18:02:05.512Z"
    assert parse_ms(format_ms(1_741_975_325_007)) == 1_741_975_325_007


def test_lower_case_rfc3339_separators_parse() -> None:
    assert parse_ms("2025-03-14t18:02:05.512z") == 1_741_975_325_512


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["user:vehicle:updated", "user:charger:updated", "user:vendor-action:updated",
                        "user:vehicle:deleted", "system:heartbeat"]), JSON_OBJECTS)
def test_decode_event_raises_nothing_but_decode_error_on_arbitrary_json(name: str, body: dict[str, Any]) -> None:
    """Attacker-shaped content costs one quarantined event, never a crash (e.g. an object as an action's kind)."""
    body["event"] = name
    for key in ("vehicle", "charger", "vendorAction"):
        body.setdefault(key, {"kind": {"x": 1}, "targetType": ["charger"], "id": "a", "chargeState": []})
    with contextlib.suppress(DecodeError):
        decode_event(body, RECEIVED_AT)


def test_an_object_as_an_action_kind_is_ignored_not_a_crash() -> None:
    raw = action("a", "FAILED", 1)
    raw["vendorAction"]["kind"] = {"x": 1}
    assert isinstance(decode_event(raw, RECEIVED_AT), Ignored)
