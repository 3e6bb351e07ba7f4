"""Every Redis client of every plugwatch process is built here (an architecture test keeps it so).

    receiver_async(settings) / receiver_sync(settings)   the receiver: every call within the Redis budget
    worker(settings)                                      a worker's jobs, drainers and pump
    rq(settings)                                          RQ's own connection in a worker (blocking dequeue)
    command(settings)                                     a `plugwatch` command: the budget, at least 5 s
    queues(settings, data, ...)                           RQ's Redis beside the data client `data`: that same
                                                          client, unless RQ_REDIS_URL names another Redis
    probe(url, timeout)                                   a quick look at a URL (`plugwatch up` picking a Redis)
    dashboard_url(url)                                    a URL with these options, for rq-dashboard
    receiver_node(settings)(host, port)                   the receiver's plain client to one node of a cluster
    socket_timeout(client)                                the socket timeout a client was built with

A `redis+cluster://` REDIS_URL gives every process a `RedisCluster` (redis-py's: it reads the slot map from any
node it reaches, sends each command to the primary of its keys' slot, follows MOVED, and reads the map again
after a connection error) in place of `redis.Redis`: the same commands, so the code above it is typed
`redis.Redis` and does not know the difference, as long as each call's keys are one partition's (one slot;
`plugwatch.partitions`) and keyless commands (INFO, SCAN, CONFIG) are asked node by node where that matters
(`primaries`). Its constructor does not connect (`_LazyCluster`), so a cluster down at a process's start is
ridden through like one Redis down. The receiver's ingest calls go to each primary on a plain client of its
own (`receiver.batching.ClusterScriptBatcher`).

Two Redises, or one. `REDIS_URL` holds plugwatch's data (ingest, state, outboxes, quarantine, dedupe marks,
subscriptions); `RQ_REDIS_URL` (default: the same) holds RQ's queues, jobs, workers and dead letters. Code that
talks to RQ is given the client `queues(...)` returns, and code that touches data the data client; with one
Redis both are the same object, so nothing changes (one pool, no second connection).

Every client has a connect timeout and a socket timeout (no call waits for ever: a network blackhole ends
as a `TimeoutError` within the bound), TCP keepalive with short probes where the platform has the options
(a dead peer of an idle pooled connection is noticed in ~15 s, not the kernel's 2 h), and a health check
(a PING before a command on a connection idle for `HEALTH_CHECK_SECONDS`).

**Retries: on `ConnectionError` only, never on `TimeoutError`.** A timeout is what a blackhole looks like,
so retrying it would multiply the bound (redis-py's default: 3 retries with up to 10 s of backoff each);
the callers' own loops (the next batch, the pump, the drainer's next round, Enode's retry for the receiver)
retry later instead. A refused or reset connection fails at once, so a few quick retries with exponential
backoff ride through a Redis restart or a failover. Yet a reset can come after the command ran and before
its reply, so every command retried must be safe to run twice. plugwatch's are:

- the receiver's dedupe-and-append Lua (`plugwatch.ingest_protocol`): run again with the same id and body it
  finds its own mark with the same digest and answers "duplicate" without a second XADD;
- the worker's commit (`worker.ingest.store`): a compare-and-set on the user's state version; run again
  after it applied, the version no longer matches, the store re-reads and the core finds nothing new, so no
  event is appended twice; XACK, XDEL, DEL, SET of a lease to its own token, PEXPIRE are idempotent;
- arming a drain (SET NX "queued", then an RQ enqueue): a second drain job finds the work done or the lease
  held and returns;
- the outbox XADD of a dead-letter replay may append an event twice: it is the same id and bytes, which
  consumers deduplicate (delivery is at least once anyway).

RQ's connection gets no retries at all: a BLMOVE that moved a job before its reply was lost must not be
sent again (RQ catches connection errors of its dequeue and backs off by itself). Its socket timeout is
RQ's own `connection_timeout` (the dequeue block + 10 s), set here so that RQ's `Worker._set_connection`
does not raise it; with RQ's default worker TTL of 420 s that would be 415 s, a 7-minute wedge after a
blackhole, so the worker uses `PLUGWATCH_WORKER_TTL_SECONDS` (default 60: block 45 s, socket 55 s).
"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Callable, Iterator
from typing import Any, cast
from urllib.parse import urlencode

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import CrossSlotTransactionError, RedisClusterException
from redis.retry import Retry

from plugwatch import redis_urls
from plugwatch.redis_urls import Kind, RedisUrl
from plugwatch.settings import Settings, SettingsError

MIN_COMMAND_TIMEOUT_SECONDS = 5.0
HEALTH_CHECK_SECONDS = 15
RETRIES = 3
# RQ's dequeue blocks this much shorter than its worker TTL, and its socket waits this much longer (RQ 3.0).
RQ_DEQUEUE_MARGIN_SECONDS = 15
RQ_SOCKET_MARGIN_SECONDS = 10
SENTINEL_TIMEOUT_SECONDS = 1.0  # a sentinel's answer (the primary's address) is waited for this long at most


def _keepalive_options() -> dict[int, int]:
    """Probe an idle connection after 5 s, every 3 s, give up after 3 probes (where the platform can)."""
    wanted = {"TCP_KEEPIDLE": 5, "TCP_KEEPINTVL": 3, "TCP_KEEPCNT": 3}
    return {getattr(socket, name): value for name, value in wanted.items() if hasattr(socket, name)}


def _options(url: str, socket_timeout: float, connect_timeout: float) -> dict[str, Any]:
    options: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout,
                               "health_check_interval": HEALTH_CHECK_SECONDS}
    if not url.startswith("unix:"):  # a Unix socket has no TCP keepalive
        options.update(socket_keepalive=True, socket_keepalive_options=_keepalive_options())
    return options


def _backoff(budget: float) -> ExponentialBackoff:
    """Retries spaced 2, 4, 8 … % of the budget apart, at most a quarter of it."""
    return ExponentialBackoff(cap=budget / 4, base=budget / 50)


def _sentinel_options(target: RedisUrl, socket_timeout: float) -> dict[str, Any]:
    """How the sentinels are asked: within a second (or the budget), never retried (the next one is asked)."""
    timeout = min(socket_timeout, SENTINEL_TIMEOUT_SECONDS)
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": Retry(NoBackoff(), 0),
            "username": target.sentinel_username, "password": target.sentinel_password}


def _primary_options(target: RedisUrl, retry: object) -> dict[str, Any]:
    return {"db": target.db, "username": target.username, "password": target.password, "retry": retry}


def connect(url: str, *, socket_timeout: float, connect_timeout: float | None = None,
            retries: int = RETRIES) -> redis.Redis:
    """A sync client for `url` (the other functions are this with plugwatch's numbers); a sentinel URL's
    client asks the sentinels for the primary on each new connection, so it follows a failover."""
    connect_timeout = socket_timeout if connect_timeout is None else connect_timeout
    retry = Retry(_backoff(socket_timeout), retries, supported_errors=(RedisConnectionError,))
    options = _options(url, socket_timeout, connect_timeout)
    target = redis_urls.parse(url)
    if target.kind is Kind.SENTINEL:
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            target.nodes, sentinel_kwargs=_sentinel_options(target, socket_timeout), **options)
        client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            target.service, redis_class=redis.Redis, **_primary_options(target, retry))
        return client
    if target.kind is Kind.CLUSTER:
        return cast(redis.Redis, _LazyCluster(lambda: redis.cluster.RedisCluster(
            startup_nodes=[redis.cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call]
                           for host, port in target.nodes],
            username=target.username, password=target.password, require_full_coverage=False,
            retry=Retry(_backoff(socket_timeout), retries), **options, **target.client_tls), socket_timeout))
    return redis.Redis.from_url(url, retry=retry, **options)


class _LazyCluster:
    """A `redis.cluster.RedisCluster` built on its first use, whose errors are all RedisErrors.

    redis-py's reads the slot map in its constructor, and again after a connection error, and raises
    RedisClusterException (no RedisError) when no node answers or a slot has no primary for now. Every caller
    here treats a RedisError as "Redis is down, try later", so each of the client's methods (and a pipeline's
    `execute`) turns those into redis.ConnectionError; the first command builds the client, and a failed build
    is tried again by the next one, so a process rides through a cluster that is down at its start as through
    one Redis down. CrossSlotTransactionError stays what it is: a bug (a transaction spanning slots), not an
    outage."""

    def __init__(self, build: Callable[[], redis.cluster.RedisCluster], timeout: float) -> None:
        self._build = build
        self._client: redis.cluster.RedisCluster | None = None
        self.plugwatch_socket_timeout = timeout

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            with _as_connection_error():
                self._client = self._build()
        value = getattr(self._client, name)
        return _converting(value) if callable(value) else value

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


@contextlib.contextmanager
def _as_connection_error() -> Iterator[None]:
    try:
        yield
    except CrossSlotTransactionError:
        raise
    except RedisClusterException as error:
        raise RedisConnectionError(f"Redis Cluster unavailable: {error}") from error


def _converting(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        with _as_connection_error():
            result = function(*args, **kwargs)
        return _ClusterPipe(result) if isinstance(result, redis.cluster.ClusterPipeline) else result

    return call


class _ClusterPipe:
    """A cluster pipeline whose `execute` raises RedisErrors only (`_LazyCluster`)."""

    def __init__(self, pipe: redis.cluster.ClusterPipeline) -> None:
        self._pipe = pipe

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        with _as_connection_error():
            return self._pipe.execute(raise_on_error=raise_on_error)

    def __enter__(self) -> _ClusterPipe:
        return self

    def __exit__(self, *_: object) -> None:
        self._pipe.reset()  # type: ignore[no-untyped-call]

def is_cluster(url: str) -> bool:
    return redis_urls.parse(url).kind is Kind.CLUSTER


def socket_timeout(client: Any) -> float | None:
    """The socket timeout `client` (one of this module's) was built with (None: none)."""
    if isinstance(client, _LazyCluster):
        return client.plugwatch_socket_timeout
    pool = getattr(client, "connection_pool", None)
    return pool.connection_kwargs.get("socket_timeout") if pool is not None else None


def primaries(client: redis.Redis) -> Iterator[redis.Redis]:
    """`client` itself, or for a cluster client a plain client per primary (for INFO, SCAN and the like)."""
    if not isinstance(client, _LazyCluster):
        yield client
        return
    for node in client.get_primaries():
        yield client.get_redis_connection(node)


def connect_async(url: str, *, socket_timeout: float, retries: int = RETRIES) -> redis.asyncio.Redis:
    retry = redis.asyncio.retry.Retry(_backoff(socket_timeout), retries, supported_errors=(RedisConnectionError,))
    options = _options(url, socket_timeout, socket_timeout)
    target = redis_urls.parse(url)
    if target.kind is Kind.SENTINEL:
        sentinel_options = _sentinel_options(target, socket_timeout)
        sentinel_options["retry"] = redis.asyncio.retry.Retry(NoBackoff(), 0)
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            target.nodes, sentinel_kwargs=sentinel_options, **options)
        return sentinel.master_for(target.service, redis_class=redis.asyncio.Redis,  # type: ignore[no-any-return]
                                   **_primary_options(target, retry))
    if target.kind is Kind.CLUSTER:
        return cast(redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster(
            startup_nodes=[redis.asyncio.cluster.ClusterNode(host, port) for host, port in target.nodes],
            username=target.username, password=target.password, require_full_coverage=False,
            retry=redis.asyncio.retry.Retry(_backoff(socket_timeout), retries), **options, **target.client_tls))
    return redis.asyncio.Redis.from_url(url, retry=retry, **options)


