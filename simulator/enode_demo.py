"""The demo's Enode API: a fake Enode (`fake_enode`) holding the simulated users' Locations and devices.

    fake = demo_enode(scenario, client_id, client_secret, webhook=(url, secret))   # Locations, the webhook
    fake.observe(events)                                       # what the API returns after these webhook events
    tell_demo_enode(settings, events)                          # the same from another process (`simulate`)

`plugwatch up` serves it on a free port with the client id `DEMO_CLIENT_ID`, feeds it each delivery just
before sending it (Enode's API is never behind its webhooks) and exports its credentials and URLs, so
`plugwatch enode reconcile`, `enode webhook show|test` and the worker's look-ups read the same vehicles,
chargers and webhook the simulated traffic describes. `plugwatch simulate` tells it its scenario too when
the Enode settings name it (that client id: a real Enode never has it).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from plugwatch.enode_api.client import EnodeClient, RetryPolicy
from plugwatch.settings import Settings
from simulator.fake_enode import SIMULATOR_PATH, FakeEnode
from simulator.payloads import API_VERSION
from simulator.stories import Scenario

DEMO_CLIENT_ID = "plugwatch-up-demo"
TIMEZONE = "Europe/Oslo"  # the simulated places are in Scandinavia
CHUNK = 500  # events per POST /simulator/events


def demo_enode(scenario: Scenario, client_id: str, client_secret: str,
               webhook: tuple[str, str] | None = None) -> FakeEnode:
    """The scenario's Locations (no devices until it observes their events) and the webhook (url, secret)."""
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
    if webhook is not None:
        hook_id = str(uuid.uuid4())
        fake.webhooks[hook_id] = {"id": hook_id, "url": webhook[0], "events": ["*"], "lastSuccess": created,
                                  "isActive": True, "createdAt": created, "apiVersion": API_VERSION,
                                  "authentication": None}
        fake.webhook_secrets[hook_id] = webhook[1]
    return fake


def is_demo_enode(settings: Settings) -> bool:
    return settings.enode.api_configured and settings.enode.client_id == DEMO_CLIENT_ID


def tell_demo_enode(settings: Settings, events: Sequence[Mapping[str, Any]]) -> None:
    """POST `events` to the demo's Enode API (raises EnodeError if it does not take them)."""
    # one quick attempt: a demo that is gone must not hold up the webhooks (or `simulate`'s "not reachable")
    with EnodeClient.from_settings(settings, retry=RetryPolicy(max_attempts=1), timeout_seconds=2.0) as client:
        for start in range(0, len(events), CHUNK):
            client.request("POST", SIMULATOR_PATH, json=list(events[start:start + CHUNK]))
