"""Conformance with Enode's published webhook schemas (OpenAPI 3.1, 2024-10-01, section `webhooks`).

Payloads are generated from every webhook schema in the spec (`tests/support/enode_schema.py` resolves the
`$ref`s and merges the spec's closed `allOf` branches) and checked against the schema before use.
"""

from __future__ import annotations

from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import enode_objects
from tests.support.enode_schema import load_spec, payloads, validator, webhook_variants, with_nonempty_ids
from worker.core import (
    ActionUpdated,
    ChargerObserved,
    DecodeError,
    DeviceDeleted,
    Ignored,
    Observation,
    UserState,
    VehicleObserved,
    apply,
    decode_event,
)
from worker.core.timestamps import parse_ms

TRACKED_PREFIXES = ("user:vehicle:discovered", "user:vehicle:updated", "user:vehicle:deleted",
                    "user:charger:discovered", "user:charger:updated", "user:charger:deleted",
                    "user:vendor-action:updated")
SYSTEM_EVENTS = ("system:heartbeat", "enode:webhook:test")
RECEIVED_AT = 1_741_975_200_000  # 2025-03-14T18:00:00Z: when the test "received" each payload
VARIANTS = sorted(webhook_variants())
TRACKED = [name for name in VARIANTS if name.startswith(TRACKED_PREFIXES)]

