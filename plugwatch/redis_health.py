"""Can plugwatch trust this Redis with its state? Redis's own facts about itself, judged check by check.

    read_health(connection) -> RedisHealth           one pipelined round trip (status); read_facts: unjudged
                                                     (a cluster: each primary asked, judged by the worst)
    await aread_health(connection) -> RedisHealth    the same on redis.asyncio (the receiver's /readyz)
    judge(facts) -> RedisHealth                      the pure part: every check of CHECKS over RedisFacts
    HealthLog().record(health)                       logs each finding once per change (error/warning/info)
    HealthWatch(connection).pump()                   a worker's own read, at most every 30 s (its pump thread)
    RedisHealthCollector(connection)                 plugwatch_redis_* gauges, read at scrape time

The facts: `INFO memory`, `INFO persistence`, `INFO stats`, `CONFIG GET save` and a write probe: `SET
keys.REDIS_HEALTH_PROBE 1 XX`, which Redis refuses before running it exactly when it refuses plugwatch's
writes (OOM, MISCONF, READONLY), and which stores nothing when accepted (XX: only if the key exists). Each
check is a function `RedisFacts -> Finding`:

    writable         fail: the probe was refused (OOM at maxmemory with noeviction, MISCONF, READONLY)
    eviction_policy  fail: maxmemory-policy is not noeviction (Redis may delete state and acknowledged deliveries)
    evicted_keys     fail: INFO stats evicted_keys > 0 (keys were deleted since Redis started or CONFIG RESETSTAT)
    persistence      warn: neither AOF nor an RDB save schedule is on (a Redis restart loses everything)

A check that cannot tell (managed Redis often refuses CONFIG, sometimes INFO) says `unknown`, never fails.
A failure of a check with `blocks_readiness` makes the receiver's /readyz 503. To add a check: a function
over RedisFacts (add a fact, and its command in `_queue`, if it needs one) and a line in CHECKS.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from plugwatch import keys

log = structlog.get_logger(__name__)

PROBE_TTL_MS = 60_000
WATCH_SECONDS = 30.0  # a worker's own health read (HealthWatch), besides each scrape
RUNBOOK = "README.md#redis-health"


class Severity(enum.StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"  # Redis would not say (INFO or CONFIG refused): never a failure
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    detail: str  # one line, for status, logs and /readyz
    blocks_readiness: bool = False  # a FAIL of this check makes /readyz 503

    @property
    def line(self) -> str:
        return f"redis {self.check}: {self.detail}"


@dataclass(frozen=True)
class RedisFacts:
    """What Redis said; an empty mapping or None where it refused to say."""

    memory: Mapping[str, Any]  # INFO memory
    persistence: Mapping[str, Any]  # INFO persistence
    stats: Mapping[str, Any]  # INFO stats
    save: str | None  # CONFIG GET save ("" = no RDB schedule); None when CONFIG is refused
    write_error: str | None  # why the write probe was refused; None when it succeeded


@dataclass(frozen=True)
class RedisHealth:
    findings: tuple[Finding, ...]

    def of(self, severity: Severity) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity is severity]

    @property
    def ready(self) -> bool:
        """False while a readiness-blocking check fails (Redis refuses writes or may evict)."""
        return not any(f.blocks_readiness for f in self.of(Severity.FAIL))

    @property
    def problems(self) -> list[str]:
        """One line per failing check (what `status --check` exits 2 on)."""
        return [finding.line for finding in self.of(Severity.FAIL)]

    def as_dict(self) -> dict[str, Any]:
        return {f.check: {"severity": f.severity.value, "detail": f.detail} for f in self.findings}


def _number(facts: Mapping[str, Any], name: str) -> int | None:
    value = facts.get(name)
    return int(value) if isinstance(value, int | float) else None


def _mib(value: int | None) -> str:
    return "?" if value is None else f"{value / 2**20:.1f} MiB"


def writable(facts: RedisFacts) -> Finding:
    if facts.write_error is None:
        return Finding("writable", Severity.OK, "writes are accepted", blocks_readiness=True)
    memory = f"used_memory {_mib(_number(facts.memory, 'used_memory'))} of maxmemory " \
             f"{_mib(_number(facts.memory, 'maxmemory'))}"
    return Finding("writable", Severity.FAIL, f"Redis refuses writes ({facts.write_error}; {memory}): deliveries "
                   "get 503 until memory is freed or maxmemory raised", blocks_readiness=True)


def eviction_policy(facts: RedisFacts) -> Finding:
    policy = facts.memory.get("maxmemory_policy")
    if not isinstance(policy, str):
        return Finding("eviction_policy", Severity.UNKNOWN, "maxmemory-policy unknown (INFO memory refused)")
    if policy == "noeviction":
        return Finding("eviction_policy", Severity.OK, "maxmemory-policy noeviction", blocks_readiness=True)
    return Finding("eviction_policy", Severity.FAIL, f"maxmemory-policy is {policy}: Redis may evict user states "
                   "and acknowledged deliveries (CONFIG SET maxmemory-policy noeviction)", blocks_readiness=True)


def evicted_keys(facts: RedisFacts) -> Finding:
    evicted = _number(facts.stats, "evicted_keys")
    if evicted is None:
        return Finding("evicted_keys", Severity.UNKNOWN, "evicted keys unknown (INFO stats refused)")
    if evicted == 0:
        return Finding("evicted_keys", Severity.OK, "no key evicted")
    return Finding("evicted_keys", Severity.FAIL, f"Redis evicted {evicted} keys since it started: state or "
                   "deliveries may be lost (fix the policy, then plugwatch enode reconcile; CONFIG RESETSTAT)")


def persistence(facts: RedisFacts) -> Finding:
    info = facts.persistence
    if "aof_enabled" not in info:
        return Finding("persistence", Severity.UNKNOWN, "persistence unknown (INFO persistence refused)")
    if info["aof_enabled"]:
        failed = info.get("aof_last_write_status", "ok") != "ok"
        return Finding("persistence", Severity.WARN if failed else Severity.OK,
                       "AOF on, but its last write failed" if failed else "AOF on")
    if facts.save is None:
        return Finding("persistence", Severity.UNKNOWN, "AOF off; RDB save schedule unknown (CONFIG GET refused)")
    if facts.save.strip():
        failed = info.get("rdb_last_bgsave_status", "ok") != "ok"
        return Finding("persistence", Severity.WARN if failed else Severity.OK,
                       f"RDB snapshots (save {facts.save}){', but the last one failed' if failed else ''}, AOF off")
    return Finding("persistence", Severity.WARN, "no persistence (AOF off, no RDB save schedule): a Redis restart "
                   "loses every state and queued delivery (CONFIG SET appendonly yes)")


Check = Callable[[RedisFacts], Finding]
CHECKS: tuple[Check, ...] = (writable, eviction_policy, evicted_keys, persistence)


def judge(facts: RedisFacts, checks: Sequence[Check] = CHECKS) -> RedisHealth:
    return RedisHealth(tuple(check(facts) for check in checks))


# --- reading ---------------------------------------------------------------------------------------------

def _queue(pipe: Any) -> None:
    """The commands of one health read, on a sync or async pipeline (same order as `_facts` reads them)."""
    pipe.info("memory")
    pipe.info("persistence")
    pipe.info("stats")
    pipe.config_get("save")
    pipe.set(keys.REDIS_HEALTH_PROBE, b"1", xx=True, px=PROBE_TTL_MS)  # refused or not, never stored


def _mapping(reply: Any) -> Mapping[str, Any]:
    return reply if isinstance(reply, Mapping) else {}  # an exception: Redis refused INFO


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _facts(replies: Sequence[Any]) -> RedisFacts:
    memory, persisted, stats, save, probe = replies
    save_value = None
    if isinstance(save, Mapping):
        found = {_text(name): value for name, value in save.items()}
        save_value = _text(found["save"]) if "save" in found else None
    write_error = _refusal(probe) if isinstance(probe, redis.ResponseError) else None
    return RedisFacts(_mapping(memory), _mapping(persisted), _mapping(stats), save_value, write_error)


def _refusal(error: redis.ResponseError) -> str:
    """redis-py turns `-OOM …` into OutOfMemoryError("…"), `-READONLY …` into ReadOnlyError: keep the kind."""
    kind = type(error).__name__
    return str(error) if kind == "ResponseError" else f"{kind}: {error}"


def read_facts(connection: redis.Redis) -> RedisFacts:
    """One round trip (a cluster: `merged` over its primaries); raises redis.ConnectionError/TimeoutError when
    Redis cannot be reached."""
    return merged(read_node_facts(connection))


def read_node_facts(connection: redis.Redis) -> list[RedisFacts]:
    """The facts of one Redis, or of each primary of a cluster that answers (a few round trips each); raises
    redis.ConnectionError/TimeoutError when none does. A primary that cannot be reached is left out, not
    failed: its partitions' deliveries are 503 anyway, and the others' must stay ready (/readyz)."""
    if _is_cluster(connection):
        return _reachable([_node_facts(connection, node, key) for node, key in _probe_keys(connection).items()])
    pipe = connection.pipeline(transaction=False)
    _queue(pipe)
    return [_facts(pipe.execute(raise_on_error=False))]


def read_health(connection: redis.Redis) -> RedisHealth:
    return judge_all(read_node_facts(connection))


async def aread_health(connection: redis.asyncio.Redis) -> RedisHealth:
    if _is_cluster(connection):
        try:
            await connection.initialize()  # (a no-op once the map is read)
        except redis.exceptions.RedisClusterException as error:
            raise redis.ConnectionError(f"no node of the Redis Cluster answers: {error}") from error
        nodes = _probe_keys(connection).items()
        return judge_all(_reachable([await _anode_facts(connection, node, key) for node, key in nodes]))
    pipe = connection.pipeline(transaction=False)
    _queue(pipe)
    return judge(_facts(await pipe.execute(raise_on_error=False)))


_WORST_FIRST = {Severity.FAIL: 0, Severity.WARN: 1, Severity.UNKNOWN: 2, Severity.OK: 3}


def judge_all(nodes: Sequence[RedisFacts], checks: Sequence[Check] = CHECKS) -> RedisHealth:
    """`judge` for one Redis; for a cluster's primaries, each check's worst finding among them."""
    if len(nodes) == 1:
        return judge(nodes[0], checks)
    judged = [judge(facts, checks).findings for facts in nodes]
    return RedisHealth(tuple(min(findings, key=lambda finding: _WORST_FIRST[finding.severity])
                             for findings in zip(*judged, strict=True)))


def merged(nodes: Sequence[RedisFacts]) -> RedisFacts:
    """One set of facts for the gauges of a cluster: used_memory, maxmemory (0, no limit, if any node has
    none) and evicted_keys summed over its primaries, the rest the first primary's (`judge_all` judges)."""
    if len(nodes) == 1:
        return nodes[0]

    def total(values: list[int | None]) -> int | None:
        return None if any(value is None for value in values) else sum(value for value in values if value)

    memory = dict(nodes[0].memory)
    for name in ("used_memory", "maxmemory"):
        summed = total([_number(facts.memory, name) for facts in nodes])
        if summed is not None:
            memory[name] = 0 if name == "maxmemory" and not all(_number(f.memory, name) for f in nodes) else summed
    evicted = total([_number(facts.stats, "evicted_keys") for facts in nodes])
    stats = {"evicted_keys": evicted} if evicted is not None else {}
    return RedisFacts(memory, nodes[0].persistence, stats, nodes[0].save, nodes[0].write_error)


