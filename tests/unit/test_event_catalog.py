"""The published event catalog: `schema/events.schema.json` is valid JSON Schema 2020-12 that names exactly the
event types and unplug reasons the core has, accepts the events the core builds and refuses near misses;
`schema/asyncapi.yaml` is AsyncAPI 3.0 over the same schema file, naming every event type."""

from __future__ import annotations

import re
from typing import Any

import httpx
import orjson
import pytest
import redis
import yaml
from jsonschema import Draft202012Validator

from plugwatch import keys
from tests.support.event_schema import ASYNCAPI, EVENTS_SCHEMA, check_event, schema, schema_problems, stream_events
from tests.support.sinks import Sink, SinkServer
from worker.core import EmittedEvent, EventType, UnplugReason

AT = 1741975325512  # 2025-03-14T18:02:05.512Z
STATE_LOST = "state_lost"  # announced by the lost-state work (issue 13); in the catalog ahead of the core


def home(kind: EventType, data: dict[str, Any]) -> EmittedEvent:
    return EmittedEvent("evt_" + "a" * 32, kind, AT, "usr-1", "veh-1", "chg-1", "loc-1", 7, data)


def failed(**changes: Any) -> dict[str, Any]:
    data = {"actionId": "act-1", "kind": "START", "targetType": "charger", "targetId": "chg-1", "state": "FAILED",
            "failureReason": {"type": "NO_RESPONSE", "detail": None}, "consecutiveFailures": 3}
    event = EmittedEvent("evt_" + "b" * 32, EventType.CONTROL_FAILED, AT, "usr-1", "veh-1", "chg-1", None, 8,
                         data).to_dict()
    return {**event, **changes}


def streak() -> dict[str, Any]:
    return EmittedEvent("evt_" + "c" * 32, EventType.CONTROL_FAILURE_STREAK, AT, "usr-1", "veh-1", None, None, 9,
                        {"consecutiveFailures": 10, "lastActionId": "act-10"}).to_dict()


def test_the_schema_is_valid_json_schema_2020_12() -> None:
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema())


def test_one_definition_per_event_type_of_the_core_in_the_top_level_one_of() -> None:
    branches = [schema()["$defs"][ref["$ref"].removeprefix("#/$defs/")] for ref in schema()["oneOf"]]
    assert sorted(branch["properties"]["type"]["const"] for branch in branches) == sorted(t.value for t in EventType)
    assert sorted(schema()["properties"]["type"]["enum"]) == sorted(t.value for t in EventType)
    for branch in branches:
        assert branch["additionalProperties"] is False
        assert branch["properties"]["data"]["additionalProperties"] is False
        assert set(branch["required"]) == set(branch["properties"]) == set(failed())


def test_the_unplug_reasons_are_the_cores_and_state_lost() -> None:
    reasons = schema()["$defs"]["unplugReason"]["enum"]
    assert sorted(reasons) == sorted({*(reason.value for reason in UnplugReason), STATE_LOST})
    assert STATE_LOST in {reason.value for reason in UnplugReason}  # the core emits it (after a lost state)


@pytest.mark.parametrize("reason", [*UnplugReason, STATE_LOST])
def test_every_unplug_reason_is_accepted(reason: str) -> None:
    check_event(home(EventType.UNPLUGGED_FROM_HOME, {"reason": reason}).to_json())


def test_events_as_the_core_builds_them_are_accepted() -> None:
    published = Draft202012Validator(schema())
    for event in (home(EventType.PLUGGED_IN_AT_HOME, {}).to_dict(), failed(), streak()):
        assert published.is_valid(event)
    check_event(home(EventType.PLUGGED_IN_AT_HOME, {}).to_json())
    check_event(orjson.dumps(failed()))
    check_event(orjson.dumps(streak()))


def test_control_failed_may_know_no_vehicle_charger_location_or_reason() -> None:
    """The nullable fields of control.failed: a charger target paired with no vehicle, no failureReason."""
    unknown = failed(vehicleId=None, chargerId=None, locationId=None, sequence=None)
    unknown["data"] = {**unknown["data"], "failureReason": None, "consecutiveFailures": None}
    check_event(unknown)
    check_event(failed(locationId="loc-1"))


