"""`python -m receiver [--host H] [--port P] [--timeout-graceful-shutdown S]`: the receiver (Procfile `web:`).

uvicorn, run here with the slow-client limits of `receiver.connections`: a deadline for each request's
headers (`PLUGWATCH_RECEIVER_HEADER_TIMEOUT_SECONDS`) and body (`PLUGWATCH_RECEIVER_BODY_TIMEOUT_SECONDS`) and
a cap on open connections (`PLUGWATCH_RECEIVER_MAX_CONNECTIONS`), which uvicorn's command line cannot set.
At start the soft open-file limit (RLIMIT_NOFILE) is raised to the hard one, and the cap is lowered to fit
under it if need be (logged), so `accept()` never runs out of descriptors.

`uvicorn receiver.app:app_from_env --factory` still serves the same app, without these limits.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import resource
import socket
from collections.abc import Sequence

import redis
import structlog
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from plugwatch import redis_clients
from plugwatch.logs import configure_logging
from plugwatch.settings import Settings
from plugwatch.startup import check_partitions, exit_on_bad_settings
from receiver.app import create_app
from receiver.connections import ConnectionGuard, ConnectionLimits
from receiver.protocol import guarded_protocol

log = structlog.get_logger("receiver")

GRACEFUL_SHUTDOWN_SECONDS = 25  # in-flight requests finish; under Heroku's 30 s between SIGTERM and SIGKILL


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m receiver", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="interface to bind (default: all)")  # noqa: S104
    parser.add_argument("--port", type=int, default=None, help="port (default: PORT, else 8000)")
    parser.add_argument("--timeout-graceful-shutdown", type=int, default=GRACEFUL_SHUTDOWN_SECONDS,
                        help="seconds in-flight requests get after SIGTERM")
    args = parser.parse_args(argv)

    with exit_on_bad_settings("python -m receiver"):
        settings = Settings.from_env(os.environ)
        redis_clients.check_startup(settings.process.redis_url, settings.process.rq_redis_url)
    configure_logging(settings.process.log_format)
    open_files = raise_open_file_limit()
    limits = ConnectionLimits.of(settings, open_files)
    if limits.max_connections < settings.receiver.max_connections:
        log.warning("receiver.max_connections_lowered", configured=settings.receiver.max_connections,
                    max_connections=limits.max_connections, open_file_limit=open_files,
                    hint="raise the hard open-file limit (ulimit -Hn, the container's nofile) to allow more")
    _check_partitions(settings)
    app = create_app(settings)
    log.info("receiver.limits", header_timeout=limits.header_timeout, body_timeout=limits.body_timeout,
             max_connections=limits.max_connections, open_file_limit=open_files)
    serve(app, app.metrics.registry, limits, host=args.host, port=args.port or settings.receiver.port,
          timeout_graceful_shutdown=args.timeout_graceful_shutdown)
    return 0


def _check_partitions(settings: Settings) -> None:
    """Refuse another PLUGWATCH_PARTITIONS than Redis records (exit 2). A Redis down at start is not waited
    for (the receiver answers 503 meanwhile): the count is then checked by the workers, which refuse to run."""
    connection = redis_clients.probe(settings.process.redis_url, settings.process.redis_timeout_seconds)
    try:
        check_partitions("python -m receiver", connection, settings.process.partitions)
    except (redis.RedisError, OSError) as error:
        log.warning("receiver.partitions_unchecked", error=str(error) or type(error).__name__,
                    hint="Redis is down; the workers check PLUGWATCH_PARTITIONS when they start")
    finally:
        connection.close()


def serve(app: ASGIApp, registry: CollectorRegistry, limits: ConnectionLimits, *, host: str, port: int,
          timeout_graceful_shutdown: int = GRACEFUL_SHUTDOWN_SECONDS) -> None:
    """Run `app` in uvicorn as the receiver runs (its HTTP protocol, loop and limits; bench/receiver.py's
    bare endpoint runs here too, so the two differ only in the app).

    Everything built so far (modules, the app, its clients) is moved out of the cyclic garbage collector's
    reach first (`gc.freeze()`): it lives as long as the process, and the collections that requests'
    short-lived objects set off then no longer walk it (in bench/receiver.py, runs alternated on one machine,
    the receiver's throughput against the bare endpoint's went from 37-42% to 44-47%)."""
    gc.collect()
    gc.freeze()
    guard = ConnectionGuard(limits, registry)
    config = uvicorn.Config(
        app, host=host, port=port, http=guarded_protocol(guard), ws="none", lifespan="on", log_config=None,
        access_log=False, timeout_graceful_shutdown=timeout_graceful_shutdown,
    )
    GuardedServer(config, guard).run()


class GuardedServer(uvicorn.Server):
    """uvicorn's server that logs the cuts not logged yet when it shuts down (after a SIGTERM uvicorn
    re-raises the signal once it is done, so nothing after `run()` would get to run)."""

    def __init__(self, config: uvicorn.Config, guard: ConnectionGuard) -> None:
        super().__init__(config)
        self.guard = guard

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        self.guard.flush()


def raise_open_file_limit() -> float:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force (inf: none)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as error:  # e.g. an unlimited hard limit the kernel caps lower
            log.warning("receiver.open_file_limit_not_raised", soft=soft, hard=hard, error=str(error))
        else:
            soft = hard
    return math.inf if soft == resource.RLIM_INFINITY else float(soft)


if __name__ == "__main__":
    raise SystemExit(main())