# --- a Redis Cluster: each primary is asked --------------------------------------------------------------

def _is_cluster(connection: Any) -> bool:
    return callable(getattr(connection, "get_primaries", None))


def _probe_keys(cluster: Any) -> dict[Any, str]:
    """A write-probe key per primary, in a slot that primary serves (`keys.REDIS_HEALTH_PROBE:{n}`); a
    primary missing from the slot map for now (a failover) gets none."""
    wanted = {node.name: node for node in cluster.get_primaries()}
    found: dict[Any, str] = {}
    for n in range(16 * 16384):
        key = f"{keys.REDIS_HEALTH_PROBE}:{{{n}}}"
        try:
            name = cluster.get_node_from_key(key).name
        except (KeyError, IndexError, redis.exceptions.RedisClusterException):
            continue  # a slot without a primary for now
        if name in wanted and wanted[name] not in found:
            found[wanted[name]] = key
            if len(found) == len(wanted):
                break
        if n > 64 * len(wanted) and found:
            break  # the others serve no slot (yet)
    return found


def _node_commands(key: str) -> list[tuple[tuple[Any, ...], bool]]:
    """`_queue`'s commands one by one (a cluster pipeline refuses keyless ones): (args, routed by its key)."""
    return [(("INFO", "memory"), False), (("INFO", "persistence"), False), (("INFO", "stats"), False),
            (("CONFIG GET", "save"), False), (("SET", key, b"1", "XX", "PX", PROBE_TTL_MS), True)]


