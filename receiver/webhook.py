"""POST /webhooks/enode: verify, dedupe and durably store a delivery, then answer.

    Content-Length > limit ─▶ 413      signature header absent/malformed ─▶ 401 (body never read)
    body > limit while reading ─▶ 413   HMAC mismatch for every secret ─▶ 401
    classify (an odd body: in the threadpool) ─▶ ONE Lua call (dedupe + ingest/quarantine/heartbeat + arm) ─▶ 200
                (script calls of concurrent deliveries share one pipelined round trip: receiver.batching;
                a second call, with the body's digest, only where the previous version's mark of the id exists)
    Redis error or no answer within the budget ─▶ 503 (nothing marked as seen: Enode's retry is accepted)
    PLUGWATCH_ACK_REPLICAS=N and fewer replicas confirm the write within the budget ─▶ 503 (stored on the
                primary; the retry is answered 200 once the replicas hold it, or stored anew if a failover lost it)

If this request armed the drain, the RQ job is enqueued after the response (threadpool, a sync client of
RQ's Redis: RQ_REDIS_URL, default REDIS_URL);
a failure there is logged and left to the worker's pump: the delivery is already in the stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any, NamedTuple

import redis
import redis.asyncio
import structlog
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from plugwatch import dedupe_marks, ingest_arming, keys, partitions, redis_clients
from plugwatch import ingest_protocol as ingest
from plugwatch.enode_signature import SignatureFailure, authentic_digest, check_header
from plugwatch.settings import Settings
from receiver.batching import ClusterScriptBatcher, NotReplicated, ScriptBatcher
from receiver.connections import CUT_SCOPE_KEY
from receiver.handled_log import HandledLog
from receiver.metrics import Outcome, ReceiverMetrics
from receiver.request_body import BadBody, BodyTooLarge, read_limited

log = structlog.get_logger(__name__)

DELIVERY_HEADER = "x-enode-delivery"
MAX_DELIVERY_ID_LENGTH = 200
_STATUS = {Outcome.UNAUTHORIZED: 401, Outcome.TOO_LARGE: 413, Outcome.UNAVAILABLE: 503,
           Outcome.BAD_REQUEST: 400}
_FROM_RESULT = {ingest.IngestResult.ACCEPTED: Outcome.ACCEPTED, ingest.IngestResult.ARMED: Outcome.ACCEPTED,
                ingest.IngestResult.DUPLICATE: Outcome.DUPLICATE,
                ingest.IngestResult.QUARANTINED: Outcome.QUARANTINED}
_BODIES = {outcome: b'{"outcome":"%s"}' % outcome.value.encode() for outcome in Outcome}


def _recorded(batch: ingest.Batch) -> Outcome:
    """The outcome of a delivery of system events only: a heartbeat recorded, else one quarantined, else a test."""
    if batch.heartbeat is not None:
        return Outcome.HEARTBEAT
    return Outcome.QUARANTINED if batch.quarantined_events else Outcome.TEST


class Handled(NamedTuple):  # (a NamedTuple: built per request, at a third of a frozen dataclass's cost)
    outcome: Outcome
    delivery_id: str
    events: int = 0
    armed: tuple[int, ...] = ()  # the partitions whose drain this request armed: it enqueues their jobs


def _combined(parts: list[Handled]) -> Handled:
    """The answer to a delivery stored in parts (one per partition): 503 if any part failed (Enode's retry
    finds the stored parts duplicates and stores the rest); else accepted if any part was, else quarantined if
    any was, else a duplicate if all were, else what a part of system events was (partition 0's, the first)."""
    outcomes = {part.outcome for part in parts}
    first = parts[0]
    for outcome in (Outcome.UNAVAILABLE, Outcome.ACCEPTED, Outcome.QUARANTINED):
        if outcome in outcomes:
            break
    else:
        outcome = Outcome.DUPLICATE if outcomes == {Outcome.DUPLICATE} else next(
            part.outcome for part in parts if part.outcome is not Outcome.DUPLICATE)
    return Handled(outcome, first.delivery_id, sum(part.events for part in parts),
                   tuple(partition for part in parts for partition in part.armed))


def delivery_id_of(header: str | None, body: bytes) -> str:
    """Enode's delivery id; derived from the body when absent, hashed when absurdly long."""
    if not header:
        return "sha256:" + hashlib.sha256(body).hexdigest()
    if len(header) > MAX_DELIVERY_ID_LENGTH:
        return "sha256:" + hashlib.sha256(header.encode()).hexdigest()
    return header


class _Headers:
    __slots__ = ("content_length", "delivery_id", "signatures")

    def __init__(self, scope: Scope) -> None:
        self.delivery_id: str | None = None
        self.content_length: bytes | None = None
        self.signatures: list[str] = []
        for name, value in scope["headers"]:  # ASGI: lowercase names, raw bytes
            if name == b"x-enode-signature":
                self.signatures.append(value.decode("latin-1"))
            elif name == b"x-enode-delivery":
                self.delivery_id = value.decode("latin-1")
            elif name == b"content-length":
                self.content_length = value


class WebhookEndpoint:
    """A plain ASGI app (Starlette's Request/Response machinery costs more than the work itself)."""

    def __init__(self, settings: Settings, connection: redis.asyncio.Redis, sync_connection: redis.Redis,
                 queues: redis.Redis, metrics: ReceiverMetrics) -> None:
        self._secrets = tuple(secret.encode() for secret in settings.receiver.enode_webhook_secrets)
        self._limit = settings.receiver.max_body_bytes
        self._partitions = settings.process.partitions
        self._layouts = partitions.layouts(self._partitions)
        self._connection = connection
        self._shard_cap = dedupe_marks.DEFAULT_CAP  # until Redis's listpack limit is read (_read_shard_cap)
        self._reading_cap: asyncio.Task[None] | None = None
        # Half the budget per pipeline; each call also gives up at the whole budget (behind a long queue of
        # pipelines), and a call that gave up before its pipeline was sent is never sent.
        self._redis_timeout = settings.process.redis_timeout_seconds
        options: dict[str, Any] = {"timeout": self._redis_timeout / 2, "deadline": self._redis_timeout,
                   "replicas": settings.receiver.ack_replicas, "ack_mark": keys.ACK_MARK}
        self._script: ScriptBatcher | ClusterScriptBatcher = (
            ClusterScriptBatcher(connection, ingest.INGEST_LUA, redis_clients.receiver_node(settings), **options)
            if redis_clients.is_cluster(settings.process.redis_url) else
            ScriptBatcher(connection, ingest.INGEST_LUA, **options))
        self._packers = [ingest.PackedCalls(self._script.sha, into,  # each call packed at a sixth of hiredis' cost
                                            dedupe_ttl_seconds=settings.receiver.dedupe_ttl_seconds,
                                            dedupe_bucket_seconds=settings.receiver.dedupe_bucket_seconds)
                         for into in self._layouts]
        self._sync_connection = sync_connection  # the data Redis: releases the armed key if the enqueue fails
        self._queues = queues  # RQ's Redis (the same client unless RQ_REDIS_URL names another): the drain job
        self._metrics = metrics
        self._requests = {outcome: metrics.requests.labels(outcome.value) for outcome in Outcome}
        self._failures = {reason: metrics.signature_failures.labels(reason.value) for reason in SignatureFailure}
        self._background: set[asyncio.Task[None]] = set()
        self._log = HandledLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        handled = await self._handle(_Headers(scope), receive)
        self._requests[handled.outcome].inc()
        if CUT_SCOPE_KEY not in scope:  # a body too slow to arrive: the cut is logged, rate-limited
            self._log.handled(handled.outcome, handled.delivery_id, handled.events, time.perf_counter() - started)
        body = _BODIES[handled.outcome]
        await send({"type": "http.response.start", "status": _STATUS.get(handled.outcome, 200),
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        if handled.armed:
            task = asyncio.create_task(run_in_threadpool(self._enqueue_drains, handled.armed))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _handle(self, headers: _Headers, receive: Receive) -> Handled:
        header_id = headers.delivery_id
        signature = None
        try:
            failure = check_header(headers.signatures)
            if failure is None:
                body = await read_limited(receive, headers.content_length, self._limit)
                signature = authentic_digest(body, headers.signatures[0], self._secrets)
        except BodyTooLarge:
            return Handled(Outcome.TOO_LARGE, header_id or "")
        except BadBody:
            return Handled(Outcome.BAD_REQUEST, header_id or "")
        if signature is None:
            self._failures[failure or SignatureFailure.MISMATCH].inc()
            return Handled(Outcome.UNAUTHORIZED, (header_id or "")[:MAX_DELIVERY_ID_LENGTH])
        delivery_id = delivery_id_of(header_id, body)
        if self._partitions == 1:
            return await self._store(self._layouts[0], delivery_id, body, signature)
        parts = ingest.split(body, self._partitions)
        if len(parts) == 1:
            return await self._store(self._layouts[parts[0][0]], delivery_id, parts[0][1], signature)
        return _combined(list(await asyncio.gather(*(
            self._store(self._layouts[partition], delivery_id, part, signature) for partition, part in parts))))

    async def _store(self, into: partitions.Layout, delivery_id: str, body: bytes, signature: bytes) -> Handled:
        """Dedupe and store a delivery, or its part of one partition (`into`), in one Lua call."""
        batch = ingest.classify_quickly(body)
        if batch is None:  # an odd body: read element by element, without holding up other deliveries
            batch = await run_in_threadpool(ingest.classify_slowly, body)
        if self._reading_cap is None:
            self._reading_cap = asyncio.create_task(self._read_shard_cap())
        started, now = time.perf_counter(), time.time()
        try:
            reply = await self._ingest(into, delivery_id, body, signature, batch, now, legacy_digest=False)
            if ingest.result_of(reply) is ingest.IngestResult.LEGACY_MARK:  # rare: the previous version's mark
                reply = await self._ingest(into, delivery_id, body, signature, batch, now, legacy_digest=True)
        except NotReplicated as error:  # stored on the primary only: 503, Enode's retry waits for the replicas
            log.warning("delivery.not_replicated", delivery_id=delivery_id, error=str(error))
            won = ingest.result_of(error.reply) is ingest.IngestResult.ARMED
            return Handled(Outcome.UNAVAILABLE, delivery_id, batch.events, armed=(into.partition,) if won else ())
        except (redis.RedisError, OSError, TimeoutError) as error:
            log.warning("delivery.store_failed", delivery_id=delivery_id, error=repr(error))
            return Handled(Outcome.UNAVAILABLE, delivery_id, batch.events)
        self._metrics.enqueue_seconds.observe(time.perf_counter() - started)
        result = ingest.result_of(reply)
        if result is not ingest.IngestResult.DUPLICATE:
            for _, reason in batch.quarantined_events:
                self._metrics.quarantined_events.labels(reason.value).inc()
        outcome = _FROM_RESULT.get(result) or _recorded(batch)
        return Handled(outcome, delivery_id, batch.events,
                       armed=(into.partition,) if result is ingest.IngestResult.ARMED else ())

    async def _ingest(self, into: partitions.Layout, delivery_id: str, body: bytes, signature: bytes,
                      batch: ingest.Batch, now: float, *, legacy_digest: bool) -> bytes:
        command = self._packers[into.partition].pack(delivery_id, body, batch, signature=signature, now=now,
                                                     shard_cap=self._shard_cap, legacy_digest=legacy_digest)
        reply: bytes = await self._script.send(command, into.ingest_stream, into.ack_mark)
        return reply

    async def _read_shard_cap(self) -> None:
        """Marks per dedupe shard under this Redis's `hash-max-listpack-entries`, read once beside the first
        delivery (which never waits for it); the default where CONFIG is refused, as on managed Redis. A limit
        below the default is logged; an unreachable Redis is asked again with a later delivery."""
        try:
            async with asyncio.timeout(self._redis_timeout):
                config = await self._connection.config_get("hash-max-*-entries")
        except redis.ResponseError:
            config = {}
        except (redis.RedisError, redis.exceptions.RedisClusterException, OSError, TimeoutError):
            self._reading_cap = None
            return
        self._shard_cap = dedupe_marks.cap_from_config(config)
        if self._shard_cap < dedupe_marks.DEFAULT_CAP:
            log.warning("dedupe.listpack_limit_low", config=config, marks_per_shard=self._shard_cap)

    async def aclose(self) -> None:
        """Close the batches' own connections (before the client's aclose())."""
        await self._script.aclose()

    async def settled(self) -> None:
        """Wait for drain enqueues still running after their responses, log what is counted (shutdown, tests)."""
        if self._background:
            await asyncio.gather(*self._background)
        self._log.flush()

    def _enqueue_drains(self, armed: tuple[int, ...]) -> None:
        """Runs after the response, in the threadpool (RQ is synchronous): a drain job per armed partition."""
        for partition in armed:
            try:
                job_id = ingest_arming.enqueue_after_arming(self._sync_connection, self._queues,
                                                            into=self._layouts[partition])
            except (redis.RedisError, OSError) as error:
                log.warning("drain.enqueue_failed", error=repr(error), partition=partition)
            else:
                log.info("drain.enqueued", job_id=job_id, partition=partition)
