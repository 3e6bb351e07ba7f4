"""Downstream subscriptions, stored in Redis: which URLs receive which event types, signed with which keys.

    add(connection, url, types=..., key=..., now=...)      create, or update an existing (or removed) one
    remove(connection, url, now=...)                       no new events; what waits is still delivered
    purge(connection, url) -> dropped                      drop what waits in a removed URL's outbox
    rotate(connection, url, key, now=..., overlap=...)     sign with the new and the old key until `overlap`
    expire_old(connection, url)                            sign with the newest key only
    forget_if_drained(connection, url) -> bool             a removed URL whose outbox is empty is forgotten
    load_all(connection) -> {url: Subscription}            every subscription, removed ones too
    known_urls(connection) -> [url]                        what ops tools name: subscriptions + leftovers

Redis layout (every change bumps `VERSION`, which workers poll to refresh their cache, `subscription_cache`):

    plugwatch:subscriptions          hash url -> JSON {types, keys: [{key, expires_at}], removed_at, env, created_at}
                                     (the signing keys in base64, newest first: the secrets workers sign with)
    plugwatch:subscriptions:routes   hash url -> "<outbox key> <types>" for ACTIVE subscriptions only, where
                                     <types> is "*" (all) or ",type,type,"; the ingest commit reads it inside its
                                     Lua (`worker.ingest.store`), so every committed event goes to exactly the
                                     subscriptions that exist at that commit, whatever a worker's cache says
                                     (with partitions: a copy per partition, `plugwatch:{pN}:routes`, naming
                                     that partition's outboxes; every change writes them all)
    plugwatch:subscriptions:version  counter
    plugwatch:downstream:urls        hash url_key -> url: every URL with an outbox (active, removed but not yet
                                     drained, and leftovers of older versions); ops tools list these

A removed subscription leaves `routes` at once (no new events) and stays in `subscriptions` (its keys sign
what still waits) until its outbox is empty and no drainer holds it; then it is forgotten entirely.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
import redis

from plugwatch import keys, partitions
from plugwatch.partitions import UNPARTITIONED, Layout, layout, layouts

SUBSCRIPTIONS = f"{keys.PREFIX}:subscriptions"
ROUTES = keys.ROUTES  # the routes of one partition; with several, `Layout.routes` names each copy
VERSION = f"{keys.PREFIX}:subscriptions:version"

# The event types plugwatch emits (worker.core.EventType; a test checks they agree).
EVENT_TYPES = ("vehicle.plugged_in_at_home", "vehicle.unplugged_from_home", "control.failed",
               "control.failure_streak")

# KEYS: routes (partition 0's copy), subscriptions, downstream urls, state, version, then the n outboxes and the
# n leases of the URL (one per partition).  ARGV: url, url key, n.
_FORGET_LUA = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
local n = tonumber(ARGV[3])
for i = 6, 5 + n do
  if redis.call('XLEN', KEYS[i]) > 0 or redis.call('EXISTS', KEYS[i + n]) == 1 then return 0 end
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('DEL', KEYS[4])
for i = 6, 5 + n do redis.call('DEL', KEYS[i]) end
redis.call('INCR', KEYS[5])
return 1
"""


# With partitions on a Redis Cluster, `_forget_partitioned` forgets slot by slot. Per partition (KEYS: its routes,
# the URL's outbox and lease there; ARGV: url), and then the record (KEYS: subscriptions; ARGV: url, the record as
# read at the start or "" for none), each only if still true.
_FORGET_OUTBOX_LUA = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 or redis.call('XLEN', KEYS[2]) > 0
   or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
return 1
"""
_FORGET_RECORD_LUA = """
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""


class SubscriptionError(ValueError):
    """An unusable subscription change (unknown URL, unknown event type); the message says which."""


@dataclass(frozen=True)
class SigningKey:
    key: bytes
    expires_at: float | None = None  # unix seconds; None: until replaced


@dataclass(frozen=True)
class Subscription:
    url: str
    types: tuple[str, ...]  # () = every type
    signing_keys: tuple[SigningKey, ...]  # newest first
    created_at: float
    removed_at: float | None = None
    env: str = ""  # digest of the DOWNSTREAM_WEBHOOK_SECRET key this was last ensured with (`legacy`)

    @property
    def active(self) -> bool:
        return self.removed_at is None

    def keys_at(self, now: float) -> tuple[bytes, ...]:
        """The keys to sign with at `now`: the newest, then older ones whose overlap has not ended."""
        return tuple(k.key for i, k in enumerate(self.signing_keys)
                     if i == 0 or k.expires_at is None or k.expires_at > now)

    def wants(self, event_type: str) -> bool:
        return not self.types or event_type in self.types

    def to_json(self) -> bytes:
        return orjson.dumps({
            "types": list(self.types), "created_at": self.created_at, "removed_at": self.removed_at,
            "env": self.env,
            "keys": [{"key": base64.b64encode(k.key).decode(), "expires_at": k.expires_at}
                     for k in self.signing_keys],
        })

    @classmethod
    def from_json(cls, url: str, raw: bytes) -> Subscription:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(url=url, types=tuple(data.get("types") or ()), created_at=float(data.get("created_at") or 0),
                   removed_at=data.get("removed_at"), env=str(data.get("env") or ""),
                   signing_keys=tuple(SigningKey(base64.b64decode(k["key"]), k.get("expires_at"))
                                      for k in data.get("keys") or ()))


