"""Group commit for one Lua script: concurrent calls share one pipelined round trip to Redis.

redis-py's asyncio client spends ~0.3 ms of CPU per command (pool, retry wrapper, packing, parsing);
a pipeline of n EVALSHAs costs a fraction of n single calls. Requests that arrive while a pipeline is
in flight wait for the next one, so the batch size follows the load (1 when idle) and no timer delays a
lone request. Each call still gets its own reply or exception; a script call is never retried here
except after NOSCRIPT (which means it did not run).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio
import structlog
from redis.exceptions import NoScriptError

log = structlog.get_logger(__name__)

Arg = str | bytes | int


@dataclass
class _Call:
    keys: Sequence[str]
    args: Sequence[Arg]
    future: asyncio.Future[Any] = field(repr=False)


class ScriptBatcher:
    def __init__(self, connection: redis.asyncio.Redis, script: str, *, timeout: float,
                 max_batch: int = 128, max_batch_bytes: int = 4 * 1024 * 1024) -> None:
        self._connection = connection
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 (Redis names scripts by SHA-1)
        self._timeout = timeout
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._pending: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """The script's reply; raises what Redis raised (cancel the await to give up waiting)."""
        call = _Call(keys, args, asyncio.get_running_loop().create_future())
        self._pending.append(call)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await call.future

    async def _flush(self) -> None:
        while self._pending:
            batch = self._take_batch()
            if not batch:
                continue
            try:
                async with asyncio.timeout(self._timeout):
                    replies = await self._run(batch)
            except Exception as error:  # every waiter must hear of it, whatever it is
                failure = error if isinstance(error, redis.RedisError | OSError | TimeoutError) else (
                    redis.RedisError(f"ingest batch failed: {error!r}"))
                replies = [failure] * len(batch)
            for call, reply in zip(batch, replies, strict=True):
                if call.future.done():
                    continue  # its caller gave up (timeout); the script may still have run: Enode's retry dedupes
                if isinstance(reply, BaseException):
                    call.future.set_exception(reply)
                else:
                    call.future.set_result(reply)

    def _take_batch(self) -> list[_Call]:
        """The oldest pending calls, up to max_batch of them and (past the first) max_batch_bytes of args."""
        taken, size = 0, 0
        for call in self._pending[: self._max_batch]:
            size += sum(len(arg) for arg in call.args if isinstance(arg, bytes))
            if taken and size > self._max_batch_bytes:
                break
            taken += 1
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        return [call for call in batch if not call.future.done()]

    async def _run(self, batch: list[_Call]) -> list[Any]:
        replies = await self._pipeline(batch)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # Redis restarted or flushed its script cache: NOSCRIPT means nothing ran
            await self._connection.script_load(self._script)
            for i, reply in zip(missing, await self._pipeline([batch[i] for i in missing]), strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        pipe = self._connection.pipeline(transaction=False)
        for call in batch:
            pipe.evalsha(self._sha, len(call.keys), *call.keys, *call.args)
        return list(await pipe.execute(raise_on_error=False))
