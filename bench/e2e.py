"""End-to-end figures: latency at a sustained rate, resident memory under that load, Redis memory per
tracked vehicle, and how the cost per event grows from 1,000 to 100,000 tracked vehicles.

    .venv/bin/python -m bench.e2e [--rate 500] [--seconds 60] [--vehicles 100000] [--json out.json]
                                  [--workers N] [--set KEY=VALUE] [--cluster PARTITIONS] [--latency-only]

Starts its own redis-server (never another Redis), the receiver and one `python -m worker` as real processes
(as the Procfile does) and an HTTP sink in this process, then:

  (1) latency: plays simulated Enode traffic in order at `--rate` events/s for `--seconds` (1-100 events per
      delivery) and measures, per emitted event, POST accepted (2xx) -> committed to `plugwatch:events`
      (the stream entry id's time) and -> received by the sink; the ground truth maps each emitted event to
      the delivery that caused it. Samples receiver and worker RSS (psutil) every 0.5 s meanwhile.
  (2) memory: writes real user states (worker.core applied to simulated users) until `--vehicles` vehicles
      are tracked; reports used_memory and MEMORY USAGE of `plugwatch:user:*` per vehicle at 1k/10k/100k,
      beside the floor of one Redis key per user holding one byte.
  (3) growth: the same fresh 150-user scenario played as fast as possible through receiver + worker with
      1,000 and with 100,000 tracked vehicles already stored: events/s and CPU ms per event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psutil
import redis
from rq import Worker

from plugwatch import keys
from plugwatch.partitions import layouts
from simulator.clock import parse_iso
from simulator.deliveries import Plan, plan_deliveries
from simulator.sender import SendOptions, send_all
from simulator.stories import build_scenario
from simulator.truth import Expected, Replay
from tests.e2e.harness import System, comparable_in
from tests.support.cluster import RedisClusterServers
from tests.support.servers import RedisServer, wait_until
from tests.support.sinks import Sink, SinkServer

SECRET = "test-secret-0123456789abcdef"


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"n": len(ordered), "p50_ms": 1000 * pick(0.50), "p95_ms": 1000 * pick(0.95),
            "p99_ms": 1000 * pick(0.99), "max_ms": 1000 * ordered[-1], "mean_ms": 1000 * statistics.fmean(ordered)}


class RssSampler:
    """Max resident memory of each named process (with its children) while running."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.max_rss: dict[str, float] = dict.fromkeys(pids, 0.0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            for name, proc in self.procs.items():
                try:
                    rss = proc.memory_info().rss  # the main process; RQ's scheduler child is separate
                except psutil.Error:
                    continue
                self.max_rss[name] = max(self.max_rss[name], rss / 2**20)

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def latency_run(workdir: Path, rate: float, seconds: float, workers: int = 1,
                env: dict[str, str] | None = None, cluster_partitions: int = 0) -> dict[str, Any]:
    """`cluster_partitions` > 0: on a Redis Cluster of 3 primaries (no replicas) with that many partitions,
    RQ on a redis-server of its own; else on one redis-server, unpartitioned."""
    scenario = build_scenario(max(50, int(rate * seconds / 36)), seed=21)
    events = list(scenario.events[: int(rate * seconds)])
    deliveries = plan_deliveries(events, Plan(seed=21))
    replay, cause = Replay(), {}
    for delivery in deliveries:
        for event in orjson.loads(delivery.body):
            for expected in replay.feed(event):
                cause[expected] = delivery.id
    env = dict(env or {})
    partitions = cluster_partitions or int(env.get("PLUGWATCH_PARTITIONS", "1"))
    if cluster_partitions:
        server: Any = RedisClusterServers(workdir / "cluster-latency", primaries=3, replicas=0).start()
        queues = RedisServer(workdir / "redis-queues").start()
        env.update(PLUGWATCH_PARTITIONS=str(partitions), RQ_REDIS_URL=queues.url)
    else:
        server = queues = RedisServer(workdir / "redis-latency").start()
    sink = Sink()
    with SinkServer(sink) as sink_server:
        system = System(server.url, sink_server.url + "/hook", workdir / "logs-latency", workers=workers, **env)
        try:
            with queues.client() as rq_client:  # steady state: every worker is up before traffic starts
                wait_until(lambda: Worker.count(connection=rq_client) >= workers, timeout=60, interval=0.1,
                           message="the workers did not register with RQ")
            pids = {"receiver": system.receiver.pid, **{f"worker-{i}" if i else "worker": w.pid
                                                        for i, w in enumerate(system.workers)}}
            with RssSampler(pids) as rss:
                started = time.time()
                report = asyncio.run(send_all(system.url, SECRET, deliveries, SendOptions(concurrency=1, rate=rate)))
                sent_seconds = time.time() - started
                client = server.client()
                key = comparable_in(client, partitions)  # sequences counted from the epoch's base, as the truth does
                wait_until(lambda: cause.keys() <= {key(r.event) for r in sink.accepted()}, timeout=seconds + 300,
                           interval=0.5, message="the sink did not receive every expected event")
                drained_seconds = time.time() - started
            committed = _stream_latencies(client, key, cause, report.accepted_at, partitions)
        finally:
            system.stop()
            server.stop()
            queues.stop()
    received = [r.at - report.accepted_at[cause[key(r.event)]] for r in sink.accepted() if key(r.event) in cause]
    return {"workers": workers, "env": env, "cluster_partitions": cluster_partitions,
            "rate_target": rate, "events_sent": report.events,
            "deliveries": report.accepted,
            "send_seconds": sent_seconds, "achieved_rate": report.events / sent_seconds,
            "emitted": len(cause), "all_received_after_s": drained_seconds,
            "commit": percentiles(committed), "sink": percentiles(received),
            "post_p99_ms": percentiles(report.latencies).get("p99_ms"), "rss_mb": rss.max_rss}


