"""A process's view of the subscriptions (`plugwatch.subscriptions`), refreshed when their version changes.

    cache = SubscriptionCache(connection)        no I/O until first used
    cache.signing_keys(url) -> (key, ...)        what an attempt to `url` is signed with now (newest first)
    cache.urls() / cache.removed()               every subscribed URL / those removed but not yet drained
    cache.refresh(force=True)                    the worker's pump, every ~1 s

The version counter is read at most every `REFRESH_SECONDS` (and at once for a URL the cache does not
know), so a change made with `plugwatch subscriptions` reaches every worker within about a second; the
records are read again only when it changed.  Routing does not depend on this cache: the ingest commit reads
the routes inside its Lua.  Thread-safe (drainer threads sign concurrently).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis
import structlog

from plugwatch import subscriptions
from plugwatch.subscriptions import Subscription

REFRESH_SECONDS = 0.5

log = structlog.get_logger(__name__)


class NoSigningKeyError(LookupError):
    """No subscription (and no DOWNSTREAM_WEBHOOK_SECRET) gives a key for this URL: nothing is sent unsigned."""


class SubscriptionCache:
    def __init__(self, connection: redis.Redis, *, fallback_key: bytes | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._connection = connection
        self._fallback = fallback_key  # DOWNSTREAM_WEBHOOK_SECRET: for a URL with an outbox but no record
        self._clock = clock
        self._lock = threading.Lock()
        self._version: bytes | None = None
        self._checked = float("-inf")
        self._records: dict[str, Subscription] = {}

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the records if their version changed; a Redis error keeps the last view (logged)."""
        with self._lock:
            now = self._clock()
            if not force and now - self._checked < REFRESH_SECONDS:
                return
            self._checked = now
            try:
                version = self._connection.get(subscriptions.VERSION)
                if version is not None and version == self._version:
                    return
                self._records = subscriptions.load_all(self._connection)
                self._version = version if isinstance(version, bytes) else None
            except redis.RedisError as error:
                log.warning("subscriptions.refresh_failed", error=str(error))

    def get(self, url: str) -> Subscription | None:
        self.refresh()
        record = self._records.get(url)
        if record is None:
            self.refresh(force=True)
            record = self._records.get(url)
        return record

    def signing_keys(self, url: str) -> tuple[bytes, ...]:
        """The keys an attempt to `url` carries now, newest first."""
        record = self.get(url)
        found = record.keys_at(self._clock()) if record is not None else ()
        if found:
            return found
        if self._fallback:
            return (self._fallback,)
        raise NoSigningKeyError(f"no signing key for {url}")

    def urls(self) -> list[str]:
        self.refresh()
        return list(self._records)

    def active(self) -> list[str]:
        self.refresh()
        return [url for url, record in self._records.items() if record.active]

    def removed(self) -> list[str]:
        self.refresh()
        return [url for url, record in self._records.items() if not record.active]
