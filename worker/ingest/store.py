"""The state store: apply a batch of observations with the pure core and commit it atomically, lock-free.

    Store(connection, config=...).apply_batch(observations, ack) -> BatchResult
    Store.from_settings(connection, settings)     the store a process's Settings describe

One batch costs two Redis round trips when nobody else touches the same users:

1. read: `MGET` every `plugwatch:user:<id>` the batch touches;
2. commit: one `COMMIT_LUA` call that compares each changed user's stored bytes with what was read
   (compare-and-set; "absent" is a value too) and, only if all match, writes the new states (`DEL` for an
   empty one; a TTL for one that only remembers deleted devices or handled actions), `XADD`s every emitted event to
   `plugwatch:events` and to the outbox of each subscription whose types include it (read from
   `plugwatch:subscriptions:routes` inside the same call, so every committed event goes to exactly the
   subscriptions that exist at that commit, whatever any worker was started with), and `XACK`s + `XDEL`s the
   ingest entries the batch came from (and deletes their users records, `worker.ingest.order`).

On a conflict (another worker committed one of our users in between) nothing is written; the store re-reads
only the conflicting users, re-applies their observations and commits again. The state change, its events
and the acknowledgement of its input are one atomic step (an outbox), so a worker killed at any instant
either committed all of it or nothing: a redelivered entry meets the already-updated state, which the core
answers with `duplicate`/`stale` and no event.

Each commit also checks that the epoch marker (`plugwatch.epoch`) the store committed under is still the one
in Redis. If it is gone or replaced, Redis lost its state (a wipe, an old backup): nothing is written, the store
logs `redis.state_lost` at error, adopts the new epoch (creating it as `lost_state`), whose `sequence_base` and
once-only first status go into the core's config, and applies the whole batch again against the (empty) state.

Users whose state an observation did not change are neither compared nor written: the core's state only
ever grows towards newer facts, so "nothing to do" against the state read stays true against any later one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import redis
import structlog
from msgspec.structs import replace

from plugwatch import epoch as marker
from plugwatch import keys
from plugwatch.outboxes import Outbox
from plugwatch.partitions import UNPARTITIONED, Layout, layouts, partition_of
from plugwatch.settings import Settings
from worker.core import (
    DEFAULT_CONFIG,
    CoreConfig,
    EmittedEvent,
    Observation,
    Outcome,
    UserState,
    apply,
    decode_state,
    encode_state,
)

log = structlog.get_logger(__name__)

MAX_ATTEMPTS = 50
# A user without live devices keeps what it remembers (tombstones of deleted devices, handled actions) so
# that late or redelivered updates stay stale/duplicate, for longer than Enode retries a delivery (about a
# day) and the receiver dedupes (3 days), and at least as long as the action memory; then the key expires.
TOMBSTONE_TTL_MS = 7 * 24 * 3600 * 1000

# KEYS: users (n), events stream, fixed outboxes (m), ingest stream, subscription routes (a hash), epoch marker.
# ARGV: n, m, events count, acks count, events MAXLEN, ingest group, tombstone TTL (ms), epoch id,
#       then per user: old present ("1"/"0"), old bytes, new ("1" set, "0" delete, "2" set with the TTL),
#       new bytes, then the event JSON texts, then their types, then the ingest entry ids to acknowledge, and
#       last the prefix of their users records to delete (worker.ingest.order; "" for none).
# Reply: the indexes of conflicting users, or "ok" followed by the subscribed URLs that received events.
# Routes are "<outbox key> <types>" (see plugwatch.subscriptions); their outbox keys are not in KEYS: each
# partition's copy of the routes names that partition's outboxes, in the same hash slot as every key here.
COMMIT_LUA = """
local n, m = tonumber(ARGV[1]), tonumber(ARGV[2])
local n_events, n_acks = tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('HGET', KEYS[#KEYS], 'id') ~= ARGV[8] then return {'epoch'} end
local conflicts = {}
for i = 1, n do
  local base = 8 + (i - 1) * 4
  local current = redis.call('GET', KEYS[i])
  if ARGV[base + 1] == '1' then
    if current ~= ARGV[base + 2] then conflicts[#conflicts + 1] = i - 1 end
  elseif current then
    conflicts[#conflicts + 1] = i - 1
  end
end
if #conflicts > 0 then return conflicts end
for i = 1, n do
  local base = 8 + (i - 1) * 4
  if ARGV[base + 3] == '1' then
    redis.call('SET', KEYS[i], ARGV[base + 4])
  elseif ARGV[base + 3] == '2' then
    redis.call('SET', KEYS[i], ARGV[base + 4], 'PX', ARGV[7])
  else
    redis.call('DEL', KEYS[i])
  end
end
local first_event = 8 + n * 4 + 1
local fixed, targets, reached = {}, {}, {}
for o = 1, m do fixed[KEYS[n + 1 + o]] = true end
if n_events > 0 then
  local routes = redis.call('HGETALL', KEYS[n + m + 3])
  for r = 1, #routes, 2 do
    local value = routes[r + 1]
    local space = string.find(value, ' ', 1, true)
    local outbox = string.sub(value, 1, space - 1)
    if not fixed[outbox] then targets[#targets + 1] = {outbox, string.sub(value, space + 1), routes[r]} end
  end
end
for e = first_event, first_event + n_events - 1 do
  redis.call('XADD', KEYS[n + 1], 'MAXLEN', '~', ARGV[5], '*', 'event', ARGV[e])
  for o = 1, m do
    redis.call('XADD', KEYS[n + 1 + o], '*', 'event', ARGV[e])
  end
  local wanted = ',' .. ARGV[e + n_events] .. ','
  for t = 1, #targets do
    local types = targets[t][2]
    if types == '*' or string.find(types, wanted, 1, true) then
      redis.call('XADD', targets[t][1], '*', 'event', ARGV[e])
      reached[targets[t][3]] = true
    end
  end
end
if n_acks > 0 then
  local ids = {}
  local first_ack = first_event + 2 * n_events
  for a = first_ack, first_ack + n_acks - 1 do ids[#ids + 1] = ARGV[a] end
  local stream = KEYS[n + m + 2]
  for start = 1, #ids, 1000 do
    local chunk = {unpack(ids, start, math.min(start + 999, #ids))}
    redis.call('XACK', stream, ARGV[6], unpack(chunk))
    redis.call('XDEL', stream, unpack(chunk))
  end
  local users = ARGV[#ARGV]
  if users ~= '' then
    for a = 1, #ids do redis.call('DEL', users .. ids[a]) end
  end
end
local reply = {'ok'}
for url in pairs(reached) do reply[#reply + 1] = url end
return reply
"""


_BLANK = UserState()
_EPOCH_CHANGED = [b"epoch"]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class StoreConflictError(RuntimeError):
    """The same users kept changing under us for MAX_ATTEMPTS commits (the job fails and is retried)."""


@dataclass(frozen=True)
class Ack:
    """Ingest entries to acknowledge and delete in the same commit as the state they produced: entries of the
    ingest stream of `into` (the partition drained), whose users are all of that partition."""

    ids: Sequence[bytes | str]
    into: Layout = UNPARTITIONED
    group: str = keys.INGEST_GROUP

    @property
    def stream(self) -> str:
        return self.into.ingest_stream

    @property
    def users_prefix(self) -> str:  # + entry id: its users record, deleted with it
        return self.into.ingest_users_prefix


@dataclass(frozen=True)
class BatchResult:
    events: tuple[EmittedEvent, ...]  # in observation order
    outcomes: tuple[tuple[str, Outcome], ...]  # (observation kind, outcome), in observation order
    conflicts: int  # commits refused because another worker changed one of our users first
    states: Mapping[str, UserState] = field(default_factory=dict)  # the batch's users, as committed
    outboxes: tuple[Outbox, ...] = ()  # the outboxes that received events (to kick their drains)
    state_lost: int = 0  # commits refused because the epoch marker was gone or replaced (state lost)


@dataclass
class _UserRun:
    """One user's part of a batch: what was read, and the result of applying its observations to it."""

    old: bytes | None
    indexes: list[int]
    new: bytes | None = None  # None: delete the key
    expires: bool = False  # no live device, only memory (tombstones, handled actions): keep it for a TTL
    changed: bool = False
    state: UserState = field(default_factory=UserState)  # after the observations
    events: list[tuple[int, EmittedEvent]] = field(default_factory=list)
    outcomes: list[tuple[int, Outcome]] = field(default_factory=list)


class Store:
    """Applies batches of observations; safe to use from any number of processes at once."""

    def __init__(self, connection: redis.Redis, downstream_urls: Sequence[str] = (), *,  # fixed outboxes (tests)
                 events_maxlen: int = keys.EVENTS_STREAM_MAXLEN,
                 tombstone_ttl_ms: int = TOMBSTONE_TTL_MS, config: CoreConfig = DEFAULT_CONFIG,
                 clock_ms: Callable[[], int] = _now_ms, partitions: int = 1) -> None:
        self._connection = connection
        self._fixed = tuple(downstream_urls)  # besides the subscriptions (benchmarks, tests); never both for a URL
        self._partitions = partitions
        self._layouts = layouts(partitions)
        self._outboxes = [[into.outbox(url) for url in downstream_urls] for into in self._layouts]
        self._maxlen = events_maxlen
        self._tombstone_ttl_ms = tombstone_ttl_ms
        # The core's rules; decoders feeding this store use the same. Per partition, once its epoch is read, with
        # that epoch's sequence base (`configs`); `config` is partition 0's.
        self.config = config
        self._configs = [config] * partitions
        self._commit = connection.register_script(COMMIT_LUA)  # computes the SHA only; no I/O
        self._clock_ms = clock_ms  # only to date a new epoch marker
        self._epochs: list[marker.Epoch | None] = [None] * partitions  # the epoch each partition commits under
        # Called once a lost state is detected, before the batch is applied again: the worker restores what it
        # keeps in Redis from its settings (DOWNSTREAM_WEBHOOK_URLS' subscriptions) so the batch reaches them.
        self.on_state_lost: Callable[[], object] | None = None

    @classmethod
    def from_settings(cls, connection: redis.Redis, settings: Settings) -> Store:
        config = CoreConfig(action_memory_seconds=settings.core.action_memory_seconds,
                            max_clock_skew_seconds=settings.core.max_clock_skew_seconds)
        ttl_ms = max(TOMBSTONE_TTL_MS, 1000 * config.action_memory_seconds)
        return cls(connection, events_maxlen=settings.delivery.events_stream_maxlen, tombstone_ttl_ms=ttl_ms,
                   config=config, partitions=settings.process.partitions)

    @property
    def partitions(self) -> int:
        return self._partitions

    def load(self, user_id: str) -> UserState:
        into = self._layouts[partition_of(user_id, self._partitions)]
        raw = self._connection.get(into.user_state_key(user_id))
        return decode_state(_as_bytes(raw))

    def epoch(self, partition: int = 0) -> marker.Epoch:
        """The epoch this store commits under in `partition` (read, or created, on first use)."""
        current = self._epochs[partition]
        if current is not None:
            return current
        current = marker.ensure(self._connection, self._clock_ms(), into=self._layouts[partition])
        self._adopt(partition, current)
        if current.needs_reconcile:  # lost before this process started, and not reconciled since
            log.error("redis.state_lost_unreconciled", epoch=current.id, started_at_ms=current.started_at_ms,
                      partition=partition, hint="run `plugwatch enode reconcile`")
        return current

    def apply_batch(self, observations: Sequence[Observation], ack: Ack | None = None) -> BatchResult:
        """Apply `observations` in order and commit; return the events emitted (none twice, ever).

        With partitions, each partition's users are committed on their own (one Lua call, one hash slot each),
        the acknowledged entries' partition (`ack.into`) last, with the acknowledgement."""
        if self._partitions == 1:
            return self._apply_partition(0, observations, _indexes(observations), ack)
        by_partition: dict[int, list[Observation]] = {}
        for observation in observations:
            by_partition.setdefault(partition_of(observation.user_id, self._partitions), []).append(observation)
        acked = ack.into.partition if ack is not None else None
        if acked is not None:
            by_partition.setdefault(acked, [])
        parts = {partition: self._apply_partition(partition, part, _indexes(part), ack if partition == acked else None)
                 for partition, part in sorted(by_partition.items(), key=lambda item: item[0] == acked)}
        return self._merged(observations, parts)

    def _merged(self, observations: Sequence[Observation], parts: dict[int, BatchResult]) -> BatchResult:
        """One result of a batch committed partition by partition: its outcomes in observation order, and its
        events partition by partition (each vehicle's are all in one partition, in order)."""
        outcomes = {partition: iter(part.outcomes) for partition, part in parts.items()}
        return BatchResult(
            events=tuple(event for part in parts.values() for event in part.events),
            outcomes=tuple(next(outcomes[partition_of(observation.user_id, self._partitions)])
                           for observation in observations),
            conflicts=sum(part.conflicts for part in parts.values()),
            states={user: state for part in parts.values() for user, state in part.states.items()},
            outboxes=tuple(box for part in parts.values() for box in part.outboxes),
            state_lost=sum(part.state_lost for part in parts.values()),
        )

    def _apply_partition(self, partition: int, observations: Sequence[Observation],
                         indexes: dict[str, list[int]], ack: Ack | None) -> BatchResult:
        self.epoch(partition)
        runs = self._read(partition, observations, indexes)
        lost = 0
        for conflicts in range(MAX_ATTEMPTS):
            conflicting, reached = self._try_commit(partition, runs, ack)
            if conflicting is None:
                lost += 1
                self._state_lost(partition)
                runs = self._read(partition, observations, indexes)
            elif not conflicting:
                return dataclasses.replace(_result(observations, runs, conflicts - lost, lost), outboxes=reached)
            else:
                runs.update(self._read(partition, observations, {user: runs[user].indexes for user in conflicting}))
        raise StoreConflictError(f"users kept changing during {MAX_ATTEMPTS} commits")

    def _state_lost(self, partition: int) -> None:
        """The marker we committed under is gone or replaced: adopt the current one (or create it)."""
        previous = self.epoch(partition)
        self._adopt(partition, marker.ensure(self._connection, self._clock_ms(), previous=previous.id,
                                             into=self._layouts[partition]))
        current = self.epoch(partition)
        log.error("redis.state_lost", epoch=current.id, previous=previous.id, began=current.began,
                  partition=partition, hint="Redis lost plugwatch's state; run `plugwatch enode reconcile`")
        if self.on_state_lost is not None:
            self.on_state_lost()

    def _adopt(self, partition: int, current: marker.Epoch) -> None:
        self._epochs[partition] = current
        self._configs[partition] = replace(self._configs[partition], sequence_base=current.sequence_base,
                                           announce_first_status=current.lost)
        if partition == 0:
            self.config = self._configs[0]

    def _read(self, partition: int, observations: Sequence[Observation],
              indexes: dict[str, list[int]]) -> dict[str, _UserRun]:
        users = list(indexes)
        into, config = self._layouts[partition], self._configs[partition]
        values = self._connection.mget([into.user_state_key(user) for user in users]) if users else []
        return {user: _run(_as_bytes(value), indexes[user], observations, config)
                for user, value in zip(users, values, strict=True)}

    def _try_commit(self, partition: int, runs: dict[str, _UserRun],
                    ack: Ack | None) -> tuple[list[str] | None, tuple[Outbox, ...]]:
        """One COMMIT_LUA call; return the users whose stored value no longer matches what we read (None: the
        epoch marker is not ours any more, nothing was written), and (once committed) the outboxes that
        received events."""
        changed = [user for user, run in runs.items() if run.changed]
        events = sorted((event for user in changed for event in runs[user].events), key=lambda pair: pair[0])
        ack_ids = list(ack.ids) if ack is not None else []
        if not changed and not ack_ids:
            return [], ()
        into, outboxes = self._layouts[partition], self._outboxes[partition]
        args: list[bytes | str | int] = [len(changed), len(outboxes), len(events), len(ack_ids),
                                         self._maxlen, ack.group if ack is not None else "", self._tombstone_ttl_ms,
                                         self.epoch(partition).id]
        for user in changed:
            run = runs[user]
            new_flag = "0" if run.new is None else "2" if run.expires else "1"
            args += ["0" if run.old is None else "1", run.old or b"", new_flag, run.new or b""]
        args += [event.to_json() for _, event in events]
        args += [event.type.value for _, event in events]
        args += ack_ids
        args.append(ack.users_prefix if ack is not None else "")
        script_keys = [into.user_state_key(user) for user in changed]
        script_keys += [into.events_stream, *outboxes, into.ingest_stream, into.routes, into.epoch]
        reply = self._commit(keys=script_keys, args=args)
        if reply == _EPOCH_CHANGED:
            return None, ()
        if reply and reply[0] == b"ok":
            reached = (url.decode() for url in reply[1:])
            return [], tuple(Outbox(url, into) for url in (*self._fixed, *sorted(reached))) if events else ()
        return [changed[int(index)] for index in reply], ()


def _indexes(observations: Sequence[Observation]) -> dict[str, list[int]]:
    indexes: dict[str, list[int]] = {}
    for index, observation in enumerate(observations):
        indexes.setdefault(observation.user_id, []).append(index)
    return indexes


def _run(old: bytes | None, indexes: list[int], observations: Sequence[Observation],
         config: CoreConfig) -> _UserRun:
    run = _UserRun(old=old, indexes=indexes)
    state: UserState = decode_state(old)
    outcomes, events = run.outcomes, run.events
    for index in indexes:
        applied = apply(state, observations[index], config)
        state = applied.state
        outcomes.append((index, applied.outcome))
        if applied.events:  # most observations emit nothing: no generator, no extend
            events.extend([(index, event) for event in applied.events])
    run.state = state
    run.expires = state.is_empty() and state != _BLANK  # no devices, but tombstones or handled actions
    run.new = None if state.is_empty() and not run.expires else encode_state(state)
    run.changed = run.new != old or bool(run.events)  # an emitted event is always committed
    return run


def _result(observations: Sequence[Observation], runs: dict[str, _UserRun], conflicts: int,
            state_lost: int) -> BatchResult:
    outcomes: list[Outcome | None] = [None] * len(observations)
    events: list[tuple[int, EmittedEvent]] = []
    for run in runs.values():
        for index, outcome in run.outcomes:
            outcomes[index] = outcome
        if run.changed:
            events.extend(run.events)
    events.sort(key=lambda pair: pair[0])
    return BatchResult(
        events=tuple(event for _, event in events),
        outcomes=tuple((observation.kind, outcome) for observation, outcome
                       in zip(observations, outcomes, strict=True) if outcome is not None),
        conflicts=conflicts,
        states={user: run.state for user, run in runs.items()},
        state_lost=state_lost,
    )


def _as_bytes(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    raise TypeError("the store needs a Redis client without decode_responses")
