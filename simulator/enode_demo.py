"""The demo's Enode API: a fake Enode (`fake_enode`) holding the simulated users' Locations and devices.

    fake = demo_enode(scenario, client_id, client_secret)   # the users' Locations (from the world), no devices
    observe(fake, events)                                   # what the API returns after these webhook events

`plugwatch up` serves it on a free port, feeds it each delivery just before sending it (Enode's API is never
behind its webhooks) and exports its credentials and URLs, so `plugwatch enode reconcile` and the worker's
look-ups read the same vehicles and chargers the webhooks describe: a vehicle or charger as its newest
`:discovered` / `:updated` event shows it, gone after its `:deleted`. Charge actions are not listed (Enode
has no endpoint listing them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from simulator.fake_enode import FakeEnode
from simulator.stories import Scenario

TIMEZONE = "Europe/Oslo"  # the simulated places are in Scandinavia


def demo_enode(scenario: Scenario, client_id: str, client_secret: str) -> FakeEnode:
    fake = FakeEnode(client_id=client_id, client_secret=client_secret)
    created = scenario.events[0]["createdAt"] if scenario.events else "2025-01-01T00:00:00.000Z"
    named: dict[str, int] = {}
    for user_id, place in scenario.locations:
        if place.id is None:
            continue
        named[user_id] = count = named.get(user_id, 0) + 1
        fake.locations[place.id] = {
            "id": place.id, "userId": user_id, "name": "Home" if count == 1 else f"Place {count}",
            "latitude": place.latitude, "longitude": place.longitude, "timezoneName": TIMEZONE,
            "createdAt": created}
    return fake


def observe(fake: FakeEnode, events: Iterable[Mapping[str, Any]]) -> None:
    """Apply Enode webhook events, in the order Enode produced them, to what `fake` serves."""
    with fake.lock:
        for event in events:
            _, kind, verb = _split(event)
            if kind not in ("vehicle", "charger") or not isinstance(event.get(kind), Mapping):
                continue
            devices = fake.vehicles if kind == "vehicle" else fake.chargers
            body = dict(event[kind])
            if verb == "deleted":
                devices.pop(body["id"], None)
            else:
                devices[body["id"]] = body


def _split(event: Mapping[str, Any]) -> tuple[str, str, str]:
    parts = str(event.get("event", "")).split(":")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else ("", "", "")
