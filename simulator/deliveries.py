"""From an event log to signed deliveries: batching (1-100 events), shuffling, duplicates, system events.

Pure: the same events, options and seed always give the same deliveries, byte for byte.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from plugwatch.enode_signature import sign
from simulator import payloads
from simulator.clock import parse_iso
from simulator.payloads import Event

MAX_EVENTS_PER_DELIVERY = 100


@dataclass(frozen=True)
class Delivery:
    id: str
    body: bytes
    events: int  # how many events the body holds

    def headers(self, secret: str) -> dict[str, str]:
        return {"content-type": "application/json", "x-enode-delivery": self.id,
                "x-enode-signature": sign(self.body, secret)}


@dataclass(frozen=True)
class Plan:
    """How to cut an event log into deliveries."""

    min_batch: int = 1
    max_batch: int = MAX_EVENTS_PER_DELIVERY
    shuffle: bool = False  # shuffle events across deliveries, and the order of deliveries
    duplicate_same_id: float = 0.0  # share of deliveries resent with the same delivery id
    duplicate_new_id: float = 0.0  # share of deliveries whose events are resent under a new delivery id
    heartbeat_every: int = 0  # a system:heartbeat delivery after every N deliveries (0: none)
    test_event: bool = False  # start with an enode:webhook:test delivery
    seed: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.max_batch <= MAX_EVENTS_PER_DELIVERY:
            raise ValueError("need 1 <= min_batch <= max_batch <= 100")


def plan_deliveries(events: Sequence[Event], plan: Plan) -> list[Delivery]:
    rng = random.Random(f"deliveries:{plan.seed}")  # noqa: S311 (seeded on purpose)
    order = list(events)
    if plan.shuffle:
        rng.shuffle(order)
    batches: list[list[Event]] = []
    while order:
        size = rng.randint(plan.min_batch, plan.max_batch)
        batches.append(order[:size])
        order = order[size:]
    deliveries = [_delivery(rng, batch) for batch in batches]
    deliveries += [_delivery(rng, _reshuffled(rng, b, plan.shuffle)) for b in batches
                   if rng.random() < plan.duplicate_new_id]
    deliveries += [d for d in deliveries[: len(batches)] if rng.random() < plan.duplicate_same_id]
    if plan.shuffle:
        rng.shuffle(deliveries)
    else:  # a duplicate follows its original at a random later point, like a retry
        deliveries = _interleave_duplicates(rng, deliveries, len(batches))
    return _with_system_events(rng, deliveries, events, plan)


def _delivery(rng: random.Random, batch: Sequence[Event]) -> Delivery:
    return Delivery(str(uuid.UUID(int=rng.getrandbits(128), version=4)), orjson.dumps(list(batch)), len(batch))


def _reshuffled(rng: random.Random, batch: list[Event], shuffle: bool) -> list[Event]:
    if not shuffle:
        return batch
    copy = list(batch)
    rng.shuffle(copy)
    return copy


def _interleave_duplicates(rng: random.Random, deliveries: list[Delivery], originals: int) -> list[Delivery]:
    """Keep the originals in order; insert each duplicate somewhere after its original."""
    out = list(deliveries[:originals])
    for dup in deliveries[originals:]:
        first = next((i for i, d in enumerate(out) if d.body == dup.body), len(out) - 1)
        out.insert(rng.randint(first + 1, len(out)), dup)
    return out


def _with_system_events(rng: random.Random, deliveries: list[Delivery], events: Sequence[Event],
                        plan: Plan) -> list[Delivery]:
    start = parse_iso(events[0]["createdAt"]) if events else 0
    out: list[Delivery] = []
    if plan.test_event:
        out.append(_delivery(rng, [payloads.test_event(start)]))
    for i, delivery in enumerate(deliveries, 1):
        out.append(delivery)
        if plan.heartbeat_every and i % plan.heartbeat_every == 0:
            out.append(_delivery(rng, [payloads.heartbeat_event(start + i * 1000)]))
    return out
