"""Status at a glance for operators without Grafana: read it from Redis (`read_status`), render it.

    read_status(connection, urls, now, queues=) -> Status   one snapshot (queues, dead letters, heartbeat, URLs,
                                                            Redis); `queues`: RQ's Redis (default `connection`)
    render_text(status) -> str                       what `plugwatch status` prints
    status.as_dict()                                 what `plugwatch status --json` prints

Queue figures come from the same `RedisCollector` Prometheus scrapes, so the CLI, Grafana and the alert
rules can never disagree about what "queue depth" or "oldest age" means.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from prometheus_client.core import Metric
from rq.registry import FailedJobRegistry
from rq.worker import Worker

from plugwatch import epoch, keys, subscriptions
from plugwatch.redis_collector import RedisCollector, queues_with_outboxes
from plugwatch.redis_health import RedisHealth, read_health
from plugwatch.url_state import UrlState, read_states

BACKLOG_ALERT_SECONDS = 60  # as deploy/prometheus/alerts.yml PlugwatchQueueBacklog


class UrlHealth(enum.StrEnum):
    OK = "ok"
    PAUSED = "paused"
    DISABLED = "disabled"
    SLOW = "slow"  # delivering, but answers slower than the base read timeout (not a problem by itself)


@dataclass(frozen=True)
class QueueStatus:
    queue: str
    depth: int
    oldest_age_seconds: float
    failed_jobs: int | None  # RQ queues only: jobs in the queue's FailedJobRegistry


@dataclass(frozen=True)
class UrlStatus:
    url: str
    url_key: str
    health: UrlHealth
    paused_until: float | None
    reason: str
    read_timeout_seconds: float | None = None  # raised read timeout while the URL is slow


@dataclass(frozen=True)
class Heartbeat:
    at: float
    age_seconds: float
    pending_events: float | None  # Enode types it `number`: 0.5 is as valid as 3


@dataclass(frozen=True)
class Status:
    at: float
    workers: int
    busy_workers: int
    queues: tuple[QueueStatus, ...]
    dead_letters: int
    quarantine: int
    heartbeat: Heartbeat | None
    downstream: tuple[UrlStatus, ...]
    reconcile_suggested: str | None = None  # why, while a suggestion stands (see worker.enode.suggest)
    redis: RedisHealth | None = None  # Redis's own health (plugwatch.redis_health): its fail findings are problems
    state_lost: str | None = None  # Redis lost plugwatch's state and no full reconcile ran since (plugwatch.epoch)

    @property
    def problems(self) -> list[str]:
        """What an alert rule would fire on (except conditions that need history, like heartbeat silence)."""
        found = [] if self.redis is None else self.redis.problems
        found += [f"{self.dead_letters} dead letters"] if self.dead_letters else []
        if self.workers == 0:
            found.append("no worker is registered")
        found += [f"{queue.queue}: oldest entry waits {queue.oldest_age_seconds:.0f}s"
                  for queue in self.queues if queue.oldest_age_seconds > BACKLOG_ALERT_SECONDS]
        found += [f"{url.health.value}: {url.url}" for url in self.downstream
                  if url.health in {UrlHealth.PAUSED, UrlHealth.DISABLED}]
        if self.state_lost is not None:
            found.append(f"{self.state_lost}; run `plugwatch enode reconcile`")
        if self.reconcile_suggested is not None:
            found.append(f"reconcile suggested ({self.reconcile_suggested}): plugwatch enode reconcile")
        return found

    @property
    def needs_attention(self) -> bool:
        return bool(self.problems)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"problems": self.problems, "needs_attention": self.needs_attention}


def read_status(connection: redis.Redis, urls: Iterable[str], now: float, *,
                queues: redis.Redis | None = None, partitions: int = 1) -> Status:
    """A snapshot of plugwatch's Redis: `urls` are the configured downstream URLs (others are found too);
    RQ's workers, queues and dead letters are read through `queues` (RQ_REDIS_URL's client; default `connection`);
    `partitions`: PLUGWATCH_PARTITIONS."""
    rq = connection if queues is None else queues
    all_urls = _known_urls(connection, urls)
    samples = _collect(connection, rq, all_urls, now, partitions)
    workers = Worker.all(connection=rq)
    queue_states = tuple(_queue_status(rq, name, samples) for name in _queue_labels(samples))
    age = samples.get(("plugwatch_enode_heartbeat_age_seconds", ""))
    pending = samples.get(("plugwatch_enode_pending_events", ""))
    heartbeat = None if age is None else Heartbeat(
        at=now - age, age_seconds=age, pending_events=None if pending is None else _as_written(pending)
    )
    return Status(
        at=now,
        workers=len(workers),
        busy_workers=sum(1 for worker in workers if worker.get_state() == "busy"),
        queues=queue_states,
        dead_letters=_failed_jobs(rq, keys.DEAD_LETTER_QUEUE),
        quarantine=int(samples.get(("plugwatch_quarantine_entries", ""), 0)),
        heartbeat=heartbeat,
        downstream=tuple(_url_status(state, now) for state in read_states(connection, all_urls)),
        reconcile_suggested=_reconcile_suggested(connection),
        redis=read_health(connection),
        state_lost=_state_lost(connection, partitions),
    )


def _as_written(value: float) -> float:
    """7 for 7.0 (as Enode usually writes it), 0.5 for 0.5: in the text and the JSON of `status`."""
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _reconcile_suggested(connection: redis.Redis) -> str | None:
    at, reason = connection.hmget(keys.RECONCILE_SUGGESTED, ["at", "reason"])
    if at is None:
        return None
    return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason or "no reason recorded")


def _state_lost(connection: redis.Redis, partitions: int) -> str | None:
    lost = [(partition, current) for partition, current in enumerate(epoch.read_all(connection, partitions))
            if current is not None and current.needs_reconcile]
    if not lost:
        return None
    partition, current = lost[0]
    where = f", partition {partition} and {len(lost) - 1} more" if len(lost) > 1 else (
        f", partition {partition}" if partitions > 1 else "")
    return f"state lost at {_iso(current.started_at_ms / 1000)} (epoch {current.id}{where})"


def _known_urls(connection: redis.Redis, configured: Iterable[str]) -> list[str]:
    """`configured`, then every subscription and every URL whose outbox is not yet drained and forgotten."""
    return list(dict.fromkeys([*configured, *subscriptions.known_urls(connection)]))


def _collect(connection: redis.Redis, rq: redis.Redis, urls: Sequence[str], now: float, partitions: int,
             ) -> dict[tuple[str, str], float]:
    """The collector's samples as {(metric name, queue label or ""): value}; raises if Redis is down."""
    connection.ping()  # the collector swallows Redis errors (a scrape must not fail); the CLI must not
    if rq is not connection:
        rq.ping()
    collector = RedisCollector(connection, rq_connection=rq, queues=queues_with_outboxes(urls, partitions),
                               clock=lambda: now, partitions=partitions)
    families: Iterable[Metric] = collector.collect()
    return {
        (sample.name, sample.labels.get("queue", "")): sample.value
        for family in families for sample in family.samples
    }


