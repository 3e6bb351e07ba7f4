"""Group commit for one Lua script: concurrent calls share one pipelined round trip to Redis.

redis-py's asyncio pipeline spends ~18 us of CPU packing one 3 KB EVALSHA and more on its retry and
observability wrappers; here each call is packed as it comes (by hiredis, or by the caller: `send`, as the
receiver does with `ingest_protocol.PackedCalls`) and a batch goes out as one
write on a connection of the batcher's own, its replies read one after the other. Requests that arrive while a
batch is in flight wait for the next one, so the batch size follows the load (1 when idle) and no timer
delays a lone request. Each call still gets its own reply or exception, and only once Redis has answered
it: as soon as its reply is read (the batch's later replies still due: under a closed loop of 32 clients the
first callers' next requests then arrive while Redis runs the rest of the batch, 44.4% -> 51.5% of a bare endpoint
in bench/receiver.py), or, with `replicas`, once the whole batch is confirmed. A script call is never retried
here except after NOSCRIPT (which means it did not run), or by the client's retry policy after a refused or
reset connection (`plugwatch.redis_clients`: the script is safe to run twice). A call's `deadline` (its whole
wait, queue included) is kept by one timer for all calls, not one per call. A batcher serves the one event
loop it is first called on.

    __call__ ─▶ pending ─▶ _flush: take a batch ─▶ _run (write, read every reply; within `timeout`)
                                                    └─▶ each reply read ─▶ answer its caller
                                                    └─▶ with `replicas` > 0: the batch's writes acknowledged,
                                                        SET a mark, WAIT ─▶ answer each caller
                                                        (fewer replicas within `timeout`: NotReplicated for each)

Acknowledged means replicated (`PLUGWATCH_ACK_REPLICAS`). Redis' WAIT counts the replicas holding everything
*this connection* wrote, and a duplicate's script writes nothing, so before each WAIT the batch writes one small
key (`keys.ACK_MARK`): replicas acknowledging that write hold every write the primary made before it (the
replication stream is one ordered stream), among them the first attempt of a delivery this batch found to be
a duplicate. So a retry of a delivery whose first attempt was answered 503 (not confirmed) is answered 200 only
once that first attempt is on the replicas; if a failover lost it, the retry is no duplicate and is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
import redis
import redis.asyncio
import structlog
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import AskError, MovedError, NoScriptError, RedisClusterException, ResponseError

log = structlog.get_logger(__name__)

Arg = str | bytes | int


class _Call:
    """One script call: its EVALSHA packed once (its length counts against `max_batch_bytes`), its future, the
    key written before a WAIT for it (`ack_mark`), and whether it goes after ASKING (a Redis Cluster slot being
    imported by this node: `ClusterScriptBatcher`)."""

    __slots__ = ("ack_mark", "asking", "command", "future")

    def __init__(self, command: bytes, future: asyncio.Future[Any], ack_mark: str, asking: bool = False) -> None:
        self.command = command
        self.future = future
        self.ack_mark = ack_mark
        self.asking = asking


ASKING = hiredis.pack_command(("ASKING",))


ACK_MARK_TTL_MS = 60_000


class NotReplicated(redis.RedisError):
    """The script ran on the primary (`reply`) but fewer than the wanted replicas confirmed it in time."""

    def __init__(self, reply: Any, acknowledged: int, wanted: int) -> None:
        super().__init__(f"{acknowledged} of {wanted} replicas acknowledged the write within the budget")
        self.reply = reply


class ScriptBatcher:
    def __init__(self, connection: redis.asyncio.Redis, script: str, *, timeout: float, deadline: float | None = None,
                 max_batch: int = 128, max_batch_bytes: int = 4 * 1024 * 1024, replicas: int = 0,
                 ack_mark: str = "") -> None:
        """`timeout`: for one batch's round trip (and its WAIT); `deadline`: a call gives up (TimeoutError)
        after this long in all, however long the queue of batches before it (None: it waits for its batch);
        `replicas` > 0: a reply is given only once that many replicas hold the batch (`ack_mark` is written
        before each WAIT)."""
        self._connection = connection
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 (Redis names scripts by SHA-1)
        self._timeout = timeout
        self._deadline = deadline
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._pending: list[_Call] = []
        self._expiries: deque[tuple[float, asyncio.Future[Any]]] = deque()  # (deadline, call), oldest first
        self._expiring: asyncio.TimerHandle | None = None  # the one timer behind `deadline`
        self._flusher: asyncio.Task[None] | None = None
        self._link: AbstractConnection | None = None  # the batches' own connection, from the client's pool
        self._replicas = replicas
        self._ack_mark = ack_mark

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg], ack_mark: str | None = None) -> Any:
        """The script's reply; raises what Redis raised (cancel the await to give up waiting). `ack_mark`:
        the key written before a WAIT for this call (default: the batcher's); on a cluster it must live on the
        node the call's keys live on (the partition's)."""
        command = ("EVALSHA", self._sha, len(keys), *keys, *args)
        return await self.send(hiredis.pack_command(command),  # type: ignore[arg-type]  # (its stub: a 1-tuple)
                               keys[0] if keys else "", ack_mark)

    @property
    def sha(self) -> str:
        """The script's SHA-1, by which a packed command names it (EVALSHA)."""
        return self._sha

    async def send(self, command: bytes, route_key: str, ack_mark: str | None = None, *, asking: bool = False) -> Any:
        """`__call__` for a call already packed (an EVALSHA of this script, in RESP: e.g.
        `plugwatch.ingest_protocol.PackedCalls`); `route_key`: one of its keys (used on a cluster only);
        `asking`: send ASKING just before it (and before its ack mark's SET), as a Redis Cluster's ASK asks."""
        loop = asyncio.get_running_loop()
        call = _Call(command, loop.create_future(), self._ack_mark if ack_mark is None else ack_mark, asking)
        self._pending.append(call)
        if self._deadline is not None:
            while self._expiries and self._expiries[0][1].done():  # answered: only the unanswered are kept
                self._expiries.popleft()
            self._expiries.append((loop.time() + self._deadline, call.future))
            if self._expiring is None:
                self._expiring = loop.call_at(self._expiries[0][0], self._expire)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await call.future

    def _expire(self) -> None:
        """Fail every call past its deadline (TimeoutError), whether still pending or in a batch in flight;
        one timer for all of them, at the oldest unanswered call's deadline (calls arrive in deadline order)."""
        self._expiring = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._expiries and (self._expiries[0][1].done() or self._expiries[0][0] <= now):
            _give_up(self._expiries.popleft()[1])
        if self._expiries:
            self._expiring = loop.call_at(self._expiries[0][0], self._expire)

    async def _flush(self) -> None:
        while self._pending:
            batch = self._take_batch()
            if not batch:
                continue
            try:
                async with asyncio.timeout(self._timeout) as budget:
                    # Without replicas to wait for, a reply answers its caller as soon as it is read.
                    replies = await self._run(batch, answer_early=not self._replicas)
                    # Here every write of the batch is acknowledged by the Redis it was sent to.
                    if self._replicas:
                        acknowledged = await self._replicated(*_ack_mark_of(batch, replies), budget.when())
                        if acknowledged < self._replicas:
                            replies = [reply if isinstance(reply, BaseException) else
                                       NotReplicated(reply, acknowledged, self._replicas) for reply in replies]
            except Exception as error:  # every waiter must hear of it, whatever it is
                failure = error if isinstance(error, redis.RedisError | OSError | TimeoutError) else (
                    redis.RedisError(f"ingest batch failed: {error!r}"))
                replies = [failure] * len(batch)
            for call, reply in zip(batch, replies, strict=True):
                # (done: answered early, or its caller gave up (timeout); then the script may still have run,
                # and Enode's retry dedupes)
                _answer(call.future, reply)

    def _take_batch(self) -> list[_Call]:
        """The oldest pending calls, up to max_batch of them and (past the first) max_batch_bytes of commands."""
        taken, size = 0, 0
        for call in self._pending[: self._max_batch]:
            size += len(call.command)
            if taken and size > self._max_batch_bytes:
                break
            taken += 1
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        return [call for call in batch if not call.future.done()]

    async def _run(self, batch: list[_Call], *, answer_early: bool) -> list[Any]:
        replies = await self._pipeline(batch, answer_early)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # Redis restarted or flushed its script cache: NOSCRIPT means nothing ran
            await self._connection.script_load(self._script)
            again = await self._pipeline([batch[i] for i in missing], answer_early)
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _replicated(self, ack_mark: str, asking: bool, until: float | None) -> int:
        """How many replicas hold everything written before now (SET `ack_mark`, WAIT until about `until`)."""
        left = (until - asyncio.get_running_loop().time()) if until is not None else self._timeout
        wait_ms = max(1, int(left * 1000) - 20)  # WAIT 0 would wait for ever; 20 ms left to read its answer
        mark = hiredis.pack_command(cast(Any, ("SET", ack_mark, b"1", "PX", ACK_MARK_TTL_MS)))
        commands = [ASKING + mark if asking else mark, hiredis.pack_command(cast(Any, ("WAIT", self._replicas,
                                                                                        wait_ms)))]
        link = await self._own_link()
        replies = await link.retry.call_with_retry(lambda: _exchange(link, commands, asked=[asking, False]),
                                                   lambda _: link.disconnect())
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return int(replies[1])

    async def aclose(self) -> None:
        """Disconnect the batches' link (a batcher on a client of its own; else the client's aclose() does)."""
        if self._link is not None:
            await self._link.disconnect()
            self._link = None

    async def _own_link(self) -> AbstractConnection:
        """The batches' connection, kept, never released (the client's aclose() disconnects it with the pool).
        Every batch runs within its own `timeout`, which disconnects a link that stops answering, so the link
        has no socket timeout of its own (redis-py would start a task per write to enforce it) and no health
        check (a PING, and a clock read per reply): a dead link fails the write or the read, and the retry
        policy reconnects and sends the batch again."""
        if self._link is None:
            link = await self._connection.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            link.socket_timeout = None
            link.health_check_interval = 0
            self._link = link
        return self._link

    async def _pipeline(self, batch: list[_Call], answer_early: bool) -> list[Any]:
        """One write of the batch's EVALSHAs and their replies in order (an error reply in its place), with
        the client's retry policy (a refused or reset connection: reconnect and send the batch again; a call
        answered early is sent again too, and its second reply, a duplicate, goes to no one).
        `answer_early`: each reply but NOSCRIPT (to be run again) answers its caller as soon as it is read."""
        commands = [ASKING + call.command if call.asking else call.command for call in batch]
        asked = [call.asking for call in batch] if any(call.asking for call in batch) else None
        answering = [call.future for call in batch] if answer_early else None
        link = await self._own_link()
        return await link.retry.call_with_retry(lambda: _exchange(link, commands, answering, asked),
                                                lambda _: link.disconnect())


