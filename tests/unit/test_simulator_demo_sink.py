"""The demo sink of `plugwatch up`: one readable line per emitted event, only for signed events."""

from __future__ import annotations

import time

import httpx
import orjson

from plugwatch import signing
from simulator.demo_sink import create_sink, describe
from tests.conftest import TEST_DOWNSTREAM_SECRET
from tests.support.servers import ThreadedUvicorn

EVENT = {"id": "evt_1", "type": "vehicle.plugged_in_at_home", "occurredAt": "2025-03-14T18:02:05.000Z",
         "userId": "usr-1", "vehicleId": "b3f1c0de-7a44", "chargerId": "9c2e5a71-1f0b", "locationId": "5a0d2c3e-8f61",
         "sequence": 7, "data": {}}


def test_plugged_in_reads_as_a_sentence() -> None:
    line = describe(EVENT)
    assert "vehicle b3f1c0de… plugged in at home" in line
    assert "5a0d2c3e…" in line
    assert "#7" in line


def test_unplugged_names_the_reason_and_failures_name_the_count() -> None:
    unplugged = describe({**EVENT, "type": "vehicle.unplugged_from_home", "data": {"reason": "charger_deleted"}})
    assert "unplugged from home" in unplugged
    assert unplugged.endswith("charger_deleted")
    failed = describe({**EVENT, "type": "control.failed", "data": {
        "kind": "START", "targetType": "charger", "targetId": "9c2e5a71-1f0b", "state": "FAILED",
        "failureReason": {"type": "NO_RESPONSE"}, "consecutiveFailures": 3}})
    assert "START on charger 9c2e5a71… FAILED (NO_RESPONSE)" in failed
    assert failed.endswith("in a row: 3")


def test_sink_prints_signed_events_and_rejects_unsigned_ones() -> None:
    printed: list[str] = []
    body = orjson.dumps(EVENT)
    headers = signing.signature_headers(signing.decode_secret(TEST_DOWNSTREAM_SECRET), "evt_1", int(time.time()),
                                        body)
    with ThreadedUvicorn(create_sink(TEST_DOWNSTREAM_SECRET, printed.append)) as server:
        assert httpx.post(server.url + "/events", content=body, headers=headers).status_code == 204
        assert httpx.post(server.url + "/events", content=body).status_code == 401
    assert printed[0] == describe(EVENT)
    assert "bad signature" in printed[1]


def test_the_sequence_is_printed_relative_to_the_epoch_base() -> None:
    """The core numbers a vehicle's events from its epoch's base (Unix ms): the line shows the count in it."""
    base = 1_764_855_000_000
    assert " #3 " in describe({**EVENT, "sequence": base + 3}, sequence_base=base)
    assert " #7 " in describe(EVENT, sequence_base=base)  # tracked before the epoch: its own number


def test_the_sink_prints_relative_sequences_while_consumers_get_the_real_value() -> None:
    base = 1_764_855_000_000
    printed: list[str] = []
    event = {**EVENT, "sequence": base + 2}
    body = orjson.dumps(event)
    headers = signing.signature_headers(signing.decode_secret(TEST_DOWNSTREAM_SECRET), "evt_1", int(time.time()),
                                        body)
    with ThreadedUvicorn(create_sink(TEST_DOWNSTREAM_SECRET, printed.append, lambda: base)) as server:
        assert httpx.post(server.url + "/events", content=body, headers=headers).status_code == 204
    assert " #2 vehicle b3f1c0de… plugged in at home" in printed[0]
    assert str(base + 2) not in printed[0]
