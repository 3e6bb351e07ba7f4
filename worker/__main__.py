"""`python -m worker [--burst] [--name NAME]`: one worker process (Procfile `worker:`).

It runs an RQ `SimpleWorker` (jobs run in this process: one Redis pool, one HTTP client) on the ingest and
delivery queues with RQ's scheduler (retries), a pump thread that re-arms drain jobs every
`PLUGWATCH_PUMP_INTERVAL_SECONDS` (crash recovery), and Prometheus metrics on `PLUGWATCH_METRICS_PORT`
(default 9100, 0 = off). RQ gets a connection of its own (`redis_clients.rq`: a socket timeout just beyond its
blocking dequeue) and registers with `PLUGWATCH_WORKER_TTL_SECONDS`; when Redis fails it (a restart, a
blackhole, OOM), the process logs, backs off and runs a new RQ worker (`worker.supervision`). SIGTERM is RQ's
warm shutdown: the running job finishes (a drain job stops within its budget of a few seconds) and the
process exits, at the latest `PLUGWATCH_WORKER_SHUTDOWN_GRACE_SECONDS` after the signal; a second SIGTERM
is a cold shutdown.
`--burst` arms a drain for whatever waits, works until the queues are empty, then exits (benchmarks, ops).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Sequence

import redis
import structlog
from prometheus_client import start_http_server

from plugwatch import keys, redis_clients
from plugwatch.logs import configure_logging
from plugwatch.redis_health import HealthWatch
from plugwatch.settings import Settings, shown_redis_url
from plugwatch.startup import check_partitions, exit_on_bad_settings
from worker.bootstrap import WorkerContext, bootstrap, ensure_env_subscriptions, install
from worker.ingest import drain
from worker.jobs import WorkerJob
from worker.supervision import Shutdown, SupervisedWorker, supervise

log = structlog.get_logger("worker")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", default=None, help="the RQ worker name (default: RQ's)")
    args = parser.parse_args(argv)

    with exit_on_bad_settings("python -m worker"):
        settings = Settings.from_env(os.environ, require_enode_secret=False)
        redis_clients.check_startup(settings.process.redis_url, settings.process.rq_redis_url)
        context = bootstrap(settings)
    configure_logging(settings.process.log_format)
    _wait_for_redis(context, settings)
    check_partitions("python -m worker", context.connection, settings.process.partitions)
    return _run(context, settings, args)


def _wait_for_redis(context: WorkerContext, settings: Settings) -> None:
    """Redis down (or refusing) at start: one log line per try, naming REDIS_URL (or RQ_REDIS_URL, when RQ's
    Redis is another), and try again with a growing pause (up to 10 s) until both answer; a process manager's
    SIGTERM ends the wait (the default handler)."""
    waiting = [("REDIS_URL", settings.process.redis_url, context.connection)]
    if context.queues is not context.connection:
        waiting.append(("RQ_REDIS_URL", settings.process.queues_url, context.queues))
    pause = 0.5
    while waiting:
        variable, url, client = waiting[0]
        try:
            client.ping()
        except (redis.RedisError, OSError) as error:
            log.error("worker.redis_unreachable", redis_url=shown_redis_url(url), variable=variable,
                      error=str(error) or type(error).__name__, retry_in_seconds=pause)
        else:
            waiting.pop(0)
            continue
        time.sleep(pause)
        pause = min(2 * pause, 10.0)


def _run(context: WorkerContext, settings: Settings, args: argparse.Namespace) -> int:
    install(context)
    ensured = ensure_subscriptions(context)
    port = settings.process.metrics_port
    if port:
        try:
            start_http_server(port)
        except OSError:  # e.g. a second worker on the same host: run on, without a metrics endpoint
            log.exception("worker.metrics_port_unavailable", port=port)
    interval = settings.process.pump_interval_seconds

    health = HealthWatch(context.connection)  # logs Redis health findings even with no scrape
    pump_once(context, health)
    stop = threading.Event()
    pumping = threading.Thread(target=_pump_loop, args=(context, stop, interval, health, ensured), name="pump",
                               daemon=True)
    pumping.start()
    # The dead-letter queue too: a dead letter requeued from rq-dashboard is replayed by any worker.
    queues = [keys.INGEST_QUEUE, keys.DELIVERY_QUEUE, keys.DEAD_LETTER_QUEUE]
    rq_connection = redis_clients.rq(settings)
    shutdown = Shutdown(settings.process.worker_shutdown_grace_seconds)

    def make_worker() -> SupervisedWorker:
        worker = SupervisedWorker(queues, connection=rq_connection, name=args.name, job_class=WorkerJob,
                                  worker_ttl=settings.process.worker_ttl_seconds)
        log.info("worker.started", name=worker.name, burst=args.burst, metrics_port=port)
        return worker

    try:
        supervise(make_worker, shutdown, burst=args.burst)
    finally:
        stop.set()
        context.close()
        context.close_redis()
        rq_connection.close()
    log.info("worker.stopped")
    return 0


def ensure_subscriptions(context: WorkerContext) -> bool:
    """`DOWNSTREAM_WEBHOOK_URLS` with `DOWNSTREAM_WEBHOOK_SECRET`: each URL a subscription of every type
    (`plugwatch.subscriptions.ensure_from_env`); False after a Redis error (logged): the pump tries again."""
    try:
        changed = ensure_env_subscriptions(context.connection, context.settings)
    except redis.RedisError:
        log.exception("subscriptions.ensure_failed", hint="DOWNSTREAM_WEBHOOK_URLS not ensured yet; the pump retries")
        return False
    if changed:
        log.info("subscriptions.ensured_from_env", changes=changed)
    return True


def pump_once(context: WorkerContext, health: HealthWatch | None = None) -> None:
    """Re-arm ingest and delivery drains that should be running, watch Redis's health; never raises (logged)."""
    try:
        drain.pump(context.connection, context.queues, context.options, context.settings.process.partitions)
        context.delivery.pump()
        context.enode.pump()
        if health is not None:
            health.pump()
    except Exception:
        log.exception("worker.pump_failed")


def _pump_loop(context: WorkerContext, stop: threading.Event, interval: float, health: HealthWatch,
               ensured: bool = True) -> None:
    while not stop.wait(interval):
        ensured = ensured or ensure_subscriptions(context)
        pump_once(context, health)


if __name__ == "__main__":
    raise SystemExit(main())