def receiver_node(settings: Settings) -> Callable[[str, int], redis.asyncio.Redis]:
    """For a cluster REDIS_URL: the receiver's plain client to one node (its credentials, its budget)."""
    target = redis_urls.parse(settings.process.redis_url)
    timeout = settings.process.redis_timeout_seconds

    def node(host: str, port: int) -> redis.asyncio.Redis:
        retry = redis.asyncio.retry.Retry(_backoff(timeout), RETRIES, supported_errors=(RedisConnectionError,))
        return redis.asyncio.Redis(host=host, port=port, username=target.username, password=target.password,
                                   retry=retry, **_options("redis://", timeout, timeout), **target.client_tls)

    return node


def check_sentinels(variable: str, url: str, timeout: float = SENTINEL_TIMEOUT_SECONDS) -> None:
    """At start-up: for a sentinel URL, that at least one sentinel answers and knows its service; else
    `SettingsError` naming `variable` (a primary that is down is no such error: it is Redis down, as for any
    URL, and the processes ride through it). Other URLs: nothing to check."""
    target = redis_urls.parse(url)
    if target.kind is not Kind.SENTINEL:
        return
    answered = []
    for host, port in target.nodes:
        client = redis.Redis(host, port, **_sentinel_options(target, timeout))
        try:
            masters = client.sentinel_masters()
        except (redis.RedisError, OSError):
            continue
        finally:
            client.close()
        if target.service in masters:
            return
        answered.append(f"{host}:{port}")
    if not answered:
        raise SettingsError(f"{variable}: none of the sentinels {target.nodes_text} answers "
                            f"(in {target.shown})")
    raise SettingsError(f"{variable}: the sentinels ({', '.join(answered)}) know no service "
                        f"{target.service!r} (in {target.shown})")


