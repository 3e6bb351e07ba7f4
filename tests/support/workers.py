"""Worker processes for integration tests: `python -m worker` subprocesses tuned to recover fast."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
import redis

from plugwatch import keys
from tests.support.event_schema import stream_events
from tests.support.servers import Process, base_env
from worker.core import UserState, decode_state

# Crash recovery in about two seconds instead of twenty: small batches so a run has many commits to
# interrupt, short claim/armed times, a fast pump.
FAST_RECOVERY = {
    "PLUGWATCH_METRICS_PORT": "0",
    "PLUGWATCH_INGEST_BATCH": "10",
    "PLUGWATCH_INGEST_BUDGET_SECONDS": "2",
    "PLUGWATCH_INGEST_CLAIM_IDLE_SECONDS": "1",
    "PLUGWATCH_INGEST_ARMED_TTL_SECONDS": "1.5",
    "PLUGWATCH_INGEST_MAX_DRAINERS": "4",
    "PLUGWATCH_PUMP_INTERVAL_SECONDS": "0.25",
}
# Tests that kill workers on purpose may hit the same entry more often than production's poison limit.
PATIENT = {"PLUGWATCH_INGEST_MAX_DELIVERIES": "1000"}


def start_worker(redis_url: str, log_path: Path, **env: str) -> Process:
    return Process([sys.executable, "-m", "worker"], base_env(REDIS_URL=redis_url, **{**FAST_RECOVERY, **env}),
                   log_path).start()


def kill_hard(process: Process) -> None:
    """SIGKILL the worker and its children (RQ's scheduler process): no cleanup of any kind runs."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def stored_states(connection: redis.Redis) -> dict[str, UserState]:
    """Every stored user with a live device (users with only tombstones or handled actions left out)."""
    states = {key.decode().removeprefix(keys.USER_STATE_PREFIX): decode_state(connection.get(key))
              for key in connection.scan_iter(keys.USER_STATE_PREFIX + "*", count=1000)}
    return {user: state for user, state in states.items() if not state.is_empty()}


def emitted_ids(connection: redis.Redis) -> list[str]:
    return [event["id"] for event in stream_events(connection)]


def drained(connection: redis.Redis) -> bool:
    """Every ingest entry processed (processed entries are deleted) and nothing pending."""
    return connection.xlen(keys.INGEST_STREAM) == 0


def drain_counts(logs: list[Path]) -> list[int]:
    """Deliveries each worker's log says it drained."""
    counts = []
    for path in logs:
        total = 0
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            if '"ingest.drained"' in line:
                record: dict[str, Any] = orjson.loads(line)
                total += int(record.get("deliveries", 0))
        counts.append(total)
    return counts
