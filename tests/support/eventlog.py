"""Realistic Enode event logs for worker tests and benchmarks, and a way to feed them to the ingest stream.

    generate(seed, users=..., events_per_user=...) -> list[event dict]   causal order, interleaved users
    batch(events, size, rng) -> list[Delivery]                          consecutive events per delivery
    with_duplicates(deliveries, rng, ratio) -> list[Delivery]           redelivered events, new ids
    feed(connection, deliveries)                                         XADD d/b/t as the receiver does
    received_at(event) -> ms                                             a receipt time for direct decoding
    reference_facts(events) -> {user id: facts}                         the pure core, applied in order
    alive_devices(events, "vehicle") -> {id}                            discovered and not deleted in a log

Each user has a vehicle, a home charger at a home Location (the charger's location is learnt after a while,
as when an installer sets it late), sometimes a second charger that is later deleted, and wanders through
plug-in at home, unplug, driving, public charging, location changes and START/STOP actions that fail,
get confirmed or are cancelled. Payload shapes follow the examples A–C of enode-api-reference.md.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import redis

from plugwatch import epoch, keys
from tests.support.event_schema import check_event
from worker.core import DEFAULT_CONFIG, CoreConfig, UserState, apply, decode_event
from worker.core import Ignored as IgnoredEvent

VERSION = "2024-10-01"
START = datetime(2025, 3, 14, 6, 0, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _capabilities(*names: str) -> dict[str, Any]:
    return {name: {"isCapable": True, "interventionIds": []} for name in names}


def vehicle_event(user: str, vehicle: str, at: datetime, *, charger: str | None, location: str | None,
                  verb: str = "updated") -> dict[str, Any]:
    when = _iso(at)
    plugged = charger is not None or location == "public"
    return {
        "event": f"user:vehicle:{verb}", "createdAt": _iso(at + timedelta(milliseconds=512)), "version": VERSION,
        "user": {"id": user},
        "vehicle": {
            "id": vehicle, "userId": user, "vendor": "VOLKSWAGEN", "lastSeen": when, "isReachable": True,
            "information": {"vin": "WVWZZZE1ZPP000001", "brand": "Volkswagen", "model": "ID.4", "year": 2023,
                            "displayName": "Family car"},
            "chargeState": {
                "batteryLevel": 41, "range": 190, "isPluggedIn": plugged, "isCharging": False,
                "isFullyCharged": False, "batteryCapacity": 77, "chargeLimit": 80, "chargeRate": None,
                "chargeTimeRemaining": None, "lastUpdated": when, "maxCurrent": 16,
                "powerDeliveryState": "PLUGGED_IN:INITIALIZING" if plugged else "UNPLUGGED",
                "pluggedInChargerId": charger,
            },
            "smartChargingPolicy": {"isEnabled": False, "deadline": None, "minimumChargeLimit": 0},
            "location": {"id": None if location == "public" else location, "latitude": 59.9139,
                         "longitude": 10.7522, "lastUpdated": when},
            "odometer": {"distance": 12000, "lastUpdated": when},
            "capabilities": _capabilities("information", "chargeState", "location", "odometer", "setMaxCurrent",
                                          "startCharging", "stopCharging", "smartCharging"),
            "scopes": ["vehicle:read:data", "vehicle:read:location", "vehicle:control:charging"],
        },
        "updatedFields": ["chargeState.isPluggedIn", "chargeState.pluggedInChargerId", "location.id"],
    }


def charger_event(user: str, charger: str, at: datetime, *, vehicle: str | None, location: str | None,
                  verb: str = "updated") -> dict[str, Any]:
    when = _iso(at)
    return {
        "event": f"user:charger:{verb}", "createdAt": _iso(at + timedelta(milliseconds=700)), "version": VERSION,
        "user": {"id": user},
        "charger": {
            "id": charger, "userId": user, "vendor": "EASEE", "lastSeen": when, "isReachable": True,
            "chargeState": {
                "isPluggedIn": vehicle is not None, "isCharging": False, "chargeRate": None, "lastUpdated": when,
                "maxCurrent": 16, "powerDeliveryState": "PLUGGED_IN:STOPPED" if vehicle else "UNPLUGGED",
                "pluggedInVehicleId": vehicle,
            },
            "capabilities": _capabilities("information", "chargeState", "startCharging", "stopCharging",
                                          "setMaxCurrent"),
            "scopes": ["charger:read:data", "charger:control:charging"],
            "information": {"brand": "Easee", "model": "Charge", "year": None, "serialNumber": "EH123456"},
            "location": {"id": location, "lastUpdated": when},
        },
        "updatedFields": ["chargeState.isPluggedIn", "chargeState.pluggedInVehicleId", "location.id"],
    }


def action_event(user: str, action: str, at: datetime, *, target_type: str, target: str, kind: str,
                 state: str, failure: str | None = None) -> dict[str, Any]:
    return {
        "event": "user:vendor-action:updated", "createdAt": _iso(at + timedelta(milliseconds=70)),
        "version": VERSION, "user": {"id": user},
        "vendorAction": {
            "id": action, "userId": user, "createdAt": _iso(at - timedelta(minutes=5)), "updatedAt": _iso(at),
            "completedAt": None if state == "PENDING" else _iso(at), "state": state, "targetId": target,
            "targetType": target_type, "kind": kind,
            "failureReason": None if failure is None else {"type": failure, "detail": "The device did not react."},
        },
        "updatedFields": ["state", "completedAt", "failureReason"],
    }


@dataclass
class _User:
    id: str
    vehicle: str
    home_charger: str
    home: str
    spare_charger: str | None
    at: datetime
    charger_location_known: bool = False
    plugged_home: bool = False
    spare_deleted: bool = False


def _step(user: _User, rng: random.Random) -> list[dict[str, Any]]:
    user.at += timedelta(seconds=rng.randint(30, 3600), milliseconds=rng.randint(0, 999))
    roll = rng.random()
    if not user.charger_location_known and roll < 0.3:
        user.charger_location_known = True
        return [charger_event(user.id, user.home_charger, user.at, location=user.home,
                              vehicle=user.vehicle if user.plugged_home else None)]
    if roll < 0.72 and user.spare_charger and not user.spare_deleted and rng.random() < 0.1:
        user.spare_deleted = True
        return [charger_event(user.id, user.spare_charger, user.at, vehicle=None, location=user.home,
                              verb="deleted")]
    step = next(step for threshold, step in _STEPS if roll < threshold)
    return step(user, rng)


def _plug_home(user: _User, rng: random.Random) -> list[dict[str, Any]]:
    user.plugged_home = True
    return [vehicle_event(user.id, user.vehicle, user.at, charger=user.home_charger, location=user.home),
            charger_event(user.id, user.home_charger, user.at, vehicle=user.vehicle, location=_ch_loc(user))]


def _unplug(user: _User, rng: random.Random) -> list[dict[str, Any]]:
    user.plugged_home = False
    home_location = user.home if rng.random() < 0.5 else None
    return [vehicle_event(user.id, user.vehicle, user.at, charger=None, location=home_location),
            charger_event(user.id, user.home_charger, user.at, vehicle=None, location=_ch_loc(user))]


def _drive(user: _User, rng: random.Random) -> list[dict[str, Any]]:
    user.plugged_home = False
    return [vehicle_event(user.id, user.vehicle, user.at, charger=None, location=rng.choice(["public", None]))]


def _location_changes(user: _User, rng: random.Random) -> list[dict[str, Any]]:
    charger = user.home_charger if user.plugged_home else None
    return [vehicle_event(user.id, user.vehicle, user.at, charger=charger,
                          location=rng.choice([user.home, "loc-work", None]))]


def _ch_loc(user: _User) -> str | None:
    return user.home if user.charger_location_known else None


def _action(user: _User, rng: random.Random) -> list[dict[str, Any]]:
    action = str(uuid.UUID(int=rng.getrandbits(128)))
    target_type, target = rng.choice([("vehicle", user.vehicle), ("charger", user.home_charger)])
    state, failure = rng.choice([("FAILED", "NO_RESPONSE"), ("FAILED", "NO_RESPONSE"), ("CONFIRMED", None),
                                 ("CANCELLED", "CONFLICT"), ("CANCELLED", "FAILED_PRECONDITION")])
    kind = rng.choice(["START", "STOP"])
    pending = action_event(user.id, action, user.at, target_type=target_type, target=target, kind=kind,
                           state="PENDING")
    user.at += timedelta(seconds=rng.randint(60, 1800))
    done = action_event(user.id, action, user.at, target_type=target_type, target=target, kind=kind,
                        state=state, failure=failure)
    return [pending, done]


_STEPS = ((0.35, _plug_home), (0.55, _unplug), (0.65, _drive), (0.8, _location_changes), (1.01, _action))


def generate(seed: int, *, users: int, events_per_user: int) -> list[dict[str, Any]]:
    """About `users * events_per_user` events, every user's in time order, users interleaved by time."""
    rng = random.Random(seed)
    timeline: list[tuple[datetime, int, dict[str, Any]]] = []
    for number in range(users):
        user = _User(id=f"usr-{seed}-{number}", vehicle=str(uuid.UUID(int=rng.getrandbits(128))),
                     home_charger=str(uuid.UUID(int=rng.getrandbits(128))), home=f"loc-home-{number}",
                     spare_charger=str(uuid.UUID(int=rng.getrandbits(128))) if rng.random() < 0.3 else None,
                     at=START + timedelta(seconds=rng.randint(0, 3600)))
        events = [vehicle_event(user.id, user.vehicle, user.at, charger=None, location=None, verb="discovered")]
        if user.spare_charger:
            events.append(charger_event(user.id, user.spare_charger, user.at, vehicle=None, location=user.home))
        while len(events) < events_per_user:
            events.extend(_step(user, rng))
        timeline.extend((_created(event), len(timeline) + i, event) for i, event in enumerate(events))
    timeline.sort(key=lambda item: (item[0], item[1]))
    return [event for _, _, event in timeline]


