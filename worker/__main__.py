"""`python -m worker [--burst] [--name NAME]`: one worker process (Procfile `worker:`).

It runs an RQ `SimpleWorker` (jobs run in this process: one Redis pool, one HTTP client) on the ingest and
delivery queues with RQ's scheduler (retries), a pump thread that re-arms drain jobs every
`PLUGWATCH_PUMP_INTERVAL_SECONDS` (crash recovery), and Prometheus metrics on `PLUGWATCH_METRICS_PORT`
(default 9100, 0 = off). SIGTERM is RQ's warm shutdown: the running job finishes (a drain job stops within
its budget of a few seconds) and the process exits; a second SIGTERM is a cold shutdown.
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
from rq import SimpleWorker

from plugwatch import keys, subscriptions
from plugwatch.logs import configure_logging
from plugwatch.redis_health import HealthWatch
from plugwatch.settings import Settings
from plugwatch.startup import exit_on_bad_settings, exit_on_redis_failure
from worker.bootstrap import WorkerContext, bootstrap, install
from worker.ingest import drain
from worker.jobs import WorkerJob

log = structlog.get_logger("worker")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", default=None, help="the RQ worker name (default: RQ's)")
    args = parser.parse_args(argv)

    with exit_on_bad_settings("python -m worker"):
        settings = Settings.from_env(os.environ, require_enode_secret=False)
        context = bootstrap(settings)
    configure_logging(settings.process.log_format)
    with exit_on_redis_failure("python -m worker", settings.process.redis_url):  # one line, exit 1
        context.connection.ping()  # Redis down at start: say so, rather than a traceback from RQ
        return _run(context, settings, args)


def _run(context: WorkerContext, settings: Settings, args: argparse.Namespace) -> int:
    install(context)
    ensure_subscriptions(context)
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
    pumping = threading.Thread(target=_pump_loop, args=(context, stop, interval, health), name="pump", daemon=True)
    pumping.start()
    # The dead-letter queue too: a dead letter requeued from rq-dashboard is replayed by any worker.
    queues = [keys.INGEST_QUEUE, keys.DELIVERY_QUEUE, keys.DEAD_LETTER_QUEUE]
    worker = SimpleWorker(queues, connection=context.connection, name=args.name, job_class=WorkerJob)
    log.info("worker.started", name=worker.name, burst=args.burst, metrics_port=port)
    try:
        worker.work(burst=args.burst, with_scheduler=True)
    finally:
        stop.set()
        context.close()
    log.info("worker.stopped", name=worker.name)
    return 0


def ensure_subscriptions(context: WorkerContext) -> None:
    """`DOWNSTREAM_WEBHOOK_URLS` with `DOWNSTREAM_WEBHOOK_SECRET`: each URL a subscription of every type
    (`plugwatch.subscriptions.ensure_from_env`); a Redis error is logged, the worker runs on."""
    delivery = context.settings.delivery
    try:
        changed = subscriptions.ensure_from_env(context.connection, delivery.downstream_urls,
                                                delivery.downstream_key, now=time.time(),
                                                overlap=delivery.secret_overlap_seconds)
    except redis.RedisError:
        log.exception("subscriptions.ensure_failed", hint="DOWNSTREAM_WEBHOOK_URLS not ensured; restart the worker")
        return
    if changed:
        log.info("subscriptions.ensured_from_env", changes=changed)


def pump_once(context: WorkerContext, health: HealthWatch | None = None) -> None:
    """Re-arm ingest and delivery drains that should be running, watch Redis's health; never raises (logged)."""
    try:
        drain.pump(context.connection, context.options)
        context.delivery.pump()
        context.enode.pump()
        if health is not None:
            health.pump()
    except Exception:
        log.exception("worker.pump_failed")


def _pump_loop(context: WorkerContext, stop: threading.Event, interval: float, health: HealthWatch) -> None:
    while not stop.wait(interval):
        pump_once(context, health)


if __name__ == "__main__":
    raise SystemExit(main())