def check_startup(redis_url: str, rq_redis_url: str = "") -> None:
    """At a process's start: `check_sentinels` for REDIS_URL and RQ_REDIS_URL (`SettingsError` naming it)."""
    check_sentinels("REDIS_URL", redis_url)
    if rq_redis_url and rq_redis_url != redis_url:
        check_sentinels("RQ_REDIS_URL", rq_redis_url)


def queues(settings: Settings, data: redis.Redis, *, socket_timeout: float, connect_timeout: float | None = None,
           retries: int = RETRIES) -> redis.Redis:
    """The client for RQ's queues, jobs and dead letters of a process whose data client is `data`: `data`
    itself when RQ_REDIS_URL is unset (or the same URL), else a client for RQ_REDIS_URL with these timeouts."""
    if not settings.process.queues_apart:
        return data
    return connect(settings.process.queues_url, socket_timeout=socket_timeout, connect_timeout=connect_timeout,
                   retries=retries)


def close_both(data: redis.Redis, queues_client: redis.Redis) -> None:
    """Close a data client and its queues client (once, when they are the same)."""
    data.close()
    if queues_client is not data:
        queues_client.close()


def receiver_async(settings: Settings) -> redis.asyncio.Redis:
    return connect_async(settings.process.redis_url, socket_timeout=settings.process.redis_timeout_seconds)