def _created(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["createdAt"])


def received_at(event: dict[str, Any]) -> int:
    """When plugwatch is taken to have received `event` in tests that decode it directly: a second after
    Enode created it (ms)."""
    return int(_created(event).timestamp() * 1000) + 1000


@dataclass(frozen=True)
class Delivery:
    id: str
    body: bytes


def batch(events: Sequence[dict[str, Any]], *, size: int | tuple[int, int], rng: random.Random) -> list[Delivery]:
    """Cut the log into deliveries of `size` consecutive events (or a random size in the range)."""
    deliveries, position = [], 0
    while position < len(events):
        count = size if isinstance(size, int) else rng.randint(*size)
        chunk = events[position:position + count]
        deliveries.append(Delivery(str(uuid.UUID(int=rng.getrandbits(128))), orjson.dumps(chunk)))
        position += count
    return deliveries


def with_duplicates(deliveries: Sequence[Delivery], *, rng: random.Random, ratio: float) -> list[Delivery]:
    """Add redeliveries (new delivery ids, as Enode's re-batched retries) of a `ratio` of the deliveries."""
    copies = [Delivery(str(uuid.UUID(int=rng.getrandbits(128))), delivery.body)
              for delivery in rng.sample(list(deliveries), int(len(deliveries) * ratio))]
    return [*deliveries, *copies]