_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OSError, TimeoutError)


def _node_facts(cluster: Any, node: Any, key: str) -> RedisFacts | None:
    replies: list[Any] = []
    try:
        for args, keyed in _node_commands(key):
            try:
                replies.append(cluster.execute_command(*args, **({} if keyed else {"target_nodes": node})))
            except redis.ResponseError as error:
                replies.append(error)
    except _UNREACHABLE:
        return None
    return _facts(_parsed(replies))


async def _anode_facts(cluster: Any, node: Any, key: str) -> RedisFacts | None:
    replies: list[Any] = []
    try:
        for args, keyed in _node_commands(key):
            try:
                replies.append(await cluster.execute_command(*args, **({} if keyed else {"target_nodes": node})))
            except redis.ResponseError as error:
                replies.append(error)
    except (*_UNREACHABLE, redis.exceptions.RedisClusterException):
        return None
    return _facts(_parsed(replies))


def _reachable(nodes: list[RedisFacts | None]) -> list[RedisFacts]:
    answered = [facts for facts in nodes if facts is not None]
    if not answered:
        raise redis.ConnectionError("no primary of the Redis Cluster answers")
    return answered


def _parsed(replies: list[Any]) -> list[Any]:
    """INFO arrives parsed by redis-py; CONFIG GET as its pairs list or mapping (either is read)."""
    save = replies[3]
    if isinstance(save, list):
        replies[3] = dict(zip(save[::2], save[1::2], strict=False))
    return replies


