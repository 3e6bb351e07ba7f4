"""Delivery tuning: one frozen object built from `Settings` plus optional `PLUGWATCH_DELIVERY_*` variables.

Variables (all optional; seconds unless noted):

- `PLUGWATCH_DELIVERY_MAX_AGE_SECONDS` (a Settings field, default 86400): how long an event is retried,
  counted from its first failed attempt; then it is dead-lettered, together with every event that has
  waited in the URL's outbox longer than that (the URL has been failing all that time).
- `PLUGWATCH_DELIVERY_CONNECT_TIMEOUT_SECONDS` (5): connect timeout per attempt (also the pool wait).
- `PLUGWATCH_DELIVERY_READ_TIMEOUT_SECONDS` (15): response timeout per attempt (also the write timeout).
- `PLUGWATCH_DELIVERY_READ_TIMEOUT_MAX_SECONDS` (120, at least the read timeout): after an attempt timed out
  the URL's read timeout doubles, up to this (see `slowness`); equal to the read timeout turns that off.
- `PLUGWATCH_DELIVERY_SLOW_RESET_SECONDS` (600): a slow URL's raised read timeout goes back to the base once
  it has answered within the base for this long.
- `PLUGWATCH_DELIVERY_BACKOFF_BASE_SECONDS` (1): first retry delay; doubles per attempt, equal jitter.
- `PLUGWATCH_DELIVERY_BACKOFF_MAX_SECONDS` (600): cap of the exponential backoff.
- `PLUGWATCH_DELIVERY_RETRY_AFTER_MAX_SECONDS` (3600): cap applied to a sink's `Retry-After`.
- `PLUGWATCH_DELIVERY_INLINE_WAIT_SECONDS` (5): a drainer waits out pauses up to this long itself; a longer
  pause releases the URL and the worker's pump resumes it when the pause is over.
- `PLUGWATCH_DELIVERY_BATCH_SIZE` (50, a count): outbox entries read per round trip.
- `PLUGWATCH_DELIVERY_IDLE_WAIT_SECONDS` (0.5; 0 = off): a drainer that emptied its outbox keeps the URL's
  lease this long, waiting (a blocking read) for the next events, so a steady flow of events is delivered
  as it is committed, without a new arming, RQ job and drainer per commit.
- `PLUGWATCH_DEAD_LETTER_TTL_SECONDS` (604800 = 7 days): how long dead letters are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from plugwatch.settings import Settings, SettingsError, seconds_or_off
from plugwatch.settings import positive_float as _number  # the same rule as every other number
from worker.delivery.sender import BODY_READ_SECONDS


@dataclass(frozen=True)
class DeliveryConfig:
    max_age_seconds: float = 24 * 3600.0
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    read_timeout_max: float = 120.0
    slow_reset: float = 600.0
    backoff_base: float = 1.0
    backoff_max: float = 600.0
    retry_after_max: float = 3600.0
    inline_wait_max: float = 5.0
    batch_size: int = 50
    idle_wait: float = 0.5
    dead_letter_ttl: int = 7 * 24 * 3600

    @property
    def attempt_seconds(self) -> float:
        """The longest one attempt can take: pool wait + connect, write + response, and the body read."""
        return self.attempt_seconds_for(self.read_timeout)

    @property
    def lease_ms(self) -> int:
        """How long a drainer's lease lives between refreshes: longer than any attempt or inline wait.

        It is also how long a URL waits after its drainer was SIGKILLed before `pump` re-arms it.
        """
        return self.lease_ms_for(self.read_timeout)

    def attempt_seconds_for(self, read_timeout: float) -> float:
        """The longest attempt when the URL's read timeout is `read_timeout` (raised for a slow URL)."""
        return 2 * (self.connect_timeout + read_timeout) + BODY_READ_SECONDS

    def lease_ms_for(self, read_timeout: float) -> int:
        return int(1000 * (max(self.attempt_seconds_for(read_timeout), self.inline_wait_max) + 2.0))

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str]) -> DeliveryConfig:
        prefix = "PLUGWATCH_DELIVERY_"
        read_timeout = _number(environ, prefix + "READ_TIMEOUT_SECONDS", cls.read_timeout)
        default_max = max(cls.read_timeout_max, read_timeout)
        read_timeout_max = _number(environ, prefix + "READ_TIMEOUT_MAX_SECONDS", default_max)
        if read_timeout_max < read_timeout:
            raise SettingsError(f"{prefix}READ_TIMEOUT_MAX_SECONDS ({read_timeout_max:g}) must be at least "
                                f"{prefix}READ_TIMEOUT_SECONDS ({read_timeout:g})")
        return cls(
            max_age_seconds=settings.delivery_max_age_seconds,
            connect_timeout=_number(environ, prefix + "CONNECT_TIMEOUT_SECONDS", cls.connect_timeout),
            read_timeout=read_timeout,
            read_timeout_max=read_timeout_max,
            slow_reset=_number(environ, prefix + "SLOW_RESET_SECONDS", cls.slow_reset),
            backoff_base=_number(environ, prefix + "BACKOFF_BASE_SECONDS", cls.backoff_base),
            backoff_max=_number(environ, prefix + "BACKOFF_MAX_SECONDS", cls.backoff_max),
            retry_after_max=_number(environ, prefix + "RETRY_AFTER_MAX_SECONDS", cls.retry_after_max),
            inline_wait_max=_number(environ, prefix + "INLINE_WAIT_SECONDS", cls.inline_wait_max),
            batch_size=int(_number(environ, prefix + "BATCH_SIZE", cls.batch_size)),
            idle_wait=seconds_or_off(environ, prefix + "IDLE_WAIT_SECONDS", cls.idle_wait),
            dead_letter_ttl=int(_number(environ, "PLUGWATCH_DEAD_LETTER_TTL_SECONDS", cls.dead_letter_ttl)),
        )
