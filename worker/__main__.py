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
from collections.abc import Sequence

import structlog
from prometheus_client import start_http_server

from plugwatch import keys, redis_clients
from plugwatch.logs import configure_logging
from plugwatch.settings import Settings
from plugwatch.startup import exit_on_bad_settings
from worker.bootstrap import WorkerContext, bootstrap, install
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
        context = bootstrap(settings)
    configure_logging(settings.process.log_format)
    install(context)
    port = settings.process.metrics_port
    if port:
        try:
            start_http_server(port)
        except OSError:  # e.g. a second worker on the same host: run on, without a metrics endpoint
            log.exception("worker.metrics_port_unavailable", port=port)
    interval = settings.process.pump_interval_seconds

    pump_once(context)
    stop = threading.Event()
    pumping = threading.Thread(target=_pump_loop, args=(context, stop, interval), name="pump", daemon=True)
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
        rq_connection.close()
    log.info("worker.stopped")
    return 0


def pump_once(context: WorkerContext) -> None:
    """Re-arm ingest and delivery drains that should be running; never raises (logged instead)."""
    try:
        drain.pump(context.connection, context.options)
        context.delivery.pump()
        context.enode.pump()
    except Exception:
        log.exception("worker.pump_failed")


def _pump_loop(context: WorkerContext, stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        pump_once(context)


if __name__ == "__main__":
    raise SystemExit(main())
