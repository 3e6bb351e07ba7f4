"""GET /readyz: Redis answers within the Redis budget, accepts writes and will not evict (plugwatch.redis_health).

Each probe is one pipelined round trip (as the PING before it was); probes arriving while one is in flight
share its answer, so a flood of /readyz costs Redis one read at a time. Deliveries never wait for it.
200 `ready`, or 503 with JSON `{"ready": false, "reason": …}`.
"""

from __future__ import annotations

import asyncio

import redis.asyncio
import redis.exceptions as redis_errors
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from plugwatch.redis_health import PROCESS_LOG, HealthLog, RedisHealth, Severity, aread_health

log = structlog.get_logger(__name__)

# (RedisClusterException: a cluster's slot map could not be read, which is no RedisError in redis-py)
_UNAVAILABLE = (redis_errors.RedisError, redis_errors.RedisClusterException, OSError, TimeoutError)


class Readiness:
    def __init__(self, connection: redis.asyncio.Redis, budget_seconds: float, *,
                 health_log: HealthLog = PROCESS_LOG) -> None:
        self._connection = connection
        self._budget = budget_seconds
        self._log = health_log
        self._lock = asyncio.Lock()
        self._reads = 0  # health reads started so far
        self._last: tuple[int, RedisHealth | Exception] | None = None  # (its number, its outcome)

    async def respond(self, _: Request) -> Response:
        try:
            health = await self._health()
        except _UNAVAILABLE as error:
            log.warning("readiness.failed", error=repr(error))
            return JSONResponse({"ready": False, "reason": f"redis unavailable: {error!r}"}, status_code=503)
        if not health.ready:
            reasons = [f.line for f in health.of(Severity.FAIL) if f.blocks_readiness]
            return JSONResponse({"ready": False, "reason": "; ".join(reasons), "redis": health.as_dict()},
                                status_code=503)
        return PlainTextResponse("ready")

    async def _health(self) -> RedisHealth:
        asked_after = self._reads
        async with self._lock:
            if self._last is None or self._last[0] <= asked_after:  # no read began after this probe came
                self._reads += 1
                self._last = (self._reads, await self._read())
            outcome = self._last[1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _read(self) -> RedisHealth | Exception:
        try:
            async with asyncio.timeout(self._budget):
                health = await aread_health(self._connection)
        except _UNAVAILABLE as error:
            return error
        self._log.record(health)
        return health
