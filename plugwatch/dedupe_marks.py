"""Dedupe marks: what the receiver remembers of a delivery, in ~20 bytes of Redis, for the dedupe window.

    mark_of(delivery_id, signature) -> Mark   hash (picks the shard) + field (the 10 bytes stored)
    bucket_of(now, width) / live_buckets(now, window, width)
    shard_bits_for(marks, target)             how many shards (2^bits) a bucket needs
    shard_key(prefix, bucket, bits, hash)     `plugwatch:marks:<bucket>:<bits>:<shard>`
    is_marked(connection, ...)                the script's look-up, in Python (tests, tools)
    shard_capacity(connection)                how full a shard may get under this Redis's listpack limit

Layout (INGEST_LUA in `plugwatch.ingest_protocol` writes it; these functions say the same in Python):
- A mark is a 10-byte field with an empty value in a small hash. One hash holds the marks of one *bucket*
  (receipt time // `PLUGWATCH_DEDUPE_BUCKET_SECONDS`) and one *shard* (the low `bits` bits of the mark's
  32-bit hash). Hashes that small stay in Redis's compact listpack encoding (`hash-max-listpack-entries`,
  default 128): a mark costs its 10 bytes + 4 of listpack framing + its share of the key and of the
  allocator's rounding, ~20 B in all (bench/dedupe_memory.py), where a key per delivery cost ~150 B.
- Each bucket key expires `window` after the end of its bucket, so a mark lives between the window and the
  window + one bucket. A look-up checks the delivery's shard in every bucket that may still hold a mark
  younger than the window (window / width + 1 buckets). In the shard being written that check is the write
  itself: an HSET that adds no field found the mark (a duplicate; nothing more is written). A shard's TTL is
  set once, by the mark that creates it (every mark of a bucket expires at the same time).
- The shard count adapts to the rate, per bucket: the hash `plugwatch:marks` holds, per live bucket, its
  *generations* (field `<bucket>`: shard bits, e.g. `"9"`, or `"9 13"`), its mark count (`n<bucket>`) and
  the receipt time of its first mark (`f<bucket>`, unix ms). A new bucket starts with enough shards for the
  previous bucket's count at `target` marks per shard; when a write finds its shard holding `cap` marks (a
  burst), the bucket gets a new generation sized for the rest of the bucket at the rate seen since its first
  mark, but at most 4 times the shards of the last (1 or 2 bits more: extrapolated over the rest of the
  bucket, a burst of seconds would leave shards nearly empty), and new marks go there. A look-up checks
  every generation of a bucket, so nothing is ever moved and a generation never changes its shard count.
  (With the rate measured from the bucket's start, the first bucket after a start late in the day grew a
  bit at a time: 32,000 marks in seconds made 9 generations, 8 look-ups per delivery besides the write;
  now 6 generations, 5 look-ups.)
- The script builds the mark hashes' names from the marks hash's name (its KEYS[6]): on a Redis Cluster a
  partition hash tag in that name (`plugwatch:marks:{p}`) keeps every key of one call in one slot.

False duplicates. A delivery is dropped as a duplicate only if its (hash, field) — 32 + 80 bits of BLAKE2b
over (delivery id, the body's HMAC-SHA1 signature) — equals a remembered mark's in the same shard; counting
the 80 field bits alone (ignoring the shard bits), N marks in the window give P(any collision) <= N^2 / 2^81.
At 10M vehicles x 2 deliveries per vehicle-hour x 96 h (the window + a 24 h bucket), N = 1.9e9: P <= 1.5e-6
per window; each new delivery collides with probability <= N / 2^80 = 1.6e-15, so of the 1.75e11 deliveries a
year at that scale one is lost to a collision about once in 3,500 years (and the shard bits, ~21 there, make
it 2^21 rarer).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import redis

from plugwatch import keys

FIELD_BYTES = 10  # 80 bits: see "False duplicates" above
MAX_SHARD_BITS = 24  # 16M shards per bucket generation: 1G marks per bucket at 64 per shard
DEFAULT_CAP = 100  # marks per shard before a new generation (well inside the default listpack limit 128)
_LISTPACK_DEFAULT = 128


class Mark(NamedTuple):
    hash: int  # 32 bits: its low `bits` pick the shard
    field: bytes  # FIELD_BYTES: what the shard's hash stores


def mark_of(delivery_id: str, signature: bytes) -> Mark:
    """The mark of a delivery: its id and `signature`, the verified HMAC-SHA1 of its body
    (`enode_signature.authentic_digest`). The same id with the same body under the same secret gives the same
    mark; another body, another id or another secret gives another.

    The signature stands for the body: the receiver has it already, where a digest of the body would cost a
    second pass over it (BLAKE2b of a 3 KB body: ~3.6 us; of the id and the 20 bytes: ~0.4 us). A different
    body with the same id and the same signature would need an HMAC-SHA1 collision under an unknown key. A
    retry signed under another secret (Enode's secret rotated between two attempts) has another mark and is
    stored again: never lost, and the worker's core yields no new event for it (invariant 3: its
    observations are no newer than what it stored)."""
    identity = delivery_id.encode()
    digest = hashlib.blake2b(len(identity).to_bytes(4, "big") + identity + signature, digest_size=16).digest()
    return Mark(int.from_bytes(digest[:4], "big"), digest[4:4 + FIELD_BYTES])


def bucket_of(now: float, width: int) -> int:
    return math.floor(now / width)


def live_buckets(now: float, window: int, width: int) -> range:
    """Every bucket that may hold a mark received less than `window` seconds before `now`."""
    return range(bucket_of(now - window, width), bucket_of(now, width) + 1)


def expires_in(now: float, window: int, width: int) -> int:
    """Seconds until the current bucket's keys may go: `window` after the bucket's end."""
    return math.ceil((bucket_of(now, width) + 1) * width + window - now)


def shard_bits_for(marks: float, target: int) -> int:
    """The fewest shard bits that hold `marks` at no more than `target` per shard on average."""
    bits = 0
    while marks > target * 2**bits and bits < MAX_SHARD_BITS:
        bits += 1
    return bits


def target_for(cap: int) -> int:
    """Marks per shard a bucket is sized for: half the cap leaves room for the fullest shard and a rising rate."""
    return max(1, cap // 2)


def shard_key(prefix: str, bucket: int, bits: int, hash_: int) -> str:
    return f"{prefix}:{bucket}:{bits}:{hash_ % 2**bits}"


def generations(value: bytes | str | None) -> list[int]:
    """The shard bits of a bucket's generations, oldest first (`b"9 13"` -> [9, 13])."""
    text = value.decode() if isinstance(value, bytes) else (value or "")
    return [int(part) for part in text.split()]


