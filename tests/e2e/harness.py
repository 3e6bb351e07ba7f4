"""The whole system for end-to-end tests: real redis-server, uvicorn receiver, `python -m worker`
processes and an HTTP sink; plus comparisons of what came out against the simulator's ground truth."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import redis

from plugwatch import epoch, keys
from plugwatch.partitions import layouts, partition_of
from simulator.clock import parse_iso
from simulator.deliveries import Delivery, Plan, plan_deliveries
from simulator.sender import SendOptions, SendReport, send_all
from simulator.stories import Scenario
from simulator.truth import FAILED, PLUGGED, UNPLUGGED, Expected, from_emitted
from tests.conftest import TEST_DOWNSTREAM_SECRET, TEST_SECRET
from tests.support.event_schema import stream_events
from tests.support.servers import Process, base_env, start_receiver, wait_until


class System:
    """Receiver + workers against one Redis, delivering to `sink_url`; stop() ends every process."""

    def __init__(self, redis_url: str, sink_url: str | None, logs: Path, workers: int = 2,
                 **extra_env: str) -> None:
        env = extra_env | {"REDIS_URL": redis_url, "ENODE_WEBHOOK_SECRET": TEST_SECRET, "PLUGWATCH_METRICS_PORT": "0",
               "PLUGWATCH_INGEST_CLAIM_IDLE_SECONDS": "2",
               "PLUGWATCH_INGEST_ARMED_TTL_SECONDS": "3", "PLUGWATCH_PUMP_INTERVAL_SECONDS": "0.5"}
        if sink_url:
            env |= {"DOWNSTREAM_WEBHOOK_URLS": sink_url, "DOWNSTREAM_WEBHOOK_SECRET": TEST_DOWNSTREAM_SECRET}
        self.env = base_env(**env)
        self.logs = logs
        self.receiver, base = start_receiver(self.env, logs / "receiver.log")
        self.url = base + "/webhooks/enode"
        self.workers = [self.start_worker(i) for i in range(workers)]

    def start_worker(self, index: int) -> Process:
        return Process([sys.executable, "-m", "worker"], self.env, self.logs / f"worker-{index}.log").start()

    def restart_dead_workers(self) -> None:
        """What a supervisor (Procfile platform, Kubernetes) does for a worker that died."""
        self.workers = [w if w.alive() else self.start_worker(i) for i, w in enumerate(self.workers)]

    def stop(self) -> None:
        for process in [*self.workers, self.receiver]:
            process.stop()


def send(url: str, deliveries: Sequence[Delivery], **options: float) -> SendReport:
    return asyncio.run(send_all(url, TEST_SECRET, deliveries, SendOptions(**options)))  # type: ignore[arg-type]


def send_in_background(url: str, deliveries: Sequence[Delivery], **options: float) -> Callable[[], SendReport]:
    """`send` in order (one delivery in flight) from a background thread; the returned join() waits for its
    report, and join.alive() says whether it is still sending."""
    results: list[SendReport] = []
    thread = threading.Thread(target=lambda: results.append(send(url, deliveries, concurrency=1, **options)))
    thread.start()

    def join() -> SendReport:
        thread.join()
        return results[0]

    join.alive = thread.is_alive  # type: ignore[attr-defined]
    return join


def in_order(scenario: Scenario, **plan: object) -> list[Delivery]:
    return plan_deliveries(scenario.events, Plan(heartbeat_every=25, test_event=True, **plan))  # type: ignore[arg-type]


def emitted(client: redis.Redis, partitions: int = 1) -> list[dict[str, object]]:
    """Every event in `plugwatch:events` (each partition's events stream in turn), in stream order."""
    return [event for into in layouts(partitions)  # each checked against the event catalog
            for event in stream_events(client, into.events_stream)]


def wait_for_events(client: redis.Redis, count: int, timeout: float = 90.0,
                    partitions: int = 1) -> list[dict[str, object]]:
    wait_until(lambda: sum(client.xlen(into.events_stream) for into in layouts(partitions)) >= count,
               timeout=timeout, interval=0.2, message=f"fewer than {count} emitted events within {timeout}s")
    return emitted(client, partitions)


def wait_until_idle(client: redis.Redis, timeout: float = 90.0, partitions: int = 1) -> None:
    """The ingest streams are drained (nothing pending, nothing unread)."""
    def idle() -> bool:
        try:
            return all(client.xlen(into.ingest_stream) == 0 for into in layouts(partitions))
        except redis.RedisError:
            return False
    wait_until(idle, timeout=timeout, interval=0.2, message="ingest stream not drained")


def comparable(event: dict[str, object], sequence_base: int = 0) -> Expected:
    """An emitted event in ground-truth terms (its `sequence` counted from the epoch's base, as the truth does).

    DESIGN §1 lists only the vehicle and the charger as set on `control.failed`; plugwatch's core also adds
    the home Location when the vehicle is at home. That extra id is not compared (see the issue-4 report).
    """
    expected = from_emitted(event)
    if expected.sequence is not None:
        expected = dataclasses.replace(expected, sequence=expected.sequence - sequence_base)
    if expected.type == FAILED:
        return dataclasses.replace(expected, location_id=None)
    return expected


def comparable_in(client: redis.Redis, partitions: int = 1) -> Callable[[dict[str, object]], Expected]:
    """`comparable` for events emitted under this Redis's epoch (`plugwatch.epoch`; each user's partition's)."""
    bases = [current.sequence_base if current else 0 for current in epoch.read_all(client, partitions)]

    def compare(event: dict[str, object]) -> Expected:
        user = event.get("userId")
        base = bases[partition_of(user, partitions)] if isinstance(user, str) else bases[0]
        return comparable(event, base)

    return compare


def per_user(events: Iterable[Expected]) -> dict[str, list[Expected]]:
    out: dict[str, list[Expected]] = defaultdict(list)
    for event in events:
        out[event.user_id].append(event)
    return dict(out)


def at_home(events: Iterable[Expected]) -> dict[str, tuple[str | None, str | None]]:
    """Which vehicles are plugged in at home (charger, location) after these events, by sequence."""
    last: dict[str, Expected] = {}
    for event in events:
        if event.type in (PLUGGED, UNPLUGGED) and event.vehicle_id is not None:
            seen = last.get(event.vehicle_id)
            if seen is None or (seen.sequence or 0) < (event.sequence or 0):
                last[event.vehicle_id] = event
    return {v: (e.charger_id, e.location_id) for v, e in last.items() if e.type == PLUGGED}


def assert_invariants(events: Sequence[dict[str, object]]) -> None:
    """DESIGN §2 on emitted events: no duplicate ids; per vehicle, sequence increases, at-home alternates."""
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "an event id was emitted twice"
    by_vehicle: dict[str, list[Expected]] = defaultdict(list)
    for event in map(from_emitted, events):
        if event.vehicle_id is not None:
            by_vehicle[event.vehicle_id].append(event)
    for vehicle, seen in by_vehicle.items():
        # null: an action on a vehicle deleted meanwhile ("null when no vehicle is known", DESIGN §1)
        sequences = [e.sequence for e in seen if e.sequence is not None]
        assert sequences == sorted(set(sequences)), f"{vehicle}: sequence not strictly increasing {sequences}"
        pair = [e.type for e in seen if e.type in (PLUGGED, UNPLUGGED)]
        assert all(a != b for a, b in itertools.pairwise(pair)), f"{vehicle}: no alternation {pair}"
        assert not pair or pair[0] == PLUGGED, f"{vehicle}: unplugged before any plug-in"


def stored_facts(client: redis.Redis) -> dict[str, dict[str, object]]:
    """The order-independent part of every stored user state (worker.core's `UserState.facts()`)."""
    from worker.core import decode_state

    out = {}
    for key in client.scan_iter(match=keys.USER_STATE_PREFIX + "*", count=1000):
        user = key.decode().removeprefix(keys.USER_STATE_PREFIX)
        out[user] = decode_state(client.get(key)).facts()
    return out


def reference_facts(scenario: Scenario) -> dict[str, dict[str, object]]:
    """The same facts after applying the scenario in order with worker.core in this process.

    The reference is plugwatch's own core fed in order: the first e2e test proves that in-order processing
    emits exactly the independent ground truth, so any difference here comes from order, loss or duplication.
    """
    from worker.core import Ignored, UserState, apply, decode_event

    states: dict[str, UserState] = {}
    for event in scenario.events:
        observation = decode_event(event, parse_iso(event["createdAt"]) + 1000)  # received a second later
        if not isinstance(observation, Ignored):
            user = observation.user_id
            states[user] = apply(states.get(user, UserState()), observation).state
    return {user: state.facts() for user, state in states.items() if not state.is_empty()}


def assert_nothing_lost(client: redis.Redis, report: SendReport, deliveries: Sequence[Delivery],
                        partitions: int = 1) -> None:
    """Every delivery was answered 2xx, and the ingest streams hold nothing unprocessed or quarantined."""
    assert report.ok, report
    assert report.accepted == len(deliveries)
    wait_until_idle(client, partitions=partitions)
    assert all(client.xlen(into.quarantine_stream) == 0 for into in layouts(partitions))
