"""POST /webhooks/enode: verify, dedupe and durably store a delivery, then answer.

    Content-Length > limit ─▶ 413      signature header absent/malformed ─▶ 401 (body never read)
    body > limit while reading ─▶ 413   HMAC mismatch for every secret ─▶ 401
    classify ─▶ ONE Lua call (dedupe + ingest/quarantine/heartbeat + arm) ─▶ 200
    Redis error or no answer within the budget ─▶ 503 (nothing marked as seen: Enode's retry is accepted)

If this request armed the drain, the RQ job is enqueued after the response (threadpool, sync client);
a failure there is logged and left to the worker's pump: the delivery is already in the stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

import redis
import redis.asyncio
import structlog
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from plugwatch import ingest
from plugwatch.settings import Settings
from receiver.body import BadBody, BodyTooLarge, read_limited
from receiver.metrics import Outcome, ReceiverMetrics
from receiver.signature import SIGNATURE_HEADER, check_header, verify

log = structlog.get_logger(__name__)

DELIVERY_HEADER = "x-enode-delivery"
MAX_DELIVERY_ID_LENGTH = 200
_STATUS = {Outcome.UNAUTHORIZED: 401, Outcome.TOO_LARGE: 413, Outcome.UNAVAILABLE: 503,
           Outcome.BAD_REQUEST: 400}
_RECORDED = {True: Outcome.HEARTBEAT, False: Outcome.TEST}
_FROM_RESULT = {ingest.IngestResult.ACCEPTED: Outcome.ACCEPTED, ingest.IngestResult.ARMED: Outcome.ACCEPTED,
                ingest.IngestResult.DUPLICATE: Outcome.DUPLICATE,
                ingest.IngestResult.QUARANTINED: Outcome.QUARANTINED}


@dataclass
class Handled:
    outcome: Outcome
    delivery_id: str
    events: int = 0
    armed: bool = False


def delivery_id_of(header: str | None, body: bytes) -> str:
    """Enode's delivery id; derived from the body when absent, hashed when absurdly long."""
    if not header:
        return "sha256:" + hashlib.sha256(body).hexdigest()
    if len(header) > MAX_DELIVERY_ID_LENGTH:
        return "sha256:" + hashlib.sha256(header.encode("utf-8", "surrogateescape")).hexdigest()
    return header


class WebhookEndpoint:
    def __init__(self, settings: Settings, connection: redis.asyncio.Redis, sync_connection: redis.Redis,
                 metrics: ReceiverMetrics) -> None:
        self._secrets = tuple(secret.encode() for secret in settings.enode_webhook_secrets)
        self._limit = settings.max_body_bytes
        self._dedupe_ttl = settings.dedupe_ttl_seconds
        self._budget = settings.redis_timeout_seconds
        self._script = connection.register_script(ingest.INGEST_LUA)
        self._sync_connection = sync_connection
        self._metrics = metrics

    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        handled = await self._handle(request)
        self._metrics.requests.labels(handled.outcome.value).inc()
        log.info("delivery.handled", delivery_id=handled.delivery_id, events=handled.events,
                 outcome=handled.outcome.value, ms=round((time.perf_counter() - started) * 1000, 2))
        background = BackgroundTask(self._enqueue_drain) if handled.armed else None
        return Response(b'{"outcome":"%s"}' % handled.outcome.value.encode(),
                        status_code=_STATUS.get(handled.outcome, 200),
                        media_type="application/json", background=background)

    async def _handle(self, request: Request) -> Handled:
        header_id = request.headers.get(DELIVERY_HEADER)
        signatures = request.headers.getlist(SIGNATURE_HEADER)
        try:
            failure = check_header(signatures)
            if failure is None:
                body = await read_limited(request, self._limit)
                failure = verify(body, signatures, self._secrets)
        except BodyTooLarge:
            return Handled(Outcome.TOO_LARGE, header_id or "")
        except BadBody:
            return Handled(Outcome.BAD_REQUEST, header_id or "")
        if failure is not None:
            self._metrics.signature_failures.labels(failure.value).inc()
            return Handled(Outcome.UNAUTHORIZED, (header_id or "")[:MAX_DELIVERY_ID_LENGTH])
        return await self._store(delivery_id_of(header_id, body), body)

    async def _store(self, delivery_id: str, body: bytes) -> Handled:
        batch = ingest.classify(body)
        script_keys, args = ingest.script_call(delivery_id, body, batch, now=time.time(),
                                               dedupe_ttl_seconds=self._dedupe_ttl)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._budget):
                reply = await self._script(keys=script_keys, args=args)
        except (redis.RedisError, OSError, TimeoutError) as error:
            log.warning("delivery.store_failed", delivery_id=delivery_id, error=repr(error))
            return Handled(Outcome.UNAVAILABLE, delivery_id, batch.events)
        self._metrics.enqueue_seconds.observe(time.perf_counter() - started)
        result = ingest.result_of(reply)
        outcome = _FROM_RESULT.get(result) or _RECORDED[batch.heartbeat is not None]
        return Handled(outcome, delivery_id, batch.events, armed=result is ingest.IngestResult.ARMED)

    def _enqueue_drain(self) -> None:
        """Runs after the response, in the threadpool (RQ is synchronous)."""
        try:
            job_id = ingest.enqueue_after_arming(self._sync_connection)
        except (redis.RedisError, OSError) as error:
            log.warning("drain.enqueue_failed", error=repr(error))
        else:
            log.info("drain.enqueued", job_id=job_id)
