"""The per-outbox lease: at most one drainer delivers an outbox (a URL's, in one partition) at a time, so its
events go out in order.

The lease key (`Outbox.lease`) holds "queued" while a drain job waits in RQ (set by
`arming.arm`), then the running drainer's random token.  A drainer claims a missing or "queued" lease,
refreshes it before every attempt and deletes it only if it still holds it.  If a drainer dies (SIGKILL),
its lease expires after `lease_ms(config)` and the worker's pump arms the URL again; the entries
the dead drainer had read are still pending in the consumer group and are delivered first.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import redis

from plugwatch.outboxes import Outbox
from plugwatch.settings import DeliverySettings
from worker.delivery.sender import BODY_READ_SECONDS

_CLAIM = """
local held = redis.call('GET', KEYS[1])
if held == false or held == 'queued' or held == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class Lease:
    connection: redis.Redis
    box: Outbox
    ttl_ms: int
    must_outlive_ms: int = 0  # what a skipped refresh must still leave: the longest attempt
    token: str = field(default_factory=lambda: "drainer-" + uuid.uuid4().hex)
    _renewed_at: float = field(default=float("-inf"), repr=False)  # time.monotonic() of the last renewal

    @property
    def key(self) -> str:
        return self.box.lease

    def claim(self) -> bool:
        """Take over a queued or expired lease; False when another live drainer holds it."""
        return self._renewed(self.connection.eval(_CLAIM, 1, self.key, self.token, self.ttl_ms))

    def refresh(self, *, force: bool = False) -> bool:
        """Extend the lease; False when it was lost (expired and taken by another drainer).

        The round trip is skipped while what is left of the lease still outlives `must_outlive_ms` (with a
        quarter of the slack to spare), so a steady flow of events refreshes it only now and then.
        """
        slack_ms = self.ttl_ms - self.must_outlive_ms
        if not force and (time.monotonic() - self._renewed_at) * 1000 < slack_ms * 3 / 4:
            return True
        return self._renewed(self.connection.eval(_REFRESH, 1, self.key, self.token, self.ttl_ms))

    def fit(self, ttl_ms: int, must_outlive_ms: int) -> bool:
        """Size the lease for the URL's attempts now (longer while its read timeout is raised); a lease
        that grows is extended at once.  False when it was lost."""
        grows = ttl_ms > self.ttl_ms
        self.ttl_ms, self.must_outlive_ms = ttl_ms, must_outlive_ms
        return self.refresh(force=True) if grows else True

    def release(self) -> None:
        self._renewed_at = float("-inf")
        self.connection.eval(_RELEASE, 1, self.key, self.token)

    def reacquire(self) -> bool:
        """After a release: take the lease again only if nobody armed the URL meanwhile."""
        return self._renewed(self.connection.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def overdue(self) -> bool:
        """True once the lease has lived out its TTL since its last renewal: whoever holds it is stuck."""
        released = self._renewed_at == float("-inf")  # between a release and a reacquire: not stuck
        return not released and (time.monotonic() - self._renewed_at) * 1000 > self.ttl_ms

    def _renewed(self, reply: object) -> bool:
        if reply:
            self._renewed_at = time.monotonic()
        return bool(reply)


def attempt_seconds(config: DeliverySettings, read_timeout: float | None = None) -> float:
    """The longest one attempt can take: pool wait + connect, write + response, and the body read
    (`read_timeout`: the URL's, when raised for a slow URL; default the base)."""
    return 2 * (config.connect_timeout + (config.read_timeout if read_timeout is None else read_timeout)) + (
        BODY_READ_SECONDS)


def lease_ms(config: DeliverySettings, read_timeout: float | None = None) -> int:
    """How long a drainer's lease lives between refreshes: longer than any attempt or inline wait.

    It is also how long a URL waits after its drainer was SIGKILLed before the pump re-arms it.
    """
    return int(1000 * (max(attempt_seconds(config, read_timeout), config.inline_wait_max) + 2.0))