def is_marked(connection: redis.Redis, delivery_id: str, signature: bytes, *, now: float, window: int,
              width: int) -> bool:
    """Whether the receiver would take this delivery (its id and signature: `mark_of`) for a duplicate at
    `now` (ignoring legacy marks)."""
    mark = mark_of(delivery_id, signature)
    buckets = live_buckets(now, window, width)
    found = connection.hmget(keys.DEDUPE_MARKS, [str(b) for b in buckets])
    return any(connection.hexists(shard_key(keys.DEDUPE_MARKS, bucket, bits, mark.hash), mark.field)
               for bucket, value in zip(buckets, found, strict=True) for bits in generations(value))


def cap_for(listpack_entries: int) -> int:
    """Marks per shard under a `hash-max-listpack-entries` limit: DEFAULT_CAP, or 4/5 of a lower limit."""
    return max(1, min(DEFAULT_CAP, listpack_entries * 4 // 5))


def cap_from_config(config: Mapping[Any, Any]) -> int:
    """`cap_for` the limit in a CONFIG GET reply (Redis 7 names it listpack, Redis 6 ziplist)."""
    for name in ("hash-max-listpack-entries", "hash-max-ziplist-entries"):
        if str(config.get(name, "")).isdigit():
            return cap_for(int(config[name]))
    return cap_for(_LISTPACK_DEFAULT)
