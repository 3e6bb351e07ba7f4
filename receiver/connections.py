"""Slow clients: deadlines for a request's headers and body, and a cap on open connections.

    connected (or a kept-alive connection's next request begins)
        └─ headers complete within the header timeout?   no ─▶ cut: "idle" (not one byte came), else
                                                                "header_timeout" (answered 408)
             └─ body complete within the body timeout?   no ─▶ cut: "body_timeout" (answered 408)
                  └─ request read: these limits never cut it (the Redis budget bounds its answer)
    one connection more than the cap ─▶ cut the oldest connection still waiting for a request or its headers,
        else the oldest still reading a body, else the new one: "max_connections"

Both deadlines are totals, not idle times: a client sending one byte a second gains nothing.  Why not
uvicorn's `--limit-concurrency`: once that many connections are open it answers 503 to every new request,
so 2,000 trickling sockets would fail every real delivery.  Cutting whoever has made the least progress
keeps real deliveries (headers in one packet, the body right after) flowing, and a cap below the process's
open-file limit keeps `accept()` from failing for everyone (EMFILE).

`ConnectionGuard` keeps the books for one process and is driven by the HTTP protocol (`receiver.protocol`),
which `python -m receiver` installs in uvicorn.  Every cut is counted
(`plugwatch_receiver_connections_cut_total{reason}`) and logged as `receiver.connections_cut`, at most one
line per reason per `LOG_INTERVAL_SECONDS` (with the count since the last line), never one per socket; a
request whose body was cut carries `CUT_SCOPE_KEY` in its scope, so the webhook does not log it again.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from plugwatch.settings import Settings

log = structlog.get_logger(__name__)

LOG_INTERVAL_SECONDS = 10.0
OPEN_FILES_RESERVE = 128  # descriptors kept for Redis connections, the threadpool's clients, logs, the loop

CUT_SCOPE_KEY = "plugwatch.cut"  # set in the ASGI scope of a request whose body was cut (its reason)

Schedule = Callable[[float, Callable[[], None]], object]


class CutReason(enum.StrEnum):
    IDLE = "idle"  # connected, never sent a byte within the header timeout
    HEADER_TIMEOUT = "header_timeout"
    BODY_TIMEOUT = "body_timeout"
    MAX_CONNECTIONS = "max_connections"


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings, open_files: float) -> ConnectionLimits:
        """The configured limits, the cap lowered to fit the open-file limit (`math.inf`: none)."""
        room = max(1.0, open_files - OPEN_FILES_RESERVE)
        return cls(settings.receiver.header_timeout_seconds, settings.receiver.body_timeout_seconds,
                   int(min(settings.receiver.max_connections, room)))


class Guarded(Protocol):
    """A connection the guard can cut (the receiver's HTTP protocol)."""

    @property
    def peer(self) -> str: ...

    def cut(self, reason: CutReason) -> None: ...


class ConnectionGuard:
    """Which connections are open and how far each has got; cuts them, counts and logs the cuts."""

    def __init__(self, limits: ConnectionLimits, registry: CollectorRegistry, *,
                 log_interval: float = LOG_INTERVAL_SECONDS, schedule: Schedule | None = None) -> None:
        self.limits = limits
        self._open: set[Guarded] = set()
        self._waiting: dict[Guarded, None] = {}  # no request, or its headers still coming; oldest first
        self._reading_body: dict[Guarded, None] = {}
        self._cuts = Counter("plugwatch_receiver_connections_cut", "Client connections cut by the receiver",
                             ["reason"], registry=registry)
        for reason in CutReason:
            self._cuts.labels(reason.value)
        Gauge("plugwatch_receiver_open_connections", "Client connections open now",
              registry=registry).set_function(lambda: len(self._open))
        Gauge("plugwatch_receiver_max_connections", "The cap on open client connections",
              registry=registry).set(limits.max_connections)
        self._log = CutLog(log_interval, lambda: {"open_connections": len(self._open),
                                                  "max_connections": limits.max_connections}, schedule)

    def opened(self, connection: Guarded) -> None:
        self._open.add(connection)
        self._waiting[connection] = None
        if len(self._open) > self.limits.max_connections:
            self.cut(self._least_advanced(besides=connection) or connection, CutReason.MAX_CONNECTIONS)

    def headers_read(self, connection: Guarded) -> None:
        self._waiting.pop(connection, None)
        if connection in self._open:
            self._reading_body[connection] = None

    def body_read(self, connection: Guarded) -> None:
        self._reading_body.pop(connection, None)

    def waiting(self, connection: Guarded) -> None:
        """A kept-alive connection now waits for its next request (the newest waiting one)."""
        if connection in self._open:
            self._waiting.pop(connection, None)
            self._waiting[connection] = None

    def closed(self, connection: Guarded) -> None:
        self._open.discard(connection)
        self._waiting.pop(connection, None)
        self._reading_body.pop(connection, None)

    def cut(self, connection: Guarded, reason: CutReason) -> None:
        self.closed(connection)  # its slot is free at once; the transport closes on the loop's next turn
        connection.cut(reason)
        self._cuts.labels(reason.value).inc()
        self._log.cut(reason, connection.peer)

    def flush(self) -> None:
        """Log the cuts not logged yet (at shutdown)."""
        self._log.flush()

    def _least_advanced(self, besides: Guarded) -> Guarded | None:
        for phase in (self._waiting, self._reading_body):
            for connection in phase:
                if connection is not besides:
                    return connection
        return None


class CutLog:
    """`receiver.connections_cut` at most once per reason per interval: the first cut at once, later ones
    counted and logged together when the interval is over."""

    def __init__(self, interval: float, context: Callable[[], dict[str, int]], schedule: Schedule | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._context = context
        self._schedule = schedule
        self._clock = clock
        self._pending: dict[CutReason, int] = {}
        self._last_peer: dict[CutReason, str] = {}
        self._logged_at: dict[CutReason, float] = {}
        self._scheduled: set[CutReason] = set()

    def cut(self, reason: CutReason, peer: str) -> None:
        self._pending[reason] = self._pending.get(reason, 0) + 1
        self._last_peer[reason] = peer
        wait = self._logged_at.get(reason, -math.inf) + self._interval - self._clock()
        if wait <= 0:
            self._emit(reason)
        elif reason not in self._scheduled:
            self._scheduled.add(reason)
            schedule = self._schedule or asyncio.get_running_loop().call_later
            schedule(wait, lambda: self._emit(reason))

    def flush(self) -> None:
        for reason in list(self._pending):
            self._emit(reason)

    def _emit(self, reason: CutReason) -> None:
        self._scheduled.discard(reason)
        count = self._pending.pop(reason, 0)
        if not count:
            return
        self._logged_at[reason] = self._clock()
        log.warning("receiver.connections_cut", reason=reason.value, count=count, last_client=self._last_peer[reason],
                    **self._context(),
                    hint="clients too slow to send a request (or sending nothing) are cut; see README, receiver")