def generate_secret() -> str:
    """A new `whsec_` secret: 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def parse_types(text: str | None) -> tuple[str, ...]:
    """"a,b" -> ("a", "b"), checked against EVENT_TYPES; None or "" -> () (every type)."""
    types = tuple(dict.fromkeys(part.strip() for part in (text or "").split(",") if part.strip()))
    unknown = [name for name in types if name not in EVENT_TYPES]
    if unknown:
        raise SubscriptionError(f"unknown event type {', '.join(unknown)} (known: {', '.join(EVENT_TYPES)})")
    return types


def route(subscription: Subscription, into: Layout = UNPARTITIONED) -> str:
    """The `routes` value the commit Lua reads: the outbox key (of the partition `into`, whose copy of the routes
    holds it), then "*" or ",type,type,"."""
    types = "," + ",".join(subscription.types) + "," if subscription.types else "*"
    return f"{into.outbox(subscription.url)} {types}"


def load_all(connection: redis.Redis) -> dict[str, Subscription]:
    raw: dict[bytes, bytes] = connection.hgetall(SUBSCRIPTIONS)  # type: ignore[assignment]
    return {url.decode(): Subscription.from_json(url.decode(), value) for url, value in sorted(raw.items())}


def load(connection: redis.Redis, url: str) -> Subscription | None:
    raw = connection.hget(SUBSCRIPTIONS, url)
    return Subscription.from_json(url, raw) if isinstance(raw, bytes) else None


def save(connection: redis.Redis, subscription: Subscription) -> None:
    """Write a subscription (and its route while active) and bump the version, in one transaction. With
    partitions, each partition's copy of the routes lives in that partition's hash slot, which no transaction
    spans on a Redis Cluster: the writes then go in this order in one pipeline (the record, each partition's
    route, the version last), and a change reaches the partitions' commits one after the other, within a
    round trip."""
    count = partitions.recorded(connection)
    pipe = connection.pipeline(transaction=count == 1)
    pipe.hset(SUBSCRIPTIONS, subscription.url, subscription.to_json())
    for into in layouts(count):
        if subscription.active:
            pipe.hset(into.routes, subscription.url, route(subscription, into))
        else:
            pipe.hdel(into.routes, subscription.url)
    pipe.hset(keys.DOWNSTREAM_URLS, keys.url_key(subscription.url), subscription.url)
    pipe.incr(VERSION)
    pipe.execute()


def add(connection: redis.Redis, url: str, *, types: Sequence[str], key: bytes | None, now: float) -> Subscription:
    """Subscribe `url` (or update it: new types; a given key replaces its keys; a removed one is revived).
    A new subscription needs `key`."""
    existing = load(connection, url)
    if existing is None and key is None:
        raise SubscriptionError(f"{url} is not subscribed yet: a new subscription needs a key")
    if existing is None:
        subscription = Subscription(url, tuple(types), (SigningKey(key or b""),), created_at=now)
    else:
        signing = (SigningKey(key),) if key is not None else existing.signing_keys
        subscription = replace(existing, types=tuple(types), signing_keys=signing, removed_at=None)
    save(connection, subscription)
    return subscription


def _existing(connection: redis.Redis, url: str) -> Subscription:
    subscription = load(connection, url)
    if subscription is None:
        raise SubscriptionError(f"{url} is not a subscription (plugwatch subscriptions list)")
    return subscription


def remove(connection: redis.Redis, url: str, *, now: float) -> Subscription:
    subscription = replace(_existing(connection, url), removed_at=now)
    save(connection, subscription)
    return subscription


def rotate(connection: redis.Redis, url: str, key: bytes, *, now: float, overlap: float) -> Subscription:
    """Sign with `key` from now on, and with the keys in use until now for `overlap` more seconds."""
    current = _existing(connection, url)
    until = now + overlap
    in_use = current.keys_at(now)
    older = tuple(SigningKey(old.key, until if old.expires_at is None else min(old.expires_at, until))
                  for old in current.signing_keys if old.key in in_use and old.key != key)
    subscription = replace(current, signing_keys=(SigningKey(key), *older))
    save(connection, subscription)
    return subscription


def expire_old(connection: redis.Redis, url: str) -> Subscription:
    current = _existing(connection, url)
    subscription = replace(current, signing_keys=current.signing_keys[:1])
    save(connection, subscription)
    return subscription


def purge(connection: redis.Redis, url: str) -> int:
    """Drop what waits in a removed `url`'s outboxes (the streams and their groups stay, so a drainer mid-batch
    finds the entries gone and moves on); returns how many."""
    subscription = _existing(connection, url)
    if subscription.active:
        raise SubscriptionError(f"{url} is still subscribed: remove it first")
    return sum(int(connection.xtrim(into.outbox(url), maxlen=0, approximate=False))
               for into in layouts(partitions.recorded(connection)))


def forget_if_drained(connection: redis.Redis, url: str) -> bool:
    """Forget a URL that is not subscribed (removed, or left by an older version) once nothing waits for it
    and no drainer holds it: its record, outboxes, delivery state and its name in `DOWNSTREAM_URLS`."""
    boxes = layouts(partitions.recorded(connection))
    if len(boxes) > 1:
        return _forget_partitioned(connection, url, boxes)
    script_keys = [boxes[0].routes, SUBSCRIPTIONS, keys.DOWNSTREAM_URLS, keys.downstream_state_key(url), VERSION,
                   *(into.outbox(url) for into in boxes), *(into.lease(url) for into in boxes)]
    return bool(connection.eval(_FORGET_LUA, len(script_keys), *script_keys, url, keys.url_key(url), len(boxes)))


def _forget_partitioned(connection: redis.Redis, url: str, boxes: Sequence[Layout]) -> bool:
    """`forget_if_drained` over outboxes in several hash slots, which no Lua call spans on a Redis Cluster.

    Each step is atomic within its own slot, and each re-checks what it relies on, so a `subscribe` of the same
    URL at any moment loses nothing: a partition's outbox is deleted only while it is empty, unleased and has no
    route there (a commit appends to an outbox in the same Lua that reads that partition's routes), and the
    record only if it is still the one read at the start. A re-subscription in between makes that last step
    fail (the new record and its keys stay); the outboxes deleted before it were empty and are made again by
    the next commit and drain. The URL's name in `DOWNSTREAM_URLS` and its delivery state go first: the name is
    kept by the record while there is one (`known_urls`), and a re-subscribed URL starts with a fresh state."""
    record = connection.hget(SUBSCRIPTIONS, url)
    pipe = connection.pipeline(transaction=False)
    for into in boxes:
        pipe.hexists(into.routes, url)
        pipe.xlen(into.outbox(url))
        pipe.exists(into.lease(url))
    if any(pipe.execute()):  # a cheap look first: most calls end here, and nothing was changed
        return False
    for into in boxes:
        if not connection.eval(_FORGET_OUTBOX_LUA, 3, into.routes, into.outbox(url), into.lease(url), url):
            return False
    pipe = connection.pipeline(transaction=False)
    pipe.hdel(keys.DOWNSTREAM_URLS, keys.url_key(url))
    pipe.delete(keys.downstream_state_key(url))
    pipe.execute()
    forgotten = bool(connection.eval(_FORGET_RECORD_LUA, 1, SUBSCRIPTIONS, url, record or b""))
    connection.incr(VERSION)
    return forgotten


def known_urls(connection: redis.Redis) -> list[str]:
    """Every URL with an outbox or a subscription: active ones, removed ones still draining, leftovers."""
    names = [*connection.hvals(keys.DOWNSTREAM_URLS), *connection.hkeys(SUBSCRIPTIONS)]
    return sorted({_text(name) for name in names})


def active_urls(connection: redis.Redis) -> list[str]:
    return sorted(_text(url) for url in connection.hkeys(layout(0, partitions.recorded(connection)).routes))


def is_active(connection: redis.Redis, url: str) -> bool:
    return bool(connection.hexists(layout(0, partitions.recorded(connection)).routes, url))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def leftovers(connection: redis.Redis, subscribed: Iterable[str]) -> list[str]:
    """URLs with an outbox that no subscription record covers (a URL of an older version's configuration)."""
    return sorted(set(known_urls(connection)) - set(subscribed))


def env_digest(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def ensure_from_env(connection: redis.Redis, urls: Sequence[str], key: bytes | None, *, now: float,
                    overlap: float) -> list[str]:
    """At worker start-up: each `DOWNSTREAM_WEBHOOK_URLS` URL is a subscription of every type signed with
    `DOWNSTREAM_WEBHOOK_SECRET`.  An existing one keeps what operators changed (types, rotations, removal);
    only a changed `DOWNSTREAM_WEBHOOK_SECRET` rotates it to the new key (the old one signs for `overlap`).
    A leftover outbox of an older version (a URL no longer configured) becomes a removed subscription signed
    with that key, so it drains and is then forgotten.  Returns what this changed, for the log."""
    if key is None:
        return []
    digest, changed = env_digest(key), []
    for url in urls:
        existing = load(connection, url)
        if existing is None:
            save(connection, Subscription(url, (), (SigningKey(key),), created_at=now, env=digest))
            changed.append(f"added {url}")
        elif existing.env != digest:
            rotated = rotate(connection, url, key, now=now, overlap=overlap) if existing.env else existing
            save(connection, replace(rotated, env=digest))
            changed.append(f"rotated {url}" if existing.env else f"adopted {url}")
    for url in leftovers(connection, [*load_all(connection), *urls]):
        if not forget_if_drained(connection, url):
            save(connection, Subscription(url, (), (SigningKey(key),), created_at=now, removed_at=now, env=digest))
            changed.append(f"draining leftover {url}")
    return changed