def _stream_latencies(client: redis.Redis, key: Callable[[dict[str, Any]], Expected], cause: dict[Expected, str],
                      accepted: dict[str, float], partitions: int = 1) -> list[float]:
    out = []
    for entry_id, fields in (entry for into in layouts(partitions) for entry in client.xrange(into.events_stream)):
        expected = key(orjson.loads(fields[b"event"]))
        if expected in cause:
            out.append(int(entry_id.split(b"-")[0]) / 1000 - accepted[cause[expected]])
    return out


def _user_states(users: int) -> list[tuple[bytes, int]]:
    """Encoded states (as the worker stores them) of simulated users, with their vehicle counts."""
    from worker.core import Ignored, UserState, apply, decode_event, encode_state

    states: dict[str, UserState] = {}
    for event in build_scenario(users, seed=33).events:
        observation = decode_event(event, parse_iso(event["createdAt"]) + 1000)  # received a second later
        if not isinstance(observation, Ignored):
            states[observation.user_id] = apply(states.get(observation.user_id, UserState()), observation).state
    return [(encode_state(s), len(s.vehicles)) for s in states.values() if s.vehicles]


def fill(client: redis.Redis, pool: list[tuple[bytes, int]], start_vehicles: int, target: int) -> int:
    """Store user states (cycling through `pool`, new user ids) until `target` vehicles are tracked."""
    vehicles, index = start_vehicles, start_vehicles
    pipe = client.pipeline(transaction=False)
    while vehicles < target:
        state, count = pool[index % len(pool)]
        pipe.set(keys.user_state_key(f"usr-bench-{index:07d}"), state)
        vehicles, index = vehicles + count, index + 1
        if index % 1000 == 0:
            pipe.execute()
    pipe.execute()
    return vehicles


def memory_run(workdir: Path, target: int, growth: Callable[[str, int], dict[str, Any]]) -> dict[str, Any]:
    pool = _user_states(600)
    server = RedisServer(workdir / "redis-memory").start()
    client = server.client()
    base = int(client.info("memory")["used_memory"])
    rows, vehicles, cost = [], 0, {}
    try:
        for checkpoint in sorted({c for c in (1_000, 10_000) if c < target} | {target}):
            vehicles = fill(client, pool, vehicles, checkpoint)
            used = int(client.info("memory")["used_memory"]) - base
            sample = [k for _, k in zip(range(2000), client.scan_iter(match=keys.USER_STATE_PREFIX + "*", count=1000),
                                        strict=False)]
            per_key = statistics.fmean(client.memory_usage(k) or 0 for k in sample)
            users = client.dbsize()
            rows.append({"vehicles": vehicles, "users": users, "used_memory_per_vehicle": used / vehicles,
                         "memory_usage_per_vehicle": per_key * users / vehicles})
            if checkpoint in (1_000, target):  # the two ends of the growth comparison
                cost[str(checkpoint)] = growth(server.url, vehicles)
        client.set("plugwatch:user:usr-bench-floor-0000000", b"x")
        floor = client.memory_usage("plugwatch:user:usr-bench-floor-0000000")
    finally:
        server.stop()
    return {"rows": rows, "floor_one_byte_key": floor, "users_per_vehicle": rows[-1]["users"] / rows[-1]["vehicles"],
            "growth": cost}


def growth_run(workdir: Path) -> Callable[[str, int], dict[str, Any]]:
    scenario = build_scenario(150, seed=77)
    deliveries = plan_deliveries(scenario.events, Plan(seed=77))

    def run(redis_url: str, vehicles: int) -> dict[str, Any]:
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=keys.USER_STATE_PREFIX + "usr-77-*"):
            client.delete(key)
        client.delete(keys.EVENTS_STREAM, keys.INGEST_STREAM, *client.keys(keys.DEDUPE_MARKS + "*"))
        system = System(redis_url, None, workdir / f"logs-growth-{vehicles}", workers=1)
        try:
            worker = psutil.Process(system.workers[0].pid)
            cpu0 = sum(worker.cpu_times()[:2])
            started = time.time()
            report = asyncio.run(send_all(system.url, SECRET, deliveries, SendOptions(concurrency=4)))
            wait_until(lambda: client.xlen(keys.INGEST_STREAM) == 0, timeout=300, interval=0.1)
            seconds = time.time() - started
            cpu = sum(worker.cpu_times()[:2]) - cpu0
        finally:
            system.stop()
        return {"vehicles_stored": vehicles, "events": report.events, "seconds": seconds,
                "events_per_s": report.events / seconds, "worker_cpu_ms_per_event": 1000 * cpu / report.events}

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--vehicles", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes in the latency run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the receiver and workers in the latency run")
    parser.add_argument("--cluster", type=int, default=0, metavar="PARTITIONS",
                        help="the latency run on a 3-primary Redis Cluster with this many partitions")
    parser.add_argument("--latency-only", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plugwatch-bench-e2e-") as tmp:
        workdir = Path(tmp)
        print(f"(1) latency at {args.rate:.0f} events/s for {args.seconds:.0f} s", flush=True)
        env = dict(item.split("=", 1) for item in args.set)
        latency = latency_run(workdir, args.rate, args.seconds, args.workers, env, args.cluster)
        print(json.dumps(latency, indent=2), flush=True)
        memory: dict[str, Any] = {}
        if not args.latency_only:
            print(f"(2) Redis memory up to {args.vehicles} vehicles, (3) cost growth", flush=True)
            memory = memory_run(workdir, args.vehicles, growth_run(workdir))
            print(json.dumps(memory, indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"latency": latency, "memory": memory}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