def receiver_sync(settings: Settings) -> redis.Redis:
    return connect(settings.process.redis_url, socket_timeout=settings.process.redis_timeout_seconds)


def receiver_queues(settings: Settings, data: redis.Redis) -> redis.Redis:
    """The receiver's client for enqueueing drain jobs (after the response) and reading queue depths."""
    return queues(settings, data, socket_timeout=settings.process.redis_timeout_seconds)


def worker(settings: Settings) -> redis.Redis:
    process = settings.process
    return connect(process.redis_url, socket_timeout=process.redis_socket_timeout_seconds,
                   connect_timeout=min(process.redis_socket_timeout_seconds, MIN_COMMAND_TIMEOUT_SECONDS))


def worker_queues(settings: Settings, data: redis.Redis) -> redis.Redis:
    """A worker's client for enqueueing, counting and dead-lettering (RQ's own dequeue uses `rq`)."""
    process = settings.process
    return queues(settings, data, socket_timeout=process.redis_socket_timeout_seconds,
                  connect_timeout=min(process.redis_socket_timeout_seconds, MIN_COMMAND_TIMEOUT_SECONDS))


def rq_dequeue_timeout(settings: Settings) -> int:
    """How long RQ's dequeue blocks (RQ 3.0: `Worker.dequeue_timeout`, the worker TTL - 15 s)."""
    return max(1, settings.process.worker_ttl_seconds - RQ_DEQUEUE_MARGIN_SECONDS)


def rq(settings: Settings) -> redis.Redis:
    """RQ's connection in a worker: a socket timeout just beyond its blocking dequeue, no retries."""
    process = settings.process
    return connect(process.queues_url, socket_timeout=rq_dequeue_timeout(settings) + RQ_SOCKET_MARGIN_SECONDS,
                   connect_timeout=min(process.redis_socket_timeout_seconds, MIN_COMMAND_TIMEOUT_SECONDS),
                   retries=0)


def command(settings: Settings, timeout: float | None = None) -> redis.Redis:
    """A `plugwatch` command's client: `timeout`, else the Redis budget but at least 5 s."""
    if timeout is None:
        timeout = max(settings.process.redis_timeout_seconds, MIN_COMMAND_TIMEOUT_SECONDS)
    return connect(settings.process.redis_url, socket_timeout=timeout)


def command_queues(settings: Settings, data: redis.Redis) -> redis.Redis:
    """A `plugwatch` command's client for RQ (dead letters, workers, queue depths) beside its data client."""
    return queues(settings, data, socket_timeout=max(settings.process.redis_timeout_seconds,
                                                     MIN_COMMAND_TIMEOUT_SECONDS))


def probe(url: str, timeout: float) -> redis.Redis:
    """A client for a quick reachability check: no retries (an answer or not, now)."""
    return connect(url, socket_timeout=timeout, retries=0)


def dashboard_url(url: str, timeout: float = MIN_COMMAND_TIMEOUT_SECONDS) -> str:
    """`url` with the timeouts, keepalive and health check in its query (rq-dashboard builds its own client
    from a URL; redis-py reads these query arguments; no retries there, and no keepalive options). A sentinel
    URL is given as it is: rq-dashboard parses `redis+sentinel://` itself."""
    if redis_urls.parse(url).kind is Kind.SENTINEL:
        return url
    query = urlencode({"socket_timeout": timeout, "socket_connect_timeout": timeout, "socket_keepalive": "true",
                       "health_check_interval": HEALTH_CHECK_SECONDS})
    return f"{url}{'&' if '?' in url else '?'}{query}"
