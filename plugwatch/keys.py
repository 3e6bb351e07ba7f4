"""Every Redis key and RQ queue name plugwatch uses, in one place.

The receiver and the worker never import each other; they agree through these names. These are the names of
one partition; with PLUGWATCH_PARTITIONS > 1 each partition's data-path keys are named by
`plugwatch.partitions.Layout` (the same names with a hash tag: `plugwatch:{p3}:ingest`).

Data flow through Redis:

    receiver ─XADD─▶ INGEST_STREAM ─(drain job on INGEST_QUEUE)─▶ user state (USER_STATE)
                                                               ├─XADD─▶ EVENTS_STREAM (all emitted events)
                                                               └─XADD─▶ outbox_stream(url) per subscription wanting it
                                                                        (plugwatch.subscriptions: its keys too)
    outbox_stream(url) ─(drain job on DELIVERY_QUEUE)─▶ POST to url; failures ─▶ RQ FailedJobRegistry
"""

from __future__ import annotations

import hashlib

PREFIX = "plugwatch"

# --- RQ queues -------------------------------------------------------------------------------------
INGEST_QUEUE = "plugwatch-ingest"
DELIVERY_QUEUE = "plugwatch-delivery"
DEAD_LETTER_QUEUE = "plugwatch-dead-letters"  # failed replayable delivery jobs live in its FailedJobRegistry
ALL_QUEUES = (INGEST_QUEUE, DELIVERY_QUEUE, DEAD_LETTER_QUEUE)

# Dotted paths of the RQ job functions (the receiver enqueues by path; it never imports worker/).
DRAIN_INGEST_JOB = "worker.jobs.drain_ingest"

# --- ingest ----------------------------------------------------------------------------------------
INGEST_STREAM = f"{PREFIX}:ingest"  # fields: d (delivery id), b (raw body bytes), t (received, unix ms),
# and q (the quarantine entry id) on replays
INGEST_GROUP = "ingest"
INGEST_ARMED = f"{PREFIX}:ingest:armed"  # set while a drain job is queued or running
INGEST_USERS_PREFIX = f"{PREFIX}:ingest:users:"  # + entry id -> JSON array of the users its events concern,
# recorded by the drain that read it, deleted by the commit that acknowledges it (worker.ingest.order)
INGEST_WAITED_PREFIX = f"{PREFIX}:ingest:waited:"  # + entry id: it failed while applied after an older
# pending entry of the same user (that one may be the poison, so its delivery count does not condemn it)
ACK_MARK = f"{PREFIX}:ingest:ack"  # written before each WAIT of PLUGWATCH_ACK_REPLICAS (receiver.batching)
DEDUPE_MARKS = f"{PREFIX}:marks"  # hash: per live bucket its shard generations and mark count; and the
# prefix of the mark hashes `:<bucket>:<bits>:<shard>` (plugwatch.dedupe_marks)
DEDUPE_PREFIX = f"{PREFIX}:dedupe:"  # + delivery id -> the body's digest: the previous version's marks, read
# (never written) until they expire, at most PLUGWATCH_DEDUPE_TTL_SECONDS after the upgrade

# --- quarantine (authentic but unusable input) -----------------------------------------------------
QUARANTINE_STREAM = f"{PREFIX}:quarantine"  # fields: d, b, reason, at (ISO time), [event_index], [replay_of]
QUARANTINED_ONCE_PREFIX = f"{PREFIX}:quarantined:"  # + digest of (ingest entry id, event): quarantined already

# --- Enode heartbeat -------------------------------------------------------------------------------
HEARTBEAT = f"{PREFIX}:heartbeat"  # hash: at (unix seconds, float), created_at,
# pending_events (a JSON number >= 0 as Enode wrote it: 7, 0.5, 1E3)

# --- state -----------------------------------------------------------------------------------------
USER_STATE_PREFIX = f"{PREFIX}:user:"  # + Enode user id -> encoded UserState (msgpack)
# hash: id, started_at_ms, sequence_base, began, previous, reconciled_at_ms (`plugwatch.epoch`)
EPOCH = f"{PREFIX}:epoch"

