"""Look-up: fetch a charger a vehicle reports but plugwatch has never seen, so *at home* needs no charger webhook.

A vehicle's `pluggedInChargerId` names a charger; *at home* needs that charger's Location, which only a
charger event carries.  If plugwatch holds no state for that charger (and it was not deleted), the worker
calls `ChargerLookup.after_batch(result)` after committing a batch (the batch result carries the committed
states, so finding them costs no Redis read): each such charger is fetched once
(GET /chargers/{id}, rate-limited by `SET plugwatch:enode:lookup:<id> NX EX ttl`, shared by all worker
processes) and applied as a `user:charger:updated` observation through the same core and store; the core
then emits `vehicle.plugged_in_at_home` if the Locations match.

The look-up runs inside the drain job, so it is bounded: its client retries briefly (`LOOKUP_RETRY`,
`LOOKUP_TIMEOUT_SECONDS`), one call fetches at most `max_fetches` chargers (the others stay unclaimed for a
later batch), and a transient failure (Enode slow or down) ends the call's look-ups.  A failed look-up is
logged and skipped: the charger's own webhook, a look-up after the TTL, or a reconcile will still tell.
"""

from __future__ import annotations

import functools
from datetime import datetime

import redis
import structlog

from plugwatch import keys
from plugwatch.enode_api.assets import get_charger
from plugwatch.enode_api.client import EnodeClient, EnodeConfig, RetryPolicy
from plugwatch.enode_api.errors import EnodeError, EnodeTransientError
from plugwatch.settings import Settings
from worker.core import DEFAULT_CONFIG, CoreConfig
from worker.enode.observe import ApplyBatch, Deliver, apply_observations, observations
from worker.ingest.store import BatchResult, Store

log = structlog.get_logger(__name__)

DEFAULT_TTL_SECONDS = 15 * 60
DEFAULT_MAX_FETCHES = 5
LOOKUP_RETRY = RetryPolicy(max_attempts=2, base_delay=0.2, max_delay=1.0, max_retry_after=2.0)
LOOKUP_TIMEOUT_SECONDS = 3.0


class ChargerLookup:
    """Fetches unknown chargers at most once per `ttl_seconds` each (across all worker processes)."""

    def __init__(self, client: EnodeClient, connection: redis.Redis, apply_batch: ApplyBatch,
                 ttl_seconds: int = DEFAULT_TTL_SECONDS, max_fetches: int = DEFAULT_MAX_FETCHES,
                 config: CoreConfig = DEFAULT_CONFIG) -> None:
        self._client = client
        self._connection = connection
        self._apply = apply_batch
        self._ttl = ttl_seconds
        self._max_fetches = max_fetches
        self._config = config

    @classmethod
    def from_settings(cls, settings: Settings, connection: redis.Redis, store: Store,
                      deliver: Deliver) -> ChargerLookup | None:
        """The worker's look-up, or None when the Enode API is not configured (look-ups are then off)."""
        if not settings.enode.api_configured:
            return None
        config = EnodeConfig.from_settings(settings, retry=LOOKUP_RETRY, timeout_seconds=LOOKUP_TIMEOUT_SECONDS)
        return cls(EnodeClient(config), connection, functools.partial(apply_observations, store, deliver),
                   config=store.config)

    def after_batch(self, committed: BatchResult, now: datetime) -> BatchResult | None:
        """Look up and apply the chargers the batch's users' vehicles are plugged into but plugwatch has
        never seen; None when nothing was fetched."""
        unknown = sorted((user, charger) for user, state in committed.states.items()
                         for charger in state.unknown_chargers())
        fetched, attempts = [], 0
        for user_id, charger_id in unknown:
            if attempts == self._max_fetches:
                break
            if not self._connection.set(keys.enode_lookup_key(charger_id), "1", nx=True, ex=self._ttl):
                continue  # looked up recently (by this or another worker)
            attempts += 1
            try:
                fetched.append(get_charger(self._client, charger_id))
            except EnodeError as error:
                log.warning("enode.lookup_failed", user_id=user_id, charger_id=charger_id, error=str(error))
                if isinstance(error, EnodeTransientError):
                    break  # Enode is slow or down: do not hold up the drain with more calls now
        if not fetched:
            return None
        result = self._apply(observations("charger", fetched, now, self._config))
        log.info("enode.chargers_looked_up", chargers=len(fetched), emitted=len(result.events))
        return result

    def close(self) -> None:
        self._client.close()