@pytest.mark.parametrize(("event", "problem"), [
    (home(EventType.PLUGGED_IN_AT_HOME, {"reason": "unplugged"}).to_dict(), "data: Additional properties"),
    (home(EventType.UNPLUGGED_FROM_HOME, {"reason": "stolen"}).to_dict(), "data/reason: 'stolen' is not one of"),
    (home(EventType.UNPLUGGED_FROM_HOME, {}).to_dict(), "data: 'reason' is a required property"),
    ({**home(EventType.PLUGGED_IN_AT_HOME, {}).to_dict(), "chargerId": None}, "chargerId: None is not of type"),
    ({**home(EventType.PLUGGED_IN_AT_HOME, {}).to_dict(), "epoch": 1}, "(event): Additional properties"),
    ({**home(EventType.PLUGGED_IN_AT_HOME, {}).to_dict(), "sequence": 0}, "sequence: 0 is less than the minimum"),
    ({**home(EventType.PLUGGED_IN_AT_HOME, {}).to_dict(), "occurredAt": "2025-03-14T18:02:05Z"},
     "occurredAt: '2025-03-14T18:02:05Z' does not match"),
    ({**failed(), "data": {**failed()["data"], "failureReason": {"type": None, "detail": None}}},
     "data/failureReason"),
    ({**failed(), "data": {**failed()["data"], "state": "CONFIRMED"}}, "data/state: 'CONFIRMED' is not one of"),
    ({**streak(), "chargerId": "chg-1"}, "chargerId: 'chg-1' is not of type 'null'"),
    ({**streak(), "data": {"consecutiveFailures": 9, "lastActionId": "act-9"}}, "data/consecutiveFailures: 9"),
    ({**streak(), "type": "control.streak"}, "type: 'control.streak' is not one of"),
])
def test_near_misses_are_refused_saying_where(event: dict[str, Any], problem: str) -> None:
    assert not Draft202012Validator(schema()).is_valid(event)  # the schema file itself, as published
    problems = schema_problems(event)
    assert any(p.startswith(problem) for p in problems), problems
    with pytest.raises(AssertionError, match=r"does not match schema/events\.schema\.json"):
        check_event(orjson.dumps(event))


def asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text())
    return document


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return [*([node["$ref"]] if isinstance(node.get("$ref"), str) else []),
                *(ref for value in node.values() for ref in _refs(value))]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _pointer(document: Any, fragment: str) -> Any:
    for part in filter(None, fragment.split("/")):
        document = document[part.replace("~1", "/").replace("~0", "~")]
    return document


def test_the_asyncapi_document_parses_and_every_reference_resolves() -> None:
    document = asyncapi()
    assert document["asyncapi"] == "3.0.0"
    external = set()
    for ref in _refs(document):
        target, _, fragment = ref.partition("#")
        if target:
            assert (ASYNCAPI.parent / target).resolve() == EVENTS_SCHEMA, ref
            external.add(ref)
            _pointer(schema(), fragment)
        else:
            _pointer(document, fragment)
    assert {ref.partition("#")[2] for ref in external} >= {ref["$ref"].removeprefix("#") for ref in schema()["oneOf"]}


def test_the_asyncapi_webhook_names_every_event_type_with_the_standard_webhooks_headers() -> None:
    document = asyncapi()
    messages = document["components"]["messages"]
    channel = document["channels"]["webhook"]["messages"]
    webhook = [_pointer(document, ref["$ref"].removeprefix("#")) for ref in channel.values()]
    assert sorted(message["name"] for message in webhook) == sorted(t.value for t in EventType)
    for message in webhook:
        name = message["payload"]["schema"]["$ref"].rsplit("/", 1)[-1]
        assert schema()["$defs"][name]["properties"]["type"]["const"] == message["name"]
    headers = document["components"]["schemas"]["standardWebhooksHeaders"]
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(headers["required"])
    signature = re.compile(headers["properties"]["webhook-signature"]["pattern"])
    assert signature.fullmatch("v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4= v1,bm9wZQ==")
    assert messages["streamEntry"]["payload"]["schema"]["required"] == ["event"]


def test_the_asyncapi_stream_is_plugwatch_events_with_its_event_field() -> None:
    document = asyncapi()
    stream = document["channels"]["eventsStream"]
    assert stream["address"] == keys.EVENTS_STREAM
    entry = document["components"]["messages"]["streamEntry"]["payload"]["schema"]
    assert entry["properties"]["event"]["contentSchema"]["$ref"] == "./events.schema.json"


def test_a_sink_that_received_an_off_schema_webhook_fails_the_test() -> None:
    """The shared sink checks every webhook: a body off the catalog makes `requests` and stopping it raise."""
    good = home(EventType.PLUGGED_IN_AT_HOME, {}).to_json()
    bad = orjson.dumps({**orjson.loads(good), "data": {"n": 1}})
    sink = Sink()
    server = SinkServer(sink).__enter__()
    try:
        for body in (good, b'{"not": "a webhook"}'):  # the second has no webhook-id: not an event (e.g. fake Enode)
            headers = {"webhook-id": "evt_1"} if body == good else {}
            assert httpx.post(server.url + "/hook", content=body, headers=headers).status_code == 200
        assert len(sink.requests) == 2
        httpx.post(server.url + "/hook", content=bad, headers={"webhook-id": "evt_2"})
        with pytest.raises(AssertionError, match="data: Additional properties are not allowed"):
            sink.wait_for(3)
    finally:
        with pytest.raises(AssertionError, match="1 events off the schema"):
            server.__exit__(None, None, None)


def test_reading_plugwatch_events_fails_on_an_off_schema_entry(fake_redis: redis.Redis) -> None:
    good = home(EventType.PLUGGED_IN_AT_HOME, {}).to_json()
    fake_redis.xadd(keys.EVENTS_STREAM, {"event": good})
    assert stream_events(fake_redis) == [orjson.loads(good)]
    fake_redis.xadd(keys.EVENTS_STREAM, {"event": good.replace(b'"sequence":7', b'"sequence":"7"')})
    with pytest.raises(AssertionError, match="sequence: '7' is not of type 'integer'"):
        stream_events(fake_redis)