def _queue_labels(samples: dict[tuple[str, str], float]) -> list[str]:
    return [label for name, label in samples if name == "plugwatch_queue_depth"]


def _queue_status(connection: redis.Redis, label: str, samples: dict[tuple[str, str], float]) -> QueueStatus:
    return QueueStatus(
        queue=label,
        depth=int(samples[("plugwatch_queue_depth", label)]),
        oldest_age_seconds=round(samples[("plugwatch_queue_oldest_age_seconds", label)], 3),
        failed_jobs=_failed_jobs(connection, label) if label in keys.ALL_QUEUES else None,
    )


def _failed_jobs(connection: redis.Redis, queue: str) -> int:
    return int(FailedJobRegistry(queue, connection=connection).get_job_count(cleanup=False))


def _url_status(state: UrlState, now: float) -> UrlStatus:
    if state.disabled:
        health, reason = UrlHealth.DISABLED, state.disabled_reason
    elif state.paused(now):
        health, reason = UrlHealth.PAUSED, state.last_error
    elif state.slow:
        health, reason = UrlHealth.SLOW, f"answers slowly (last slow answer {_age(now - state.slow_at)} ago)"
    else:
        health, reason = UrlHealth.OK, ""
    return UrlStatus(url=state.url, url_key=keys.url_key(state.url), health=health,
                     paused_until=state.paused_until if health is UrlHealth.PAUSED else None, reason=reason,
                     read_timeout_seconds=state.read_timeout if state.slow and not state.disabled else None)


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _age(seconds: float) -> str:
    whole = int(seconds)
    if whole < 120:
        return f"{seconds:.0f}s" if whole >= 10 else f"{seconds:.1f}s"
    if whole < 7200:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def render_text(status: Status) -> str:
    lines = [f"plugwatch status at {_iso(status.at)}", ""]
    lines.append(f"workers        {status.workers} ({status.busy_workers} busy)")
    lines.append(f"dead letters   {status.dead_letters}")
    lines.append(f"quarantine     {status.quarantine}")
    if status.heartbeat is None:
        lines.append("enode          no heartbeat received yet")
    else:
        beat = status.heartbeat
        pending = "unknown" if beat.pending_events is None else str(beat.pending_events)
        lines.append(f"enode          last heartbeat {_age(beat.age_seconds)} ago ({_iso(beat.at)}), "
                     f"pendingEvents {pending}")
    lines += ["", f"{'queue':<34} {'depth':>8} {'oldest':>9} {'failed':>7}"]
    for queue in status.queues:
        failed = "-" if queue.failed_jobs is None else str(queue.failed_jobs)
        lines.append(f"{queue.queue:<34} {queue.depth:>8} {_age(queue.oldest_age_seconds):>9} {failed:>7}")
    if status.redis is not None:
        lines += ["", "redis"]
        lines += [f"  {f.severity.value.upper():<8} {f.check}: {f.detail}" for f in status.redis.findings]
    lines += ["", "downstream URLs" if status.downstream else "downstream URLs: none configured"]
    for url in status.downstream:
        detail = ""
        if url.health is UrlHealth.PAUSED and url.paused_until is not None:
            detail = f" until {_iso(url.paused_until)}"
        if url.reason:
            detail += f": {url.reason}"
        if url.read_timeout_seconds is not None:
            detail += f" (read timeout raised to {url.read_timeout_seconds:g} s)"
        lines.append(f"  {url.health.value.upper():<8} {url.url} [{url.url_key}]{detail}")
    if status.problems:
        lines += ["", "needs attention (runbook: deploy/README.md):", *(f"  - {p}" for p in status.problems)]
    return "\n".join(lines) + "\n"
