"""Every payload the simulator sends validates against Enode's OpenAPI 2024-10-01 webhook schemas."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from plugwatch.enode_signature import sign
from simulator.clock import iso, parse_iso
from simulator.stories import build_scenario

SPEC = Path("/work/shared/enode-openapi-2024-10-01.json")
if not SPEC.exists():  # the spec copy lives beside the repo in development; vendored copies may move it
    SPEC = Path(__file__).resolve().parents[2] / "docs" / "enode-openapi-2024-10-01.json"


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Merge two object schemas of an allOf (properties merged recursively, required united)."""
    out = dict(a)
    for key, value in b.items():
        if key == "properties":
            props = dict(out.get("properties", {}))
            for name, schema in value.items():
                props[name] = _merge(props[name], schema) if name in props else schema
            out["properties"] = props
        elif key == "required":
            out["required"] = sorted(set(out.get("required", [])) | set(value))
        else:
            out[key] = value
    return out


def _flatten(node: Any, components: dict[str, Any]) -> Any:
    """Resolve $refs and fold allOf into one schema (the spec's allOf branches each forbid extra keys)."""
    if isinstance(node, list):
        return [_flatten(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _flatten(components[node["$ref"].rsplit("/", 1)[-1]], components)
    if "allOf" in node:
        merged: dict[str, Any] = {}
        for part in node["allOf"]:
            merged = _merge(merged, _flatten(part, components))
        rest = {k: _flatten(v, components) for k, v in node.items() if k != "allOf"}
        return _merge(merged, rest)
    return {key: _flatten(value, components) for key, value in node.items()}


@cache
def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SPEC.read_text())
    return spec


@cache
def _validator(event_name: str) -> jsonschema.Draft202012Validator:
    spec = _spec()
    schema = spec["webhooks"][event_name]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator(_flatten(schema, spec["components"]["schemas"]))


@cache
def _scenario_events() -> tuple[dict[str, Any], ...]:
    return build_scenario(25, seed=7).events


@pytest.mark.skipif(not SPEC.exists(), reason="Enode's OpenAPI spec is not available")
def test_every_simulated_event_validates_against_its_webhook_schema() -> None:
    by_name: dict[str, int] = {}
    for event in _scenario_events():
        _validator(event["event"]).validate(event)
        by_name[event["event"]] = by_name.get(event["event"], 0) + 1
    assert set(by_name) >= {
        "user:vehicle:discovered", "user:vehicle:updated", "user:vehicle:deleted", "user:charger:discovered",
        "user:charger:updated", "user:charger:deleted", "user:vendor-action:updated",
    }


@pytest.mark.skipif(not SPEC.exists(), reason="Enode's OpenAPI spec is not available")
def test_system_events_validate_against_their_schemas() -> None:
    from simulator.payloads import heartbeat_event, test_event

    _validator("system:heartbeat").validate(heartbeat_event(0))
    _validator("enode:webhook:test").validate(test_event(0))


def test_timestamps_are_strictly_increasing_per_device_and_field() -> None:
    last: dict[tuple[str, str], int] = {}
    for event in _scenario_events():
        device = event.get("vehicle") or event.get("charger")
        if device is None or event["event"].endswith(":deleted"):
            continue
        for part in ("chargeState", "location"):
            raw = (device.get(part) or {}).get("lastUpdated")
            if raw is None:
                continue
            key, at = (device["id"], part), parse_iso(raw)
            assert at >= last.get(key, 0), (key, raw)
            last[key] = at


def test_vehicle_without_gps_has_a_location_only_when_plugged_into_a_located_charger() -> None:
    located: dict[str, str | None] = {}
    for event in _scenario_events():
        if "charger" in event:
            located[event["charger"]["id"]] = event["charger"]["location"]["id"]
        vehicle = event.get("vehicle")
        if vehicle is None or vehicle["location"]["latitude"] is not None or event["event"].endswith("deleted"):
            continue
        if vehicle["location"]["id"] is not None:
            assert located.get(vehicle["chargeState"]["pluggedInChargerId"]) == vehicle["location"]["id"]


def test_iso_round_trips_milliseconds() -> None:
    assert iso(1741975325512) == "2025-03-14T18:02:05.512Z"
    assert parse_iso("2025-03-14T18:02:05.512Z") == 1741975325512


def test_signature_matches_the_enode_reference_vector() -> None:
    body = b'[{"event":"enode:webhook:test","createdAt":"2025-03-14T18:31:07.221Z","version":"2024-10-01"}]'
    assert sign(body, "test-secret-0123456789abcdef") == "sha1=86adcae448b2167abd12e4d0be0f2fdba96bad7e"
    assert sign(b'{"payload":"example"}', "example-secret") == "sha1=e417e6fc2e7f8a78c93a35a7b344d36ce179fc8d"