# --- logging and metrics ---------------------------------------------------------------------------------

class HealthLog:
    """Logs a finding when its severity changes: error on fail, warning on warn, info when it recovers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, Severity] = {}

    def record(self, health: RedisHealth) -> None:
        with self._lock:
            changed = [f for f in health.findings if self._seen.get(f.check, Severity.OK) is not f.severity]
            self._seen.update((f.check, f.severity) for f in health.findings)
        for finding in changed:
            fields = {"check": finding.check, "detail": finding.detail, "runbook": RUNBOOK}
            if finding.severity is Severity.FAIL:
                log.error("redis.health_failed", **fields)
            elif finding.severity is Severity.WARN:
                log.warning("redis.health_warned", **fields)
            elif finding.severity is Severity.OK:
                log.info("redis.health_recovered", **fields)


PROCESS_LOG = HealthLog()  # the one per process (receiver and worker share it between /readyz and scrapes)


class HealthWatch:
    """For a process nobody probes or scrapes (a worker with the metrics port off): `pump()` reads the health
    at most once per `every` seconds and logs what changed. Raises what read_health raises."""

    def __init__(self, connection: redis.Redis, *, every: float = WATCH_SECONDS, health_log: HealthLog = PROCESS_LOG,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._connection = connection
        self._every = every
        self._log = health_log
        self._clock = clock
        self._next = clock()

    def pump(self) -> RedisHealth | None:
        now = self._clock()
        if now < self._next:
            return None
        self._next = now + self._every
        health = read_health(self._connection)
        self._log.record(health)
        return health


class RedisHealthCollector(Collector):
    """plugwatch_redis_health{check} (1 ok, 0 warn or fail, absent while unknown), evicted keys, memory."""

    def __init__(self, connection: redis.Redis, health_log: HealthLog = PROCESS_LOG) -> None:
        self._connection = connection
        self._log = health_log

    def describe(self) -> Iterable[Metric]:
        return iter(())  # describing would need Redis; registration stays I/O-free

    def collect(self) -> Iterator[Metric]:
        try:
            nodes = read_node_facts(self._connection)
        except (redis.RedisError, OSError) as error:
            log.warning("metrics.redis_health_unavailable", error=repr(error))
            return
        health, facts = judge_all(nodes), merged(nodes)
        self._log.record(health)
        checks = GaugeMetricFamily("plugwatch_redis_health", "1 when the Redis health check passes, 0 when it "
                                   "warns or fails (absent while Redis will not say)", labels=["check"])
        for finding in health.findings:
            if finding.severity is not Severity.UNKNOWN:
                checks.add_metric([finding.check], 1 if finding.severity is Severity.OK else 0)
        yield checks
        yield from _gauge("plugwatch_redis_evicted_keys", "Keys Redis evicted since it started (INFO stats)",
                          _number(facts.stats, "evicted_keys"))
        yield from _gauge("plugwatch_redis_used_memory_bytes", "Redis used_memory (INFO memory)",
                          _number(facts.memory, "used_memory"))
        yield from _gauge("plugwatch_redis_maxmemory_bytes", "Redis maxmemory (0: no limit)",
                          _number(facts.memory, "maxmemory"))


def _gauge(name: str, documentation: str, value: int | None) -> Iterator[Metric]:
    if value is not None:
        yield GaugeMetricFamily(name, documentation, value=value)