# --- emitted events --------------------------------------------------------------------------------
EVENTS_STREAM = f"{PREFIX}:events"  # one field per entry: event (JSON text); MAXLEN ~ bounded
EVENTS_STREAM_MAXLEN = 100_000  # the default of PLUGWATCH_EVENTS_STREAM_MAXLEN (Settings.delivery.events_stream_maxlen)
OUTBOX_PREFIX = f"{PREFIX}:outbox:"  # + url_key(url): stream of events (field: event) waiting for that URL
OUTBOX_GROUP = "delivery"
ROUTES = f"{PREFIX}:subscriptions:routes"  # hash url -> "<outbox key> <types>" of every active subscription,
# read by the commit (plugwatch.subscriptions; with partitions, each partition has its copy: plugwatch.partitions)
DOWNSTREAM_URLS = f"{PREFIX}:downstream:urls"  # hash url_key -> url of every URL with an outbox (ops tools name
# them); written by plugwatch.subscriptions, cleared when a removed URL is forgotten
DOWNSTREAM_STATE_PREFIX = f"{PREFIX}:downstream:state:"  # + url_key -> hash (paused_until, disabled, ...)

# --- metrics shared between worker processes -------------------------------------------------------
COUNTERS = f"{PREFIX}:counters"  # hash name -> int, for counters every process and the CLI can read


def dedupe_key(delivery_id: str) -> str:
    """The previous version's mark of a delivery (see DEDUPE_PREFIX)."""
    return DEDUPE_PREFIX + delivery_id


def user_state_key(user_id: str) -> str:
    return USER_STATE_PREFIX + user_id


def url_key(url: str) -> str:
    """A short, stable, Redis-safe name for a downstream URL."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def outbox_stream(url: str) -> str:
    """A URL's outbox without partitions (`plugwatch.outboxes` names each partition's)."""
    return OUTBOX_PREFIX + url_key(url)


def downstream_state_key(url: str) -> str:
    return DOWNSTREAM_STATE_PREFIX + url_key(url)


# --- downstream delivery ---------------------------------------------------------------------------
DRAIN_OUTBOX_JOB = "worker.jobs.drain_outbox"  # args: (url,) or (url, partition), on DELIVERY_QUEUE
DEAD_LETTER_JOB = "worker.jobs.deliver_dead_letter"  # args: (url, event_json), on DEAD_LETTER_QUEUE
OUTBOX_CONSUMER = "drainer"  # the one consumer name: a lease makes one drainer per outbox at a time
DOWNSTREAM_LEASE_PREFIX = f"{PREFIX}:downstream:lease:"  # + url_key -> "queued" or a drainer's token


def downstream_lease_key(url: str) -> str:
    """Set while a drain for `url` is queued ("queued") or running (the drainer's token); without partitions."""
    return DOWNSTREAM_LEASE_PREFIX + url_key(url)


# --- worker ingest ---------------------------------------------------------------------------------
# Under load a drain job arms helper drains (slots 1..N-1) so several worker processes drain at once;
# slot 0 is INGEST_ARMED itself (the receiver's).


def ingest_armed_key(slot: int) -> str:
    """Set while the drain job of `slot` is queued or running (slot 0: INGEST_ARMED)."""
    return INGEST_ARMED if slot == 0 else f"{INGEST_ARMED}:{slot}"


# --- enode API (look-ups, reconcile) ---------------------------------------------------------------
ENODE_LOOKUP_PREFIX = f"{PREFIX}:enode:lookup:"  # + charger id -> "1" while its look-up is rate-limited (TTL)
RECONCILE_SUGGESTED = f"{PREFIX}:enode:reconcile:suggested"  # hash: at, reason; until a full reconcile ran
RECONCILE_LAST = f"{PREFIX}:enode:reconcile:last"  # hash: at, scope, chargers, vehicles, emitted


def enode_lookup_key(charger_id: str) -> str:
    return ENODE_LOOKUP_PREFIX + charger_id


# --- Redis health (plugwatch.redis_health) ---------------------------------------------------------------
REDIS_HEALTH_PROBE = f"{PREFIX}:health:probe"  # the health check's write probe (SET … XX: never created)
