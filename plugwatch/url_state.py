"""Per-URL delivery state in Redis: the circuit breaker (paused/disabled) and the head event's attempts.

One hash per downstream URL, `keys.downstream_state_key(url)`:

    url              the URL itself (so ops tools can name it)
    paused_until     unix seconds; no attempt before then (the breaker is open)
    head             outbox entry id of the event being retried; attempts, first_failed_at (unix seconds
                     of its first failed attempt: the start of its retry window), last_error
    disabled         "1" after a 410 Gone (or an operator) stopped delivery; disabled_at, disabled_reason
    read_timeout     seconds: the URL's raised read timeout while it is slow (absent: the base timeout);
                     slow_at, unix seconds of its last slow answer or timed-out attempt (see `slowness`)

With partitions a URL has an outbox per partition, drained on its own. The breaker (`paused_until`), the
slowness and `disabled` stay one per URL; the retried head and its bookkeeping are kept per partition, as
`head:<n>`, `attempts:<n>`, `first_failed_at:<n>` and `last_error:<n>`, so a success in one partition closes the
URL's breaker without restarting another partition's failing event's retry window (which would keep it, and its
partition's outbox behind it, retrying for ever against a URL that refuses only that event).

An outbox's drainer (which holds its lease) writes `paused_until`, its `head*` and the slowness fields; the CLI
writes `disabled*` when an operator re-enables a URL.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import redis
from redis.typing import EncodableT, FieldT

from plugwatch import keys

_HEAD_FIELDS = ("head", "attempts", "first_failed_at", "last_error")
Partition = int | None  # whose head fields: a partition's (`head:<n>`), or None for the unsuffixed ones


def _head_fields(partition: Partition) -> tuple[str, ...]:
    return _HEAD_FIELDS if partition is None else tuple(f"{name}:{partition}" for name in _HEAD_FIELDS)


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
    others_attempts: int = 0  # with partitions: the most attempts of another partition's head (0: none failing)

    def paused(self, now: float) -> bool:
        return self.paused_until > now

    def failing(self, now: float) -> bool:
        """The breaker is open: paused, or its head event failed and is being retried (from a pause's end
        until that attempt's outcome the pause lies in the past, yet the URL has not recovered)."""
        return not self.disabled and (self.paused(now) or self.attempts > 0 or self.others_attempts > 0)

    @property
    def slow(self) -> bool:
        return self.read_timeout > 0

    @classmethod
    def from_hash(cls, url: str, raw: Mapping[bytes, bytes], partition: Partition = None) -> UrlState:
        """The state as one partition's drainer sees it (its own head; `partition` None: unpartitioned), or,
        for a view of the whole URL (`partition` None on a partitioned URL), with the head that has been
        failing longest."""
        fields = {key.decode(): value.decode(errors="replace") for key, value in raw.items()}
        heads = _partition_heads(fields)
        own: dict[str, str] = fields
        others = 0
        if partition is not None:
            own = heads.pop(partition, {})
            others = max((_attempts(head) for head in heads.values()), default=0)
        elif heads:  # the whole URL: the partition whose head has failed for the longest
            own = min(heads.values(), key=lambda head: float(head.get("first_failed_at") or math.inf))
        return cls(
            url=url,
            paused_until=float(fields.get("paused_until") or 0),
            disabled=fields.get("disabled") == "1",
            disabled_at=float(fields.get("disabled_at") or 0),
            disabled_reason=fields.get("disabled_reason", ""),
            head=own.get("head", ""),
            attempts=_attempts(own),
            first_failed_at=float(own.get("first_failed_at") or 0),
            last_error=own.get("last_error", ""),
            read_timeout=float(fields.get("read_timeout") or 0),
            slow_at=float(fields.get("slow_at") or 0),
            others_attempts=others,
        )


def _attempts(head: Mapping[str, str]) -> int:
    return int(head.get("attempts") or 0)


def _partition_heads(fields: Mapping[str, str]) -> dict[int, dict[str, str]]:
    """`{"head:3": h, "attempts:3": a, ...}` -> `{3: {"head": h, "attempts": a, ...}}`."""
    heads: dict[int, dict[str, str]] = {}
    for name, value in fields.items():
        base, colon, partition = name.partition(":")
        if colon and base in _HEAD_FIELDS and partition.isdigit():
            heads.setdefault(int(partition), {})[base] = value
    return heads


def read_states(connection: redis.Redis, urls: Iterable[str]) -> list[UrlState]:
    """The state of each URL (its whole view), in one round trip."""
    urls = list(urls)
    pipe = connection.pipeline(transaction=False)
    for url in urls:
        pipe.hgetall(keys.downstream_state_key(url))
    return [UrlState.from_hash(url, raw) for url, raw in zip(urls, pipe.execute(), strict=True)]


def read_state(connection: redis.Redis, url: str, partition: Partition = None) -> UrlState:
    """The state of `url` as the drainer of its outbox in `partition` sees it (None: unpartitioned)."""
    raw: Mapping[bytes, bytes] = connection.hgetall(keys.downstream_state_key(url))  # type: ignore[assignment]
    return UrlState.from_hash(url, raw, partition)


def record_failure(
    connection: redis.Redis, url: str, *, head: str, attempts: int, error: str, paused_until: float,
    first_failed_at: float | None = None, read_timeout: float | None = None, slow_at: float | None = None,
    partition: Partition = None,
) -> None:
    """Open the breaker until `paused_until` after the head's failed attempt number `attempts` (and, after
    a timed-out attempt, raise the URL's read timeout)."""
    names = dict(zip(_HEAD_FIELDS, _head_fields(partition), strict=True))
    fields: dict[FieldT, EncodableT] = {
        "url": url, names["head"]: head, names["attempts"]: attempts, names["last_error"]: error[:500],
        "paused_until": paused_until,
    }
    if first_failed_at is not None:
        fields[names["first_failed_at"]] = first_failed_at
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


def record_success(connection: redis.Redis, url: str, partition: Partition = None) -> None:
    """Close the breaker: forget the head's attempts (`partition`'s head; the others' stay) and any pause.
    (With partitions it drops the unsuffixed head fields too, a version's before per-partition heads.)"""
    legacy = _HEAD_FIELDS if partition is not None else ()
    connection.hdel(keys.downstream_state_key(url), *_head_fields(partition), *legacy, "paused_until")


def forget_head(connection: redis.Redis, url: str, partition: Partition = None) -> None:
    connection.hdel(keys.downstream_state_key(url), *_head_fields(partition))


def disable(connection: redis.Redis, url: str, *, reason: str, now: float) -> None:
    connection.hset(keys.downstream_state_key(url), mapping={
        "url": url, "disabled": "1", "disabled_at": now, "disabled_reason": reason[:500],
    })


# KEYS: the URL's state; ARGV: the head fields' names (`_HEAD_FIELDS`). Re-enable: drop `disabled*`, the pause and
# every partition's head (`head`, `head:<n>`, ...); reply whether it was disabled.
_ENABLE_LUA = """
local heads = {}
for _, name in ipairs(ARGV) do heads[name] = true end
local was = redis.call('HGET', KEYS[1], 'disabled')
local drop = {'disabled', 'disabled_at', 'disabled_reason', 'paused_until'}
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  if heads[name:match('^[^:]*')] then drop[#drop + 1] = name end
end
redis.call('HDEL', KEYS[1], unpack(drop))
return was == '1' and 1 or 0
"""


def enable(connection: redis.Redis, url: str) -> bool:
    """Re-enable a URL and close its breaker (every partition's head); returns whether it was disabled."""
    return bool(connection.eval(_ENABLE_LUA, 1, keys.downstream_state_key(url), *_HEAD_FIELDS))