class ClusterScriptBatcher:
    """The same calls on a Redis Cluster: a `ScriptBatcher` per primary, each on a plain client of its own to
    that node (so a batch is one write there, and its WAIT counts that node's replicas), a call going to the
    primary serving its first key's slot (a call's keys are one partition's: one slot).

    The slot map is the cluster client's (`cluster`, CLUSTER SHARDS/SLOTS from any node). A MOVED reply (a
    failover or a resharding moved the slot; the call did not run) reads the map again and sends the call once
    more, to its new primary; a node that cannot be reached marks the map stale (read again before the next
    call, at most every REFRESH_SECONDS) and fails its calls, which the receiver answers 503 (Enode retries;
    the script is safe to run twice). During a failover, calls to the lost primary's slots fail until a replica
    is promoted; the other primaries' calls go on. ASK (a resharding is moving the slot, and the call's keys are
    not on the old primary) sends the call once more to the node named, after ASKING; TRYAGAIN (its keys are
    split between the two nodes for the moment) is an error, answered 503 as well."""

    REFRESH_SECONDS = 0.25

    def __init__(self, cluster: Any, script: str, node_client: Callable[[str, int], redis.asyncio.Redis],
                 **options: Any) -> None:
        """`cluster`: a `redis.asyncio.RedisCluster`; `node_client(host, port)`: a plain client to one node;
        `options`: each node's `ScriptBatcher`'s."""
        self._cluster = cluster
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 (Redis names scripts by SHA-1)
        self._node_client = node_client
        self._options = options
        self._nodes: dict[str, tuple[redis.asyncio.Redis, ScriptBatcher]] = {}
        self._stale = True
        self._refreshed_at = -math.inf
        self._refreshing: asyncio.Lock | None = None

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg], ack_mark: str | None = None) -> Any:
        command = ("EVALSHA", self._sha, len(keys), *keys, *args)
        return await self.send(hiredis.pack_command(command), keys[0], ack_mark)  # type: ignore[arg-type]

    @property
    def sha(self) -> str:
        return self._sha

    async def send(self, command: bytes, route_key: str, ack_mark: str | None = None) -> Any:
        """`ScriptBatcher.send` to the primary of `route_key`'s slot (every key of a call is in that slot)."""
        try:
            return await self._send(command, route_key, ack_mark)
        except MovedError:  # the call did not run: read the map now, and send it once more
            self._stale, self._refreshed_at = True, -math.inf
        except AskError as ask:  # the call did not run: its slot is being moved to the node named, ask it there
            try:
                return await self._batcher_of(ask.host, ask.port).send(command, route_key, ack_mark, asking=True)
            except MovedError:  # the move ended meanwhile: the map says where the slot is now
                self._stale, self._refreshed_at = True, -math.inf
        return await self._send(command, route_key, ack_mark)

    async def _send(self, command: bytes, route_key: str, ack_mark: str | None) -> Any:
        try:
            return await (await self._batcher_for(route_key)).send(command, route_key, ack_mark)
        except (redis.ConnectionError, redis.TimeoutError, OSError, TimeoutError):
            self._stale = True  # (a node killed or cut off: its slots may have a new primary by now)
            raise

    async def aclose(self) -> None:
        for client, batcher in self._nodes.values():
            await batcher.aclose()
            await client.aclose()
        self._nodes.clear()

    async def _batcher_for(self, key: str) -> ScriptBatcher:
        if self._stale:
            await self._refresh()
        try:
            node = self._cluster.nodes_manager.get_node_from_slot(self._cluster.keyslot(key))
        except (KeyError, IndexError, RedisClusterException) as error:  # the map has no primary for the slot
            self._stale = True
            raise redis.ConnectionError(f"no primary known for the slot of {key!r} (a failover?)") from error
        return self._batcher_of(node.host, node.port)

    def _batcher_of(self, host: str, port: int) -> ScriptBatcher:
        name = f"{host}:{port}"  # (as redis-py names a cluster node)
        if name not in self._nodes:
            client = self._node_client(host, port)
            self._nodes[name] = (client, ScriptBatcher(client, self._script, **self._options))
        return self._nodes[name][1]

    async def _refresh(self) -> None:
        """Read the slot map again (one caller reads, the others wait for it), at most every REFRESH_SECONDS."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            loop = asyncio.get_running_loop()
            if not self._stale or loop.time() - self._refreshed_at < self.REFRESH_SECONDS:
                return
            self._refreshed_at = loop.time()
            try:
                if not self._cluster.nodes_manager.slots_cache:
                    await self._cluster.initialize()
                else:
                    await self._cluster.nodes_manager.initialize()
            except RedisClusterException as error:  # no node answered with a whole map: Redis is down for us
                raise redis.ConnectionError(f"no Redis Cluster slot map: {error}") from error
            self._stale = False


async def _exchange(link: AbstractConnection, commands: list[bytes],
                    answering: list[asyncio.Future[Any]] | None = None, asked: list[bool] | None = None) -> list[Any]:
    """Send `commands` in one write, read their replies; with `answering` (a future per command), each
    reply but NOSCRIPT is also given to its future as soon as it is read. `asked`: which commands begin with
    ASKING, whose reply (OK) is read and dropped before theirs."""
    if not link.is_connected:
        # connect() first: send_packed_command alone reconnects to the address the link had, where a
        # Sentinel-managed link must ask the sentinels for the primary again (after a failover).
        await link.connect()  # type: ignore[no-untyped-call]
    await link.send_packed_command(commands)
    replies: list[Any] = []
    for index in range(len(commands)):
        if asked is not None and asked[index]:
            with contextlib.suppress(ResponseError):  # (an error here shows in the command's own reply)
                await link.read_response(timeout=math.inf)  # ASKING's OK
        try:  # no timeout per reply (math.inf): the batch's timeout bounds them all, and disconnects on expiry
            reply = await link.read_response(timeout=math.inf)
        except ResponseError as error:  # this command's error reply; the connection is in step
            reply = error
        if answering is not None and not isinstance(reply, NoScriptError):
            _answer(answering[len(replies)], reply)
        replies.append(reply)
    return replies


def _ack_mark_of(batch: list[_Call], replies: list[Any]) -> tuple[str, bool]:
    """The ack mark of a call that ran (on a cluster, a call answered MOVED is on another node now, and so may
    its ack mark be: a key of a call that ran is one this node serves), and whether it needs ASKING too (the
    call did: its slot is being imported here)."""
    ran = next((call for call, reply in zip(batch, replies, strict=True) if not isinstance(reply, BaseException)),
               batch[0])
    return ran.ack_mark, ran.asking


def _answer(future: asyncio.Future[Any], reply: Any) -> None:
    if future.done():
        return
    if isinstance(reply, BaseException):
        future.set_exception(reply)
    else:
        future.set_result(reply)


def _give_up(future: asyncio.Future[Any]) -> None:
    _answer(future, TimeoutError("no answer from Redis within the budget"))
