"""plugwatch.redis_health: each check over canned INFO facts, refusals (CONFIG, INFO) as `unknown`, the
once-per-change log, and the collector's gauges (on fakeredis, which refuses INFO and CONFIG)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import fakeredis
import pytest
import redis
import structlog
from prometheus_client import CollectorRegistry

from plugwatch.redis_health import (
    HealthLog,
    HealthWatch,
    RedisFacts,
    RedisHealthCollector,
    Severity,
    _facts,
    judge,
    judge_all,
    merged,
    read_health,
)

HEALTHY = RedisFacts(
    memory={"used_memory": 1_000_000, "maxmemory": 0, "maxmemory_policy": "noeviction"},
    persistence={"aof_enabled": 1, "aof_last_write_status": "ok", "rdb_last_bgsave_status": "ok"},
    stats={"evicted_keys": 0},
    save="",
    write_error=None,
)
OOM = "OOM command not allowed when used memory > 'maxmemory'."


def severities(facts: RedisFacts) -> dict[str, Severity]:
    return severities_of(judge(facts))


def test_a_healthy_redis_passes_every_check_and_is_ready() -> None:
    health = judge(HEALTHY)
    assert set(severities(HEALTHY).values()) == {Severity.OK}
    assert health.ready
    assert health.problems == []


def test_a_refused_write_fails_readiness_naming_the_error_and_memory() -> None:
    health = judge(replace(HEALTHY, write_error=OOM, memory={**HEALTHY.memory, "maxmemory": 2_000_000}))
    assert severities(replace(HEALTHY, write_error=OOM))["writable"] is Severity.FAIL
    assert not health.ready
    [line] = health.problems
    assert line.startswith("redis writable: Redis refuses writes (OOM command not allowed")
    assert "used_memory 1.0 MiB of maxmemory 1.9 MiB" in line


def test_an_evicting_policy_fails_readiness_and_names_the_policy() -> None:
    facts = replace(HEALTHY, memory={**HEALTHY.memory, "maxmemory_policy": "allkeys-lru"})
    health = judge(facts)
    assert severities(facts)["eviction_policy"] is Severity.FAIL
    assert not health.ready
    assert health.problems == ["redis eviction_policy: maxmemory-policy is allkeys-lru: Redis may evict user "
                               "states and acknowledged deliveries (CONFIG SET maxmemory-policy noeviction)"]


def test_evicted_keys_fail_the_check_but_not_readiness() -> None:
    """The counter stays until Redis restarts or CONFIG RESETSTAT: it must not keep every receiver out."""
    health = judge(replace(HEALTHY, stats={"evicted_keys": 38}))
    assert [f.check for f in health.of(Severity.FAIL)] == ["evicted_keys"]
    assert "evicted 38 keys" in health.problems[0]
    assert health.ready


def test_no_aof_and_no_save_schedule_only_warns() -> None:
    facts = replace(HEALTHY, persistence={"aof_enabled": 0, "rdb_last_bgsave_status": "ok"}, save="")
    health = judge(facts)
    [warning] = health.of(Severity.WARN)
    assert warning.check == "persistence"
    assert warning.detail.startswith("no persistence")
    assert health.problems == []
    assert health.ready


def test_an_rdb_save_schedule_counts_as_persistence() -> None:
    facts = replace(HEALTHY, persistence={"aof_enabled": 0, "rdb_last_bgsave_status": "ok"}, save="3600 1 300 100")
    assert severities(facts)["persistence"] is Severity.OK


def test_failed_aof_write_or_snapshot_warns() -> None:
    aof = replace(HEALTHY, persistence={"aof_enabled": 1, "aof_last_write_status": "err"})
    rdb = replace(HEALTHY, persistence={"aof_enabled": 0, "rdb_last_bgsave_status": "err"}, save="60 1")
    assert severities(aof)["persistence"] is Severity.WARN
    assert severities(rdb)["persistence"] is Severity.WARN


def test_forbidden_config_makes_persistence_unknown_without_aof_and_never_fails() -> None:
    """Managed Redis often renames or forbids CONFIG: the save schedule is then unknown, not absent."""
    replies: list[Any] = [dict(HEALTHY.memory), {"aof_enabled": 0, "rdb_last_bgsave_status": "ok"},
                          dict(HEALTHY.stats), redis.ResponseError("unknown command 'CONFIG'"), None]
    facts = _facts(replies)
    assert facts.save is None
    finding = next(f for f in judge(facts).findings if f.check == "persistence")
    assert finding.severity is Severity.UNKNOWN
    assert "unknown (CONFIG GET refused)" in finding.detail
    with_aof = _facts([dict(HEALTHY.memory), dict(HEALTHY.persistence), dict(HEALTHY.stats),
                       redis.exceptions.NoPermissionError("NOPERM"), None])
    assert severities(with_aof)["persistence"] is Severity.OK


def test_forbidden_info_makes_its_checks_unknown_and_the_write_probe_still_decides() -> None:
    refused = redis.ResponseError("NOPERM this user has no permissions to run the 'info' command")
    facts = _facts([refused, refused, refused, refused, redis.exceptions.OutOfMemoryError(OOM)])
    found = severities(facts)
    assert found == {"writable": Severity.FAIL, "eviction_policy": Severity.UNKNOWN,
                     "evicted_keys": Severity.UNKNOWN, "persistence": Severity.UNKNOWN}
    assert facts.write_error == f"OutOfMemoryError: {OOM}"
    assert "used_memory ? of maxmemory ?" in judge(facts).problems[0]


def test_config_get_reply_is_read_as_text() -> None:
    facts = _facts([{}, {}, {}, {b"save": b"900 1"}, True])
    assert (facts.save, facts.write_error) == ("900 1", None)


def test_the_log_says_each_finding_once_per_change() -> None:
    health_log = HealthLog()
    evicting = judge(replace(HEALTHY, memory={**HEALTHY.memory, "maxmemory_policy": "volatile-lru"}))
    unpersisted = judge(replace(HEALTHY, persistence={"aof_enabled": 0}, save=""))
    with structlog.testing.capture_logs() as logged:
        for health in (judge(HEALTHY), evicting, evicting, judge(HEALTHY), unpersisted, unpersisted):
            health_log.record(health)
    assert [(line["log_level"], line["event"], line["check"]) for line in logged] == [
        ("error", "redis.health_failed", "eviction_policy"),
        ("info", "redis.health_recovered", "eviction_policy"),
        ("warning", "redis.health_warned", "persistence"),
    ]
    assert "volatile-lru" in logged[0]["detail"]


def test_read_health_on_fakeredis_knows_only_that_writes_work() -> None:
    """fakeredis refuses INFO and CONFIG: everything else is unknown, nothing fails, the probe stores nothing."""
    connection = fakeredis.FakeRedis()
    health = read_health(connection)
    assert severities_of(health) == {"writable": Severity.OK, "eviction_policy": Severity.UNKNOWN,
                                     "evicted_keys": Severity.UNKNOWN, "persistence": Severity.UNKNOWN}
    assert connection.keys("*") == []


def severities_of(health: Any) -> dict[str, Severity]:
    return {finding.check: finding.severity for finding in health.findings}


def test_the_collector_exports_known_checks_only_and_nothing_when_redis_is_down() -> None:
    server = fakeredis.FakeServer()
    registry = CollectorRegistry()
    registry.register(RedisHealthCollector(fakeredis.FakeRedis(server=server), HealthLog()))
    assert registry.get_sample_value("plugwatch_redis_health", {"check": "writable"}) == 1
    assert registry.get_sample_value("plugwatch_redis_health", {"check": "eviction_policy"}) is None
    server.connected = False
    assert registry.get_sample_value("plugwatch_redis_health", {"check": "writable"}) is None


def test_the_watch_reads_at_most_once_per_interval_and_logs_a_change() -> None:
    now = [100.0]
    server = fakeredis.FakeServer()
    watch = HealthWatch(fakeredis.FakeRedis(server=server), every=30, health_log=HealthLog(), clock=lambda: now[0])
    assert watch.pump() is not None
    now[0] += 29
    assert watch.pump() is None
    now[0] += 1
    server.connected = False
    with pytest.raises(redis.ConnectionError):
        watch.pump()
    now[0] += 1
    assert watch.pump() is None, "a failed read waits its interval too"


def test_a_cluster_is_judged_by_its_worst_primary_and_its_gauges_sum_the_primaries() -> None:
    full = replace(HEALTHY, memory={"used_memory": 900, "maxmemory": 1000, "maxmemory_policy": "allkeys-lru"},
                   stats={"evicted_keys": 3}, write_error=OOM)
    aof_failing = replace(HEALTHY, persistence={"aof_enabled": 1, "aof_last_write_status": "err"})
    stats_refused = replace(HEALTHY, stats={})
    health = judge_all([HEALTHY, full, aof_failing])
    assert severities_of(health) == {"writable": Severity.FAIL, "eviction_policy": Severity.FAIL,
                                     "evicted_keys": Severity.FAIL, "persistence": Severity.WARN}
    assert not health.ready
    assert "OOM" in health.problems[0]
    # one primary would not say: the cluster's evictions are unknown (never a failure), not "none"
    assert severities_of(judge_all([HEALTHY, stats_refused]))["evicted_keys"] is Severity.UNKNOWN
    assert judge_all([HEALTHY]) == judge(HEALTHY)

    limited = replace(HEALTHY, memory={"used_memory": 100, "maxmemory": 1000, "maxmemory_policy": "noeviction"})
    both = merged([limited, replace(limited, stats={"evicted_keys": 2})])
    assert (both.memory["used_memory"], both.memory["maxmemory"], both.stats) == (200, 2000, {"evicted_keys": 2})
    assert merged([limited, HEALTHY]).memory["maxmemory"] == 0  # one primary without a limit: no limit
    assert merged([HEALTHY, stats_refused]).stats == {}  # one primary would not say: unknown, not a partial sum
    assert merged([HEALTHY]) is HEALTHY
