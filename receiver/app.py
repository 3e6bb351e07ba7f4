"""The receiver process: where everything is wired (`create_app`) and the uvicorn factory (`app_from_env`).

    python -m receiver                              (Procfile `web:`: uvicorn with the slow-client limits)
    uvicorn receiver.app:app_from_env --factory     (the same app, without those limits)

Routes: POST /webhooks/enode (receiver.webhook), GET /healthz (process alive, no I/O),
GET /readyz (receiver.readiness: Redis answers, accepts writes, will not evict: 200 or 503),
GET /metrics (Prometheus text).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import redis
import redis.asyncio
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from plugwatch import redis_clients
from plugwatch.logs import configure_logging
from plugwatch.settings import Settings
from plugwatch.startup import exit_on_bad_settings
from receiver.metrics import ReceiverMetrics
from receiver.readiness import Readiness
from receiver.webhook import WebhookEndpoint

log = structlog.get_logger(__name__)

WEBHOOK_PATH = "/webhooks/enode"


def create_app(
    settings: Settings,
    *,
    redis: redis.asyncio.Redis | None = None,
    sync_redis: redis.Redis | None = None,
    queues_redis: redis.Redis | None = None,
) -> WebhookFastPath:
    """The receiver for `settings`; tests may inject Redis clients (e.g. fakeredis on one FakeServer).
    `queues_redis` is RQ's (RQ_REDIS_URL): by default the sync client itself unless RQ has a Redis of its own."""
    owned_async = redis is None
    owned_sync = sync_redis is None
    connection = redis if redis is not None else redis_clients.receiver_async(settings)
    sync_connection = sync_redis if sync_redis is not None else redis_clients.receiver_sync(settings)
    owned_queues = queues_redis is None
    queues = queues_redis if queues_redis is not None else redis_clients.receiver_queues(settings, sync_connection)
    metrics = ReceiverMetrics.create(sync_connection, queues, settings.process.partitions)
    webhook = WebhookEndpoint(settings, connection, sync_connection, queues, metrics)

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    readyz = Readiness(connection, settings.process.redis_timeout_seconds).respond

    async def metrics_endpoint(_: Request) -> Response:
        text = await run_in_threadpool(generate_latest, metrics.registry)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(lambda: None)  # load the threadpool now, not inside the first arming
        log.info("receiver.started", secrets=len(settings.receiver.enode_webhook_secrets),
                 max_body_bytes=settings.receiver.max_body_bytes)
        yield
        await webhook.settled()
        if owned_async:
            await webhook.aclose()
            await connection.aclose()
        if owned_sync:
            sync_connection.close()
        if owned_queues and queues is not sync_connection:
            queues.close()

    routes = [
        Route(WEBHOOK_PATH, webhook, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    return WebhookFastPath(app, webhook, metrics)


class WebhookFastPath:
    """Sends POST /webhooks/enode straight to the endpoint, everything else through Starlette.

    The webhook handles its own errors (every outcome is an answer), so Starlette's middleware stack and
    router (about a third of a bare Starlette request's cost) buy it nothing at thousands of requests/s.
    """

    def __init__(self, app: Starlette, webhook: WebhookEndpoint, metrics: ReceiverMetrics) -> None:
        self.app = app
        self.webhook = webhook
        self.metrics = metrics  # its registry also takes the connection limits' metrics (python -m receiver)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == WEBHOOK_PATH and scope["method"] == "POST":
            await self.webhook(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def app_from_env() -> WebhookFastPath:
    """uvicorn's factory: settings from the environment (unusable: one line, exit 2), logging configured once."""
    with exit_on_bad_settings("receiver"):
        settings = Settings.from_env(os.environ)
        redis_clients.check_startup(settings.process.redis_url, settings.process.rq_redis_url)
    configure_logging(settings.process.log_format)
    return create_app(settings)
