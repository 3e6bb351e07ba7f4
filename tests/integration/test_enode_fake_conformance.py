"""The fake Enode answers in the shapes Enode's OpenAPI spec (2024-10-01) gives for each operation.

Keeps the fake honest: the client, location set-up, webhooks and reconcile are tested against these bodies.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from plugwatch.enode_api.client import EnodeClient
from plugwatch.enode_api.errors import EnodeError
from simulator.enode_demo import DEMO_CLIENT_ID, demo_enode, is_demo_enode, tell_demo_enode
from simulator.fake_enode import CLIENT_ID, CLIENT_SECRET, FakeEnode
from simulator.stories import build_scenario
from tests.support.enode_fixtures import enode_settings, serve
from tests.support.enode_objects import charger, vehicle
from tests.support.enode_schema import _Resolver, load_spec, validator
from tests.support.eventlog import alive_devices


def response_schema(path: str, method: str) -> dict[str, Any]:
    operation = load_spec()["paths"][path][method]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    return _Resolver(load_spec()).resolve(schema)  # type: ignore[no-any-return]


def assert_conforms(body: Any, path: str, method: str = "get") -> None:
    errors = sorted(validator(response_schema(path, method)).iter_errors(body), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


@pytest.fixture
def fake() -> FakeEnode:
    fake = FakeEnode()
    fake.vehicles["v1"] = vehicle("v1", "u1", plugged_in_charger_id="c1", location_id=None)
    fake.vehicles["v2"] = vehicle("v2", "u1")
    fake.chargers["c1"] = charger("c1", "u1", plugged_in_vehicle_id="v1")
    return fake


@pytest.fixture
def client(fake: FakeEnode) -> Iterator[EnodeClient]:
    with serve(fake) as server, EnodeClient.from_settings(enode_settings(server.url)) as built:
        yield built


def test_vehicle_and_charger_reads_conform(client: EnodeClient) -> None:
    assert_conforms(client.get("/vehicles"), "/vehicles")
    assert_conforms(client.get("/users/u1/vehicles"), "/users/{userId}/vehicles")
    assert_conforms(client.get("/chargers"), "/chargers")
    assert_conforms(client.get("/users/u1/chargers"), "/users/{userId}/chargers")
    assert_conforms(client.get("/chargers/c1"), "/chargers/{chargerId}")


def test_location_writes_and_reads_conform(client: EnodeClient) -> None:
    body = {"name": "Home", "latitude": 59.9, "longitude": 10.7, "timezoneName": "Europe/Oslo"}
    created = client.request("POST", "/users/u1/locations", json=body)
    assert_conforms(created, "/users/{userId}/locations", "post")
    assert_conforms(client.get("/users/u1/locations"), "/users/{userId}/locations")
    assigned = client.request("PUT", "/chargers/c1", json={"locationId": created["id"]})
    assert_conforms(assigned, "/chargers/{chargerId}", "put")


def test_webhook_operations_conform(client: EnodeClient) -> None:
    created = client.request("POST", "/webhooks", json={"url": "http://127.0.0.1:9/hook", "secret": "s" * 64})
    assert_conforms(created, "/webhooks", "post")
    assert_conforms(client.get("/webhooks"), "/webhooks")
    assert_conforms(client.get("/webhooks/" + created["id"]), "/webhooks/{webhookId}")
    patched = client.request("PATCH", "/webhooks/" + created["id"], json={"secret": "t" * 64})
    assert_conforms(patched, "/webhooks/{webhookId}", "patch")
    tested = client.request("POST", f"/webhooks/{created['id']}/test")
    assert tested["status"] == "FAILURE"  # nothing listens on port 9
    assert_conforms(tested, "/webhooks/{webhookId}/test", "post")



def test_the_demo_enode_serves_the_scenario_in_the_spec_shapes() -> None:
    """What `plugwatch up` serves as its Enode API: the scenario's final devices and Locations, spec-shaped."""
    scenario = build_scenario(4, seed=11)
    demo = demo_enode(scenario, CLIENT_ID, CLIENT_SECRET, ("http://127.0.0.1:9/webhooks/enode", "s" * 64))
    demo.observe(scenario.events)
    assert demo.vehicles
    assert demo.chargers
    assert demo.locations
    with serve(demo) as server, EnodeClient.from_settings(enode_settings(server.url)) as client:
        for path in ("/vehicles", "/chargers", "/locations"):
            assert_conforms(client.get(path, params={"pageSize": 50}), path)
        user = next(iter(demo.locations.values()))["userId"]
        assert_conforms(client.get(f"/users/{user}/locations"), "/users/{userId}/locations")
        charger_id = next(iter(demo.chargers))
        assert_conforms(client.get("/chargers/" + charger_id), "/chargers/{chargerId}")
        assert_conforms(client.get("/vehicles/" + next(iter(demo.vehicles))), "/vehicles/{vehicleId}")
        assert_conforms(client.get("/webhooks"), "/webhooks")


def test_simulate_tells_the_demo_api_its_scenario_over_http_signed_for_like_any_call() -> None:
    """`plugwatch simulate` in a second terminal: the demo's API then lists that scenario's devices too."""
    scenario = build_scenario(3, seed=12)
    demo = demo_enode(scenario, DEMO_CLIENT_ID, CLIENT_SECRET)
    with serve(demo) as server:
        settings = enode_settings(server.url, client_id=DEMO_CLIENT_ID)
        assert is_demo_enode(settings)
        assert not is_demo_enode(enode_settings(server.url))  # another client id: a real Enode, never told
        tell_demo_enode(settings, scenario.events)
        assert set(demo.vehicles) == alive_devices(scenario.events, "vehicle")
        assert set(demo.chargers) == alive_devices(scenario.events, "charger")
        with pytest.raises(EnodeError):
            tell_demo_enode(enode_settings(server.url, client_id=DEMO_CLIENT_ID, client_secret="wrong" * 4),
                            scenario.events)