def feed(connection: redis.Redis, deliveries: Iterable[Delivery], *, received_ms: int | None = None,
         stream: str = keys.INGEST_STREAM) -> int:
    """XADD the deliveries to the ingest stream (`stream`: a partition's) with the receiver's fields (d, b, t:
    now unless given); return how many."""
    received_ms = int(time.time() * 1000) if received_ms is None else received_ms
    pipe = connection.pipeline(transaction=False)
    count = 0
    for delivery in deliveries:
        pipe.xadd(stream, {"d": delivery.id, "b": delivery.body, "t": received_ms})
        count += 1
        if count % 500 == 0:
            pipe.execute()
    pipe.execute()
    return count


def reference(events: Iterable[dict[str, Any]],
              config: CoreConfig = DEFAULT_CONFIG) -> tuple[dict[str, UserState], list[bytes]]:
    """Every user's state and the emitted events' JSON, applying the log in order with the pure core.

    `config`: the store's, e.g. `epoch_config(connection)` for the epoch a store commits under."""
    states: dict[str, UserState] = {}
    emitted: list[bytes] = []
    for raw in events:
        observation = decode_event(raw, received_at(raw))
        if isinstance(observation, IgnoredEvent):
            continue
        applied = apply(states.get(observation.user_id, UserState()), observation, config)
        states[observation.user_id] = applied.state
        emitted.extend(event.to_json() for event in applied.events)
        for body in emitted[len(emitted) - len(applied.events):]:
            check_event(body)  # the reference events a test compares with are catalog events too
    return {user: state for user, state in states.items() if not state.is_empty()}, emitted


def epoch_config(connection: redis.Redis) -> CoreConfig:
    """The core's config a store (or worker) will commit under on this Redis: its epoch's sequence base,
    the epoch created now if there is none yet."""
    return CoreConfig(sequence_base=epoch.ensure(connection, time.time_ns() // 1_000_000).sequence_base)


def alive_devices(events: Iterable[Mapping[str, Any]], kind: str) -> set[str]:
    """The ids of the `kind` ("vehicle" or "charger") devices an Enode event log discovered and did not delete."""
    alive: set[str] = set()
    for event in events:
        if event.get("event") == f"user:{kind}:discovered":
            alive.add(event[kind]["id"])
        elif event.get("event") == f"user:{kind}:deleted":
            alive.discard(event[kind]["id"])
    return alive
