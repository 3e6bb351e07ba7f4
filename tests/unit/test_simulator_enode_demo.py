"""The demo's Enode API holds what the scenario's webhooks describe: each device as its newest event shows it,
gone once deleted, and every Location of the world (with its coordinates)."""

from __future__ import annotations

from simulator.enode_demo import demo_enode
from simulator.stories import build_scenario, user_world
from tests.support.eventlog import alive_devices


def test_after_every_event_it_serves_the_worlds_devices_as_they_ended() -> None:
    scenario = build_scenario(6, seed=3)
    fake = demo_enode(scenario, "id", "secret")
    fake.observe(scenario.events)
    assert set(fake.vehicles) == alive_devices(scenario.events, "vehicle")
    assert set(fake.chargers) == alive_devices(scenario.events, "charger")
    world = user_world(3, 2)
    for vehicle in world.vehicles.values():  # the world's own devices, field by field
        served = fake.vehicles[vehicle.id]
        assert served["chargeState"]["pluggedInChargerId"] == vehicle.charger_id
        assert served["location"]["id"] == vehicle.location_id
    for charger in world.chargers.values():
        assert fake.chargers[charger.id]["location"]["id"] == charger.location_id
        assert fake.chargers[charger.id]["chargeState"]["pluggedInVehicleId"] == charger.vehicle_id


def test_it_is_never_ahead_of_the_events_it_was_given() -> None:
    scenario = build_scenario(2, seed=5)
    fake = demo_enode(scenario, "id", "secret")
    assert not fake.vehicles
    assert not fake.chargers
    first_vehicle = next(i for i, e in enumerate(scenario.events) if e["event"] == "user:vehicle:discovered")
    fake.observe(scenario.events[:first_vehicle])
    assert not fake.vehicles
    assert fake.chargers
    fake.observe(scenario.events[first_vehicle:first_vehicle + 1])
    [served] = fake.vehicles.values()
    assert served["chargeState"]["isPluggedIn"] is None  # as just discovered: Enode knows nothing else yet


def test_every_location_of_the_world_is_served_with_its_user_and_coordinates() -> None:
    scenario = build_scenario(5, seed=8)
    fake = demo_enode(scenario, "id", "secret")
    for index in range(5):
        world = user_world(8, index)
        for number, place in enumerate(world.locations, 1):
            served = fake.locations[place.id or ""]
            assert (served["userId"], served["latitude"], served["longitude"]) == (
                world.user_id, place.latitude, place.longitude)
            assert served["name"] == ("Home" if number == 1 else f"Place {number}")
    charger_locations = {e["charger"]["location"]["id"] for e in scenario.events if "charger" in e} - {None}
    assert charger_locations <= set(fake.locations)  # every Location a charger names exists
