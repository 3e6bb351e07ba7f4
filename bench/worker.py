"""Worker throughput: events/s of one worker process, beside a plain Redis consumer loop and trivial RQ jobs.

    .venv/bin/python -m bench.worker [--events 40000] [--single 3000] [--rq-jobs 300] [--rounds 5]
    .venv/bin/python -m bench.worker --cluster PARTITIONS [--events 40000] [--rounds 5]

Starts its own redis-server on a free port (never touches another Redis) and measures, in one run:

  (a) the ingest drain of one process on 100-event deliveries and on 1-event deliveries: the deliveries are
      pre-loaded into the ingest stream exactly as the receiver writes them, then drained
      - in-process by `worker.ingest.drain` (the code the RQ job runs; steady state), per wall-clock second
        and per CPU second of the draining process (on a shared, oversubscribed machine the wall clock
        mostly measures the neighbours), and
      - end to end by a `python -m worker --burst` subprocess (wall time, including its ~1 s start-up);
  (b) the ceiling of a plain consumer loop over the same entries: XREADGROUP (200) + XACK + XDEL, no parsing;
  (a') the pure core alone (orjson + decode_event + apply, no Redis): what any shell must spend;
  (c) a trivial RQ job (`time.time`) run by a `SimpleWorker` in burst mode (one job per event would cap
      the worker at this rate).

The in-process drain (wall clock and per CPU second) and the pure core are measured `--rounds` times, the
drain and the core alternately so that both meet the same neighbours; the rates shown are each one's best
round, and the drain's share of the pure core's events per CPU second is the median of the rounds' shares
(each round's drain beside the core measured right after it). Prints each figure and the ratios between
them. Goals (issues 7 and 17): >= 30,000 events/s on 100-event deliveries and >= 85% of the pure core's
events per CPU second (the shell costs <= 15% of the core's time), >= 1,000 events/s on 1-event deliveries,
per process.

`--cluster N` measures (a) only, on a private 3-primary Redis Cluster (no replicas) with N partitions and RQ on
a redis-server of its own: the deliveries are put in partition 0's ingest stream, as if all their users hashed
there, and drained by `worker.ingest.drain` for that partition through the cluster client, beside the pure
core in the same rounds.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import redis
from prometheus_client import CollectorRegistry
from rq import Queue, SimpleWorker

from plugwatch import keys, redis_clients
from plugwatch.partitions import layout
from plugwatch.settings import Settings
from tests.support.eventlog import Delivery, batch, feed, generate
from tests.support.servers import RedisServer, base_env
from worker.bootstrap import bootstrap
from worker.core import Ignored, UserState, apply, decode_event
from worker.ingest import drain as ingest


def fresh(connection: redis.Redis, deliveries: list[Delivery], stream: str = keys.INGEST_STREAM) -> int:
    connection.flushall()
    feed(connection, deliveries, stream=stream)
    return sum(delivery.body.count(b'"event":') for delivery in deliveries)


def in_process_drain(connection: redis.Redis, url: str, deliveries: list[Delivery],
                     clock: Callable[[], float] = time.perf_counter, env: dict[str, str] | None = None,
                     ) -> tuple[int, float]:
    """Drain with this process's code; `clock=time.process_time` counts only this process's CPU time. `env`:
    more settings (a cluster's `RQ_REDIS_URL` and `PLUGWATCH_PARTITIONS`: partition 0 is drained)."""
    env = env or {}
    into = layout(0, int(env.get("PLUGWATCH_PARTITIONS", "1")))
    events = fresh(connection, deliveries, into.ingest_stream)
    # No idle wait: these runs time a backlog with no live sender, so waiting for the next delivery is idle time.
    settings = Settings.from_env({"REDIS_URL": url, "PLUGWATCH_INGEST_MAX_DRAINERS": "1",
                                  "PLUGWATCH_INGEST_IDLE_WAIT_SECONDS": "0", **env}, require_enode_secret=False)
    context = bootstrap(settings, registry=CollectorRegistry(), connection=connection, consumer="bench")
    started = clock()
    while connection.xlen(into.ingest_stream):
        ingest.drain(context, 0, into.partition)
    elapsed = clock() - started
    context.close()
    return events, elapsed


def subprocess_drain(connection: redis.Redis, url: str, deliveries: list[Delivery], log: Path) -> tuple[int, float]:
    events = fresh(connection, deliveries)
    env = base_env(REDIS_URL=url, PLUGWATCH_METRICS_PORT="0", PLUGWATCH_LOG_FORMAT="json",
                   PLUGWATCH_INGEST_IDLE_WAIT_SECONDS="0")
    started = time.perf_counter()
    with log.open("ab") as out:
        subprocess.run([sys.executable, "-m", "worker", "--burst"], env=env, stdout=out, stderr=subprocess.STDOUT,
                       check=True, timeout=600)
    elapsed = time.perf_counter() - started
    assert connection.xlen(keys.INGEST_STREAM) == 0, "the worker left entries behind"
    return events, elapsed


def consumer_loop(connection: redis.Redis, deliveries: list[Delivery]) -> tuple[int, float]:
    """The ceiling: read and acknowledge the same entries with no processing at all."""
    events = fresh(connection, deliveries)
    connection.xgroup_create(keys.INGEST_STREAM, keys.INGEST_GROUP, id="0", mkstream=True)
    started = time.perf_counter()
    while True:
        reply = connection.xreadgroup(keys.INGEST_GROUP, "bench", {keys.INGEST_STREAM: ">"}, count=200)
        if not reply:
            break
        ids = [entry_id for entry_id, _ in reply[0][1]]
        pipe = connection.pipeline(transaction=False)
        pipe.xack(keys.INGEST_STREAM, keys.INGEST_GROUP, *ids)
        pipe.xdel(keys.INGEST_STREAM, *ids)
        pipe.execute()
    return events, time.perf_counter() - started


EMPTY = UserState()


def core_only(deliveries: list[Delivery], clock: Callable[[], float] = time.perf_counter) -> tuple[int, float]:
    """The floor under any shell: parse, decode and apply the same deliveries with the pure core, no Redis."""
    states: dict[str, UserState] = {}
    count = 0
    received_at = int(time.time() * 1000)
    gc.disable()
    started = clock()
    for delivery in deliveries:
        for raw in orjson.loads(delivery.body):
            count += 1
            observation = decode_event(raw, received_at)
            if not isinstance(observation, Ignored):
                state = states.get(observation.user_id)
                states[observation.user_id] = apply(EMPTY if state is None else state, observation).state
    elapsed = clock() - started
    gc.enable()
    return count, elapsed


def rq_jobs(connection: redis.Redis, jobs: int) -> tuple[int, float]:
    connection.flushall()
    queue = Queue("bench", connection=connection)
    for _ in range(jobs):
        queue.enqueue("time.time", result_ttl=0)
    worker = SimpleWorker([queue], connection=connection)
    started = time.perf_counter()
    worker.work(burst=True, logging_level="WARNING")
    return jobs, time.perf_counter() - started


def report(label: str, measure: Callable[[], tuple[int, float]], unit: str = "events") -> float:
    return show(label, measure(), unit)


def show(label: str, measured: tuple[int, float], unit: str = "events") -> float:
    count, seconds = measured
    rate = count / seconds
    print(f"  {label:<58} {count:>7} {unit} in {seconds:6.2f} s = {rate:>9,.0f} {unit}/s", flush=True)
    return rate


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000, help="events in 100-event deliveries")
    parser.add_argument("--single", type=int, default=3_000, help="1-event deliveries")
    parser.add_argument("--rq-jobs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the drain beside the pure core")
    parser.add_argument("--cluster", type=int, default=None, metavar="PARTITIONS",
                        help="(a) only, on a 3-primary Redis Cluster with this many partitions")
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    if args.cluster is not None:
        on_a_cluster(args)
        return

    rng = random.Random(1)
    log = generate(1, users=max(50, args.events // 100), events_per_user=100)[: args.events]
    hundreds = batch(log, size=100, rng=rng)
    singles = batch(log[: args.single], size=1, rng=rng)
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir) / "redis").start()
        connection = server.client()
        try:
            print(f"redis-server on port {server.port}; {len(log)} events, {len(hundreds)} deliveries of 100, "
                  f"{len(singles)} deliveries of 1")
            worker_log = Path(workdir) / "worker.log"
            print("(a) one worker process")
            walls, cpus, cores = [], [], []
            for _ in range(args.rounds):  # alternately, so that the drain and the core meet the same neighbours
                walls.append(in_process_drain(connection, server.url, hundreds))
                cpus.append(in_process_drain(connection, server.url, hundreds, time.process_time))
                cores.append(core_only(hundreds, time.process_time))
            hundred = show("drain, 100-event deliveries (in process)", fastest(walls))
            single = report("drain, 1-event deliveries (in process)",
                            lambda: in_process_drain(connection, server.url, singles))
            hundred_cpu = show("drain, 100-event deliveries (in process, per CPU second)", fastest(cpus))
            report("drain, 1-event deliveries (in process, per CPU second)",
                   lambda: in_process_drain(connection, server.url, singles, time.process_time))
            report("python -m worker --burst, 100-event deliveries (with start-up)",
                   lambda: subprocess_drain(connection, server.url, hundreds, worker_log))
            report("python -m worker --burst, 1-event deliveries (with start-up)",
                   lambda: subprocess_drain(connection, server.url, singles, worker_log))
            core = show("pure core only (orjson + decode + apply), 100-event, per CPU second", fastest(cores))
            shares = [(d[0] / d[1]) / (c[0] / c[1]) for d, c in zip(cpus, cores, strict=True)]
            share = statistics.median(shares)
            print(f"  (best of {args.rounds} rounds; drain / core per CPU second by round: "
                  + ", ".join(f"{x:.3f}" for x in shares) + f"; median {share:.3f})")
            print("(b) plain Redis consumer loop (XREADGROUP 200 + XACK + XDEL, no processing)")
            ceiling_hundred = report("100-event deliveries", lambda: consumer_loop(connection, hundreds))
            ceiling_single = report("1-event deliveries", lambda: consumer_loop(connection, singles))
            print("(c) trivial RQ job, SimpleWorker burst")
            rq_rate = report("time.time jobs", lambda: rq_jobs(connection, args.rq_jobs), unit="jobs")
        finally:
            connection.close()
            server.kill()
    print("ratios")
    print(f"  100-event drain / consumer-loop ceiling        {hundred / ceiling_hundred:6.3f}")
    print(f"  1-event drain / consumer-loop ceiling          {single / ceiling_single:6.3f}")
    print(f"  100-event drain / pure core, per CPU second     {share:6.3f} (median of the rounds)")
    print(f"  100-event drain wall clock / pure core per CPU second {hundred / core:6.3f}")
    print(f"  100-event drain / one RQ job per event         {hundred / rq_rate:6.1f}x")
    print(f"  1-event drain / one RQ job per delivery        {single / rq_rate:6.1f}x")
    print(f"goals: 100-event >= 30,000 events/s: wall clock {'met' if hundred >= 30_000 else 'NOT met'} "
          f"({hundred:,.0f}), per CPU second {'met' if hundred_cpu >= 30_000 else 'NOT met'} ({hundred_cpu:,.0f}); "
          f"100-event >= 85% of the pure core per CPU second: {'met' if share >= 0.85 else 'NOT met'} "
          f"({share:.1%}); 1-event >= 1,000 events/s: {'met' if single >= 1_000 else 'NOT met'} ({single:,.0f})")