FEW = settings(max_examples=20, deadline=None, database=None,
               # building one nested Enode object draws a lot of data; that is the point, not a problem
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _base_name(variant: str) -> str:
    return variant.split("[", 1)[0]


def _valid_payloads(variant: str, *, nonempty_ids: bool = False) -> st.SearchStrategy[Any]:
    schema = webhook_variants()[variant]
    if nonempty_ids:
        schema = with_nonempty_ids(schema)
    check = validator(schema)

    def schema_valid(payload: Any) -> Any:
        check.validate(payload)  # the generator must never drift from the schema
        return payload

    return payloads(schema).map(schema_valid)


def test_every_webhook_in_the_spec_is_covered() -> None:
    """Each event of the spec's `webhooks` section has at least one generated variant."""
    names = set(load_spec()["webhooks"])
    assert {_base_name(v) for v in VARIANTS} == names
    assert len(names) >= 28
    assert "user:vendor-action:updated[ChargeAction]" in VARIANTS


@pytest.mark.parametrize("variant", VARIANTS)
def test_resolved_schema_is_a_plain_json_schema(variant: str) -> None:
    schema = webhook_variants()[variant]
    jsonschema.Draft202012Validator.check_schema(schema)
    text = repr(schema)
    assert "'$ref'" not in text
    assert "'allOf'" not in text


def test_merged_schema_accepts_a_vehicle_update_the_literal_spec_rejects() -> None:
    """Why the merge exists: `allOf` of two closed objects rejects every real payload."""
    event = {
        "event": "user:vehicle:updated", "createdAt": "2025-03-14T18:02:11.512Z", "version": "2024-10-01",
        "user": {"id": "usr-1"}, "updatedFields": ["chargeState.pluggedInChargerId"],
        "vehicle": enode_objects.vehicle(
            "b3f1c0de-7a44-4c1e-9a0e-2d5f3e8a9c10", "usr-1",
            plugged_in_charger_id="9c2e5a71-1f0b-4d8e-b6a3-55e0c4f1d2aa",
            location_id="5a0d2c3e-8f61-4b7a-a1d9-0c4e7b2f6e31", updated="2025-03-14T18:02:05.000Z"),
    }
    literal = jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/UserVehicleUpdated", "components": load_spec()["components"]})
    assert not literal.is_valid(event)
    validator(webhook_variants()["user:vehicle:updated"]).validate(event)


@pytest.mark.parametrize("variant", VARIANTS)
def test_schema_valid_payload_is_decoded_ignored_or_cleanly_rejected(variant: str) -> None:
    """Any schema-valid payload: decode raises nothing but `DecodeError`, and applying it never raises.

    Events of devices plugwatch does not track (hvac, battery, inverter, meter, hem-system, schedules,
    credentials, smart-charging status, statistics) and system events are `Ignored` (acknowledged and
    counted by the shell, never quarantined).
    """
    untracked_kind = None if variant in TRACKED else "system" if variant in SYSTEM_EVENTS else "other"

    @FEW
    @given(payload=_valid_payloads(variant))
    def check(payload: dict[str, Any]) -> None:
        decoded = _decode_or_error(payload)
        if isinstance(decoded, DecodeError):
            assert untracked_kind is None, f"an untracked event was rejected: {decoded.reason}"
            assert decoded.reason
        elif untracked_kind is not None:
            assert isinstance(decoded, Ignored)
            assert decoded.kind == untracked_kind
        elif not isinstance(decoded, Ignored):
            apply(UserState(), decoded)

    check()


@pytest.mark.parametrize("variant", TRACKED)
def test_tracked_events_decode_without_error_and_apply(variant: str) -> None:
    """Schema-valid vehicle, charger and action events (with non-empty ids) decode to what they say."""

    @FEW
    @given(payload=_valid_payloads(variant, nonempty_ids=True))
    def check(payload: dict[str, Any]) -> None:
        decoded = decode_event(payload, RECEIVED_AT)
        _assert_decoded_as_said(variant, payload, decoded)
        if not isinstance(decoded, Ignored):
            apply(UserState(), decoded)

    check()


def _decode_or_error(payload: dict[str, Any]) -> Observation | Ignored | DecodeError:
    try:
        return decode_event(payload, RECEIVED_AT)
    except DecodeError as error:  # any other exception fails the test
        return error


def _assert_decoded_as_said(variant: str, payload: dict[str, Any], decoded: object) -> None:
    subject, verb = _base_name(variant).split(":")[1:]
    if subject == "vendor-action":
        _assert_action(variant, payload["vendorAction"], decoded)
        return
    device = payload[subject]
    assert getattr(decoded, "user_id", None) == payload["user"]["id"]
    if verb == "deleted":
        assert isinstance(decoded, DeviceDeleted)
        assert (decoded.device, decoded.device_id) == (subject, device["id"])
        return
    expected_type = VehicleObserved if subject == "vehicle" else ChargerObserved
    assert isinstance(decoded, expected_type)
    device_id = decoded.vehicle_id if isinstance(decoded, VehicleObserved) else decoded.charger_id
    assert device_id == device["id"]
    plug_key = "pluggedInChargerId" if subject == "vehicle" else "pluggedInVehicleId"
    assert decoded.plug is not None
    assert decoded.plug.value == (device["chargeState"].get(plug_key) or None)
    assert decoded.location is not None
    assert decoded.location.value == (device["location"].get("id") or None)


def _assert_action(variant: str, action: dict[str, Any], decoded: object) -> None:
    if not variant.endswith("[ChargeAction]"):
        assert isinstance(decoded, Ignored)  # max-current, HVAC and battery actions
        return
    assert isinstance(decoded, ActionUpdated)
    reason = action["failureReason"] or {}
    assert (decoded.action_id, decoded.target_type, decoded.target_id, decoded.action_kind) == (
        action["id"], action["targetType"], action["targetId"], action["kind"])
    assert (decoded.state.value, decoded.failure_type) == (action["state"], reason.get("type"))


def _rfc3339() -> st.SearchStrategy[str]:
    """RFC 3339 `date-time` in all its forms: years 0000-9999, lower-case t/z, leap seconds, long fractions."""
    two = st.integers(0, 99).map("{:02d}".format)
    offset = st.sampled_from(["Z", "z"]) | st.tuples(st.sampled_from("+-"), two, two).map(
        lambda o: f"{o[0]}{min(int(o[1]), 23):02d}:{min(int(o[2]), 59):02d}")
    return st.builds(
        "{}-{:02d}-{:02d}{}{:02d}:{:02d}:{:02d}{}{}".format,
        st.integers(0, 9999).map("{:04d}".format), st.integers(1, 12), st.integers(1, 28),
        st.sampled_from("Tt"), st.integers(0, 23), st.integers(0, 59), st.integers(0, 60),
        st.sampled_from(["", ".5", ".000", ".123456", ".123456789"]), offset)


def _vehicle_event(created: str, updated: str) -> dict[str, Any]:
    vehicle = enode_objects.vehicle("veh-1", "usr-1", plugged_in_charger_id="chg-1", location_id="loc-1",
                                    updated=updated)
    return {"event": "user:vehicle:updated", "createdAt": created, "version": "2024-10-01",
            "user": {"id": "usr-1"}, "vehicle": vehicle, "updatedFields": []}


def _action_event(created: str, updated: str) -> dict[str, Any]:
    action = {"id": "act-1", "userId": "usr-1", "createdAt": updated, "updatedAt": updated,
              "completedAt": updated, "state": "FAILED", "targetId": "chg-1", "targetType": "charger",
              "kind": "START", "failureReason": {"type": "NO_RESPONSE", "detail": "no reaction"}}
    return {"event": "user:vendor-action:updated", "createdAt": created, "version": "2024-10-01",
            "user": {"id": "usr-1"}, "vendorAction": action, "updatedFields": []}


@settings(FEW, max_examples=100)
@given(created=_rfc3339(), updated=_rfc3339(), build=st.sampled_from([_vehicle_event, _action_event]))
def test_any_rfc3339_time_decodes_or_is_rejected_naming_the_unreadable_field(
        created: str, updated: str, build: Any) -> None:
    """`format: date-time` allows forms Python cannot read or represent (year 0000, second 60, an offset
    that puts the instant in year 10000 UTC): never a crash; such a time rejects its event (the shell
    quarantines it alone) with a reason naming the field, and every readable time decodes and applies."""
    decoded = _decode_or_error(build(created, updated))
    if parse_ms(created) is None:
        assert isinstance(decoded, DecodeError)
        assert "createdAt" in decoded.reason
    elif parse_ms(updated) is None:
        assert isinstance(decoded, DecodeError)
        assert "lastUpdated" in decoded.reason or "updatedAt" in decoded.reason
    else:
        assert not isinstance(decoded, (Ignored, DecodeError))
        apply(UserState(), decoded)
