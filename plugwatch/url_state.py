"""Per-URL delivery state in Redis: the circuit breaker (paused/disabled) and the head event's attempts.

One hash per downstream URL, `keys.downstream_state_key(url)`:

    url              the URL itself (so ops tools can name it)
    paused_until     unix seconds; no attempt before then (the breaker is open)
    head             outbox entry id of the event being retried; attempts, first_failed_at (unix seconds
                     of its first failed attempt: the start of its retry window), last_error
    disabled         "1" after a 410 Gone (or an operator) stopped delivery; disabled_at, disabled_reason
    read_timeout     seconds: the URL's raised read timeout while it is slow (absent: the base timeout);
                     slow_at, unix seconds of its last slow answer or timed-out attempt (see `slowness`)

Only the URL's drainer (which holds the URL's lease) writes `paused_until`, `head*` and the slowness
fields; the CLI writes
`disabled*` when an operator re-enables a URL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import redis
from redis.typing import EncodableT, FieldT

from plugwatch import keys

_HEAD_FIELDS = ("head", "attempts", "first_failed_at", "last_error")


@dataclass(frozen=True)
class UrlState:
    url: str
    paused_until: float = 0.0
    disabled: bool = False
    disabled_at: float = 0.0
    disabled_reason: str = ""
    head: str = ""
    attempts: int = 0
    first_failed_at: float = 0.0
    last_error: str = ""
    read_timeout: float = 0.0  # 0: not slow (the base read timeout)
    slow_at: float = 0.0

    def paused(self, now: float) -> bool:
        return self.paused_until > now

    def failing(self, now: float) -> bool:
        """The breaker is open: paused, or its head event failed and is being retried (from a pause's end
        until that attempt's outcome the pause lies in the past, yet the URL has not recovered)."""
        return not self.disabled and (self.paused(now) or self.attempts > 0)

    @property
    def slow(self) -> bool:
        return self.read_timeout > 0

    @classmethod
    def from_hash(cls, url: str, raw: Mapping[bytes, bytes]) -> UrlState:
        fields = {key.decode(): value.decode(errors="replace") for key, value in raw.items()}
        return cls(
            url=url,
            paused_until=float(fields.get("paused_until") or 0),
            disabled=fields.get("disabled") == "1",
            disabled_at=float(fields.get("disabled_at") or 0),
            disabled_reason=fields.get("disabled_reason", ""),
            head=fields.get("head", ""),
            attempts=int(fields.get("attempts") or 0),
            first_failed_at=float(fields.get("first_failed_at") or 0),
            last_error=fields.get("last_error", ""),
            read_timeout=float(fields.get("read_timeout") or 0),
            slow_at=float(fields.get("slow_at") or 0),
        )


def read_states(connection: redis.Redis, urls: Iterable[str]) -> list[UrlState]:
    """The state of each URL, in one round trip."""
    urls = list(urls)
    pipe = connection.pipeline(transaction=False)
    for url in urls:
        pipe.hgetall(keys.downstream_state_key(url))
    return [UrlState.from_hash(url, raw) for url, raw in zip(urls, pipe.execute(), strict=True)]


def read_state(connection: redis.Redis, url: str) -> UrlState:
    return read_states(connection, [url])[0]


def record_failure(
    connection: redis.Redis, url: str, *, head: str, attempts: int, error: str, paused_until: float,
    first_failed_at: float | None = None, read_timeout: float | None = None, slow_at: float | None = None,
) -> None:
    """Open the breaker until `paused_until` after the head's failed attempt number `attempts` (and, after
    a timed-out attempt, raise the URL's read timeout)."""
    fields: dict[FieldT, EncodableT] = {
        "url": url, "head": head, "attempts": attempts, "last_error": error[:500], "paused_until": paused_until,
    }
    if first_failed_at is not None:
        fields["first_failed_at"] = first_failed_at
    if read_timeout is not None and slow_at is not None:
        fields |= {"read_timeout": read_timeout, "slow_at": slow_at}
    connection.hset(keys.downstream_state_key(url), mapping=fields)


def record_slow(connection: redis.Redis, url: str, *, read_timeout: float, at: float) -> None:
    """The URL answered slower than the base read timeout at `at`: it keeps `read_timeout`."""
    connection.hset(keys.downstream_state_key(url), mapping={"url": url, "read_timeout": read_timeout,
                                                             "slow_at": at})


def forget_slow(connection: redis.Redis, url: str) -> None:
    """The URL answers within the base read timeout again."""
    connection.hdel(keys.downstream_state_key(url), "read_timeout", "slow_at")


def record_success(connection: redis.Redis, url: str) -> None:
    """Close the breaker: forget the head's attempts and any pause."""
    connection.hdel(keys.downstream_state_key(url), *_HEAD_FIELDS, "paused_until")


def forget_head(connection: redis.Redis, url: str) -> None:
    connection.hdel(keys.downstream_state_key(url), *_HEAD_FIELDS)


def disable(connection: redis.Redis, url: str, *, reason: str, now: float) -> None:
    connection.hset(keys.downstream_state_key(url), mapping={
        "url": url, "disabled": "1", "disabled_at": now, "disabled_reason": reason[:500],
    })


def enable(connection: redis.Redis, url: str) -> bool:
    """Re-enable a URL and close its breaker; returns whether it was disabled."""
    key = keys.downstream_state_key(url)
    pipe = connection.pipeline()
    pipe.hget(key, "disabled")
    pipe.hdel(key, "disabled", "disabled_at", "disabled_reason", *_HEAD_FIELDS, "paused_until")
    was, _ = pipe.execute()
    return bool(was == b"1")