def on_a_cluster(args: argparse.Namespace) -> None:
    """`--cluster N`: the in-process drain of one partition on a Redis Cluster, beside the pure core."""
    from tests.support.cluster import RedisClusterServers

    log = generate(1, users=max(50, args.events // 100), events_per_user=100)[: args.events]
    hundreds = batch(log, size=100, rng=random.Random(1))
    with tempfile.TemporaryDirectory() as workdir:
        cluster = RedisClusterServers(Path(workdir) / "cluster", primaries=3, replicas=0).start()
        queues = RedisServer(Path(workdir) / "rq").start()
        connection = redis_clients.connect(cluster.url, socket_timeout=30)
        env = {"RQ_REDIS_URL": queues.url, "PLUGWATCH_PARTITIONS": str(args.cluster)}
        try:
            print(f"3-primary Redis Cluster, {args.cluster} partitions (partition 0 drained), RQ on port "
                  f"{queues.port}; {len(log)} events, {len(hundreds)} deliveries of 100")
            walls, cpus, cores = [], [], []
            for _ in range(args.rounds):
                walls.append(in_process_drain(connection, cluster.url, hundreds, env=env))
                cpus.append(in_process_drain(connection, cluster.url, hundreds, time.process_time, env=env))
                cores.append(core_only(hundreds, time.process_time))
            wall = show("cluster drain, 100-event deliveries (in process)", fastest(walls))
            show("cluster drain, 100-event deliveries (in process, per CPU second)", fastest(cpus))
            show("pure core only (orjson + decode + apply), 100-event, per CPU second", fastest(cores))
            shares = [(d[0] / d[1]) / (c[0] / c[1]) for d, c in zip(cpus, cores, strict=True)]
            print(f"  cluster drain / pure core, per CPU second {statistics.median(shares):6.3f} (median of "
                  f"{args.rounds} rounds); wall clock {wall:,.0f} events/s")
        finally:
            connection.close()
            queues.stop()
            cluster.stop()


def fastest(measured: list[tuple[int, float]]) -> tuple[int, float]:
    """The round with the highest rate (the least disturbed by the machine's other work)."""
    return max(measured, key=lambda pair: pair[0] / pair[1])


if __name__ == "__main__":
    main()
