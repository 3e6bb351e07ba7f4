"""The ingest protocol: how the receiver puts a delivery into Redis for the worker. Classify it, then dedupe +
store it in ONE Lua call, which also arms a drain job (`plugwatch.ingest_arming`).

    classify(body) -> Batch                pure: how many events, enqueue? quarantine why? heartbeat?
                                           (classify_quickly, else classify_slowly)
    script_call(delivery, ...) -> keys, args   for the INGEST_LUA script (register it once per client)
    IngestResult(reply)                    what the script did

The script sets the dedupe mark and appends the delivery to the ingest stream (or the quarantine stream, or
only the heartbeat hash; odd system events get their own quarantine entries beside it) atomically, so a crash
or a Redis error can never leave a delivery marked as seen but not stored. The mark is a digest of (delivery
id, the body's verified signature) in a small time-bucketed hash (`plugwatch.dedupe_marks`): the same id with
the same body is a duplicate, the same id with another body is new input (Enode does not promise an id is
never reused) and is stored. The previous version's mark (`keys.dedupe_key`: the body's digest, or `1` from
before marks held digests) still counts as seen until it expires; the script is given the body's digest to
compare with only when it has answered `legacy_mark` (an old mark exists: nothing written, call again), so the
common case hashes the body only for its signature. It then tries `SET plugwatch:ingest:armed 1 NX PX
<ARMED_TTL_MS>`; only the caller that wins that SET enqueues the RQ drain job
(`ingest_arming.enqueue_after_arming`). The worker reads what the script wrote: an ingest-stream entry is `d`
(delivery id), `b` (raw body), `t` (received at, unix ms), and `q` (the quarantine entry) on replays.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import hiredis
import msgspec
import orjson

from plugwatch import dedupe_marks, jsonarray
from plugwatch.ingest_arming import ARMED_TTL_MS
from plugwatch.partitions import UNPARTITIONED, Layout, partition_of

DEFAULT_BUCKET_SECONDS = 24 * 3600  # PLUGWATCH_DEDUPE_BUCKET_SECONDS
KNOWN_VERSIONS = frozenset({"2024-10-01"})
HEARTBEAT_EVENT = "system:heartbeat"
TEST_EVENT = "enode:webhook:test"


class QuarantineReason(enum.StrEnum):
    """Why the receiver quarantined a whole delivery (the first three) or one system event of it."""

    INVALID_JSON = "invalid_json"
    NOT_AN_ARRAY = "not_an_array"
    EMPTY_BATCH = "empty_batch"
    UNKNOWN_VERSION = "unknown_version"  # a system event of an API version plugwatch does not read
    INVALID_HEARTBEAT = "invalid_heartbeat"  # pendingEvents absent, not a number, or below 0


@dataclass(frozen=True)
class Heartbeat:
    pending_events: str  # the JSON number exactly as Enode wrote it (`0`, `0.5`, `1E3`): the spec's `number`
    created_at: str


@dataclass(frozen=True)
class Batch:
    """What an authentic body holds, as far as ingest cares."""

    events: int
    enqueue: bool = False  # holds events for the worker
    quarantine: QuarantineReason | None = None  # the whole delivery (then nothing else happens)
    heartbeat: Heartbeat | None = None  # the last valid system:heartbeat in the batch
    quarantined_events: tuple[tuple[int, QuarantineReason], ...] = ()  # (event_index, reason) of odd system events


class _Envelope(msgspec.Struct):
    """The fields ingest looks at; everything else in an event is skipped without being built."""

    event: Any = None
    version: Any = None
    pendingEvents: msgspec.Raw = msgspec.Raw(b"")  # kept as its JSON text
    createdAt: Any = None


_ENVELOPES = msgspec.json.Decoder(list[_Envelope])
_ENVELOPE = msgspec.json.Decoder(_Envelope)
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_NOT_AN_ENVELOPE = _Envelope()  # an element the receiver cannot read as an event: the worker decides about it
SYSTEM_EVENTS = (HEARTBEAT_EVENT, TEST_EVENT)


def classify(body: bytes) -> Batch:
    """Decide what to do with an authentic body; never raises.

    Only a body that is not a JSON array of at least one element is quarantined whole. Of its events the
    receiver judges only the system events (which the worker ignores): an odd one is quarantined alone,
    by its index. Every other event, odd or not, goes to the worker, which quarantines what it cannot
    decode event by event.
    """
    batch = classify_quickly(body)
    return classify_slowly(body) if batch is None else batch


def classify_quickly(body: bytes) -> Batch | None:
    """The common case: one msgspec decode that skips everything but the envelopes (~1 us per event).
    None for a body it refuses (an element that is no object, deep nesting, invalid JSON or UTF-8)."""
    try:
        return _batch(_ENVELOPES.decode(body))
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):  # msgspec raises the last for bad UTF-8
        return None


def classify_slowly(body: bytes) -> Batch:
    """`classify` for any body: split into its elements (at any depth), each read on its own. Up to a few
    hundred ms for a pathological 1 MB body: the receiver runs it off its event loop."""
    raw_events = jsonarray.elements(body)
    if raw_events is None:
        return Batch(events=0, quarantine=_not_an_array_reason(body))
    return _batch([_envelope(raw) for raw in raw_events])


@functools.lru_cache(maxsize=256)
def _events_only(events: int) -> Batch:
    """A batch of `events` events for the worker and no system event (one instance per count: it is frozen)."""
    return Batch(events=events, enqueue=True)


def _not_an_array_reason(body: bytes) -> QuarantineReason:
    try:
        orjson.loads(body)
    except (orjson.JSONDecodeError, RecursionError):
        return QuarantineReason.INVALID_JSON
    return QuarantineReason.NOT_AN_ARRAY


def _envelope(raw: bytes) -> _Envelope:
    try:
        return _ENVELOPE.decode(raw)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return _NOT_AN_ENVELOPE


def _batch(envelopes: list[_Envelope]) -> Batch:
    if not envelopes:
        return Batch(events=0, quarantine=QuarantineReason.EMPTY_BATCH)
    if all(envelope.event not in SYSTEM_EVENTS for envelope in envelopes):  # the common case
        return _events_only(len(envelopes))
    enqueue, heartbeat, quarantined = False, None, []
    for index, envelope in enumerate(envelopes):
        if envelope.event not in SYSTEM_EVENTS:
            enqueue = True
            continue
        reason = _system_event_problem(envelope)
        if reason is not None:
            quarantined.append((index, reason))
        elif envelope.event == HEARTBEAT_EVENT:
            heartbeat = Heartbeat(bytes(envelope.pendingEvents).decode(), _text(envelope.createdAt))
    return Batch(events=len(envelopes), enqueue=enqueue, heartbeat=heartbeat, quarantined_events=tuple(quarantined))


def envelope_problem(event: object) -> str | None:
    """Why the worker quarantines this element of a delivery before decoding it, if it does: no object, no
    event name, or an API version plugwatch does not read. System events are the receiver's (None)."""
    if not isinstance(event, dict):
        return "event is not a JSON object"
    name = event.get("event")
    if not isinstance(name, str):
        return "event has no string 'event' name"
    version = event.get("version")
    if name not in SYSTEM_EVENTS and not (isinstance(version, str) and version in KNOWN_VERSIONS):
        return f"version is missing or not one plugwatch reads ({', '.join(sorted(KNOWN_VERSIONS))})"
    return None


def _system_event_problem(envelope: _Envelope) -> QuarantineReason | None:
    if not isinstance(envelope.version, str) or envelope.version not in KNOWN_VERSIONS:
        return QuarantineReason.UNKNOWN_VERSION
    if envelope.event == HEARTBEAT_EVENT and not _is_pending_events(bytes(envelope.pendingEvents)):
        return QuarantineReason.INVALID_HEARTBEAT
    return None


def _is_pending_events(raw: bytes) -> bool:
    """A JSON number >= 0, as SystemHeartbeat.pendingEvents is typed (`-0` is 0; `1e400` is a number too)."""
    return _NUMBER.fullmatch(raw) is not None and not (raw.startswith(b"-") and float(raw) != 0)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class IngestResult(enum.StrEnum):
    """The reply of INGEST_LUA."""

    DUPLICATE = "duplicate"  # the delivery id was seen within the dedupe window: nothing written
    ACCEPTED = "accepted"  # appended to the ingest stream; a drain job is already armed
    ARMED = "armed"  # appended, and this caller armed the drain: it must enqueue the RQ job
    QUARANTINED = "quarantined"  # appended to the quarantine stream
    RECORDED = "recorded"  # system events only (recorded or quarantined one by one): nothing to process
    LEGACY_MARK = "legacy_mark"  # nothing written: a previous version's mark exists; call again with its digest


# The dedupe part (plugwatch.dedupe_marks describes the layout). KEYS[1] is the previous version's mark of the
# delivery id and ARGV[12] the body's digest to compare it with, or '' when not computed (the common case: no
# such mark; if there is one, the caller is asked for the digest). KEYS[6] is the marks hash and the prefix of
# the mark hashes; ARGV[3] the receipt time (ms), [4] the window, [13] the mark's hash, [14] its field,
# [15] the bucket width, [16] a shard's cap, [17] the marks per shard a new bucket is sized for.
_DEDUPE_LUA = """
local seen = redis.call('GET', KEYS[1])
if seen then
  if seen == ARGV[12] or seen == '1' then return 'duplicate' end
  if ARGV[12] == '' then return 'legacy_mark' end
end
local now, window, width = tonumber(ARGV[3]) / 1000, tonumber(ARGV[4]), tonumber(ARGV[15])
local hash, mark, cap, target = tonumber(ARGV[13]), ARGV[14], tonumber(ARGV[16]), tonumber(ARGV[17])
local bucket, oldest = math.floor(now / width), math.floor((now - window) / width)
local function shard(b, bits) return string.format('%s:%d:%d:%d', KEYS[6], b, bits, hash % 2 ^ bits) end
local function bits_for(marks)
  local bits = 0
  while marks > target * 2 ^ bits and bits < 24 do bits = bits + 1 end  -- 24: dedupe_marks.MAX_SHARD_BITS
  return bits
end
local names = {}
for b = oldest, bucket do names[#names + 1] = b end
names[#names + 1] = 'n' .. (bucket - 1)
local found = redis.call('HMGET', KEYS[6], unpack(names))
local current = bucket - oldest + 1
for i = 1, current do
  -- (the current bucket's newest generation is checked by the HSET that writes the mark, below)
  local older = found[i]
  if older and i == current then older = string.match(older, '^(.*) %d+$') end
  if older then
    for bits in string.gmatch(older, '%d+') do
      if redis.call('HEXISTS', shard(oldest + i - 1, tonumber(bits)), mark) == 1 then return 'duplicate' end
    end
  end
end
local ttl = math.ceil((bucket + 1) * width + window - now)
local gens, bits = found[current], nil
if gens then
  bits = tonumber(string.match(gens, '(%d+)$'))
else
  bits = bits_for(tonumber(found[#found]) or 0)
  for _, name in ipairs(redis.call('HKEYS', KEYS[6])) do
    local b = tonumber(string.match(name, '%-?%d+'))
    if b and b < oldest then redis.call('HDEL', KEYS[6], name) end
  end
  gens = tostring(bits)
  redis.call('HSET', KEYS[6], bucket, gens, 'f' .. bucket, ARGV[3])  -- f: the bucket's first mark (ms)
  redis.call('EXPIRE', KEYS[6], ttl)
end
local key = shard(bucket, bits)
local size = redis.call('HLEN', key)
if bits < 24 and size >= cap then
  if redis.call('HEXISTS', key, mark) == 1 then return 'duplicate' end
  -- the rest of the bucket at the rate since its first mark (not since its start: a bucket that began
  -- receiving late, as after a first start, would be sized for a fraction of its rate, a bit at a time)
  local seen = redis.call('HMGET', KEYS[6], 'n' .. bucket, 'f' .. bucket)
  local since = math.max(bucket * width, (tonumber(seen[2]) or 0) / 1000)
  local more = (tonumber(seen[1]) or 0) * ((bucket + 1) * width - now) / math.max(now - since, 1)
  bits = math.min(math.max(bits_for(more), bits + 1), bits + 2, 24)  -- at most 4x: a short burst is no rate
  redis.call('HSET', KEYS[6], bucket, gens .. ' ' .. bits)
  key, size = shard(bucket, bits), 0  -- a generation has more bits than every one before it: a new key
end
-- A mark already there is a duplicate (HSET adds no field; nothing else is written). A shard's keys all
-- expire `window` after the end of their bucket: the TTL is set once, when the first mark creates the key.
if redis.call('HSET', key, mark, '') == 0 then return 'duplicate' end
if size == 0 then redis.call('EXPIRE', key, ttl) end
redis.call('HINCRBY', KEYS[6], 'n' .. bucket, 1)
"""

INGEST_LUA = _DEDUPE_LUA + """
if ARGV[6] ~= '' then
  redis.call('XADD', KEYS[3], '*', 'd', ARGV[1], 'b', ARGV[2], 'reason', ARGV[6], 'at', ARGV[7])
  return 'quarantined'
end
for i = 18, #ARGV, 4 do
  redis.call('XADD', KEYS[3], '*', 'd', ARGV[1], 'b', ARGV[i + 2], 'reason', ARGV[i + 1], 'at', ARGV[7],
             'event_index', ARGV[i], 'alone', ARGV[i + 3])
end
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[4], 'at', ARGV[11], 'pending_events', ARGV[8], 'created_at', ARGV[9])
end
if ARGV[5] ~= '1' then return 'recorded' end
redis.call('XADD', KEYS[2], '*', 'd', ARGV[1], 'b', ARGV[2], 't', ARGV[3])
if redis.call('SET', KEYS[5], '1', 'NX', 'PX', ARGV[10]) then return 'armed' end
return 'accepted'
"""


class _Owner(msgspec.Struct):
    id: Any = None
    userId: Any = None


class _Routing(msgspec.Struct):
    """The fields that name the user an event concerns (each read only if needed)."""

    event: Any = None
    user: msgspec.Raw = msgspec.Raw(b"")
    vehicle: msgspec.Raw = msgspec.Raw(b"")
    charger: msgspec.Raw = msgspec.Raw(b"")
    vendorAction: msgspec.Raw = msgspec.Raw(b"")
    chargeAction: msgspec.Raw = msgspec.Raw(b"")


_ROUTING = msgspec.json.Decoder(_Routing)
_OWNER = msgspec.json.Decoder(_Owner)
_DECODE_ERRORS = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)


def user_of(event: bytes) -> str | None:
    """The Enode user one raw event concerns, found where the worker's decoder finds it (`user.id`, else the
    `userId` of the event's vehicle, charger or action); None for a system event or an element without one."""
    try:
        routing = _ROUTING.decode(event)
    except _DECODE_ERRORS:
        return None
    owner = _owner(routing.user)
    if owner is not None and isinstance(owner.id, str) and owner.id:
        return owner.id
    name = routing.event if isinstance(routing.event, str) else ""
    subject = name.split(":")[1] if name.count(":") == 2 else ""
    owner = (_owner(routing.vehicle) if subject == "vehicle" else _owner(routing.charger) if subject == "charger"
             else _owner(routing.vendorAction) or _owner(routing.chargeAction))
    if owner is not None and isinstance(owner.userId, str) and owner.userId:
        return owner.userId
    return None


def _owner(raw: msgspec.Raw) -> _Owner | None:
    """The object at a field, or None where the decoder sees none: absent, null, empty or not an object."""
    if not raw:
        return None
    try:
        owner = _OWNER.decode(raw)
    except _DECODE_ERRORS:
        return None
    return owner if owner.id is not None or owner.userId is not None else None


def split(body: bytes, count: int) -> list[tuple[int, bytes]]:
    """A delivery cut into one part per partition its events concern (`plugwatch.partitions`), in partition
    order: each part a JSON array of its events, byte for byte and in array order. The whole body as one part
    when its events are all of one partition (their users'), or it is no array of events (partition 0, which
    also takes system events and events naming no user)."""
    raw_events = jsonarray.elements(body) if count > 1 else None
    if not raw_events:
        return [(0, body)]
    parts: dict[int, list[bytes]] = {}
    for event in raw_events:
        user = user_of(event)
        parts.setdefault(0 if user is None else partition_of(user, count), []).append(event)
    if len(parts) == 1:
        return [(next(iter(parts)), body)]
    return [(partition, b"[" + b",".join(events) + b"]") for partition, events in sorted(parts.items())]


def iso_time(unix_seconds: float) -> str:
    """`2025-03-14T18:30:00.000Z`: the time format of quarantine entries."""
    return datetime.fromtimestamp(unix_seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")




def script_call(
    delivery_id: str, body: bytes, batch: Batch, *, signature: bytes, now: float, dedupe_ttl_seconds: int,
    dedupe_bucket_seconds: int = DEFAULT_BUCKET_SECONDS, shard_cap: int = dedupe_marks.DEFAULT_CAP,
    legacy_digest: bool = False, into: Layout = UNPARTITIONED,
) -> tuple[list[str], list[str | bytes | int]]:
    """KEYS and ARGV for INGEST_LUA (`signature`: the body's verified HMAC-SHA1, of which the dedupe mark is
    made, `dedupe_marks.mark_of`; `now` in unix seconds; `shard_cap`: `dedupe_marks.cap_from_config`).
    `legacy_digest`: with the body's digest for a previous version's mark, which costs a hash of the body;
    only needed after the script answered LEGACY_MARK (then call it again with the same `now`). `into`: the
    partition the delivery (or its part, `split`) goes to; every key is that partition's (one hash slot)."""
    pending, created_at = ("", "") if batch.heartbeat is None else (
        batch.heartbeat.pending_events, batch.heartbeat.created_at)
    script_keys = [into.dedupe_key(delivery_id), into.ingest_stream, into.quarantine_stream,
                   into.heartbeat, into.ingest_armed, into.dedupe_marks]
    quarantining = batch.quarantine is not None or bool(batch.quarantined_events)
    mark = dedupe_marks.mark_of(delivery_id, signature)
    args: list[str | bytes | int] = [
        delivery_id, body, int(now * 1000), dedupe_ttl_seconds, "1" if batch.enqueue else "0",
        batch.quarantine or "", iso_time(now) if quarantining else "",
        pending, created_at, ARMED_TTL_MS, f"{now:.3f}", body_digest(body) if legacy_digest else "",
        mark.hash, mark.field, min(dedupe_bucket_seconds, dedupe_ttl_seconds), shard_cap,
        dedupe_marks.target_for(shard_cap),
    ]
    odd = batch.quarantined_events  # each entry keeps its event alone (see plugwatch.quarantine)
    if odd:
        for (index, reason), (event, alone) in zip(odd, jsonarray.alone(body, [i for i, _ in odd]), strict=True):
            args += [index, reason, event, int(alone)]
    return script_keys, args


def body_digest(body: bytes) -> bytes:
    """What the previous version's dedupe mark (`keys.dedupe_key`) held: 64 bits of BLAKE2b of the body."""
    return hashlib.blake2b(body, digest_size=8).digest()


_RESULTS: dict[bytes | str, IngestResult] = {form: result for result in IngestResult
                                             for form in (result.value, result.value.encode())}


def result_of(reply: bytes | str) -> IngestResult:
    """The script's reply as an IngestResult (a dict look-up: the enum's own call costs 10 times as much)."""
    found = _RESULTS.get(reply)
    if found is None:
        raise ValueError(f"not a reply of INGEST_LUA: {reply!r}")
    return found


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


class PackedCalls:
    """INGEST_LUA's EVALSHA for one partition (`into`), packed in Redis' protocol (RESP) as hiredis packs
    `("EVALSHA", sha, 6, *script_call(...))`, byte for byte, at a fraction of its cost: what is the same in
    every call (the command, the sha, the partition's keys, the window, the TTLs) is packed once here, and a
    delivery of events only (the common case) adds its id, body, receipt time and mark. Any other delivery
    (a heartbeat, something quarantined, a previous version's mark to look for) is packed by hiredis from
    `script_call`. The receiver's hot path (issue 17): 1.8 us where script_call and hiredis take ~12."""

    def __init__(self, sha: str, into: Layout, *, dedupe_ttl_seconds: int,
                 dedupe_bucket_seconds: int = DEFAULT_BUCKET_SECONDS) -> None:
        self._sha = sha
        self._into = into
        self._ttl = dedupe_ttl_seconds
        self._bucket = dedupe_bucket_seconds
        script_keys = [into.ingest_stream, into.quarantine_stream, into.heartbeat, into.ingest_armed,
                       into.dedupe_marks]
        self._head = b"*%d\r\n" % (3 + 6 + 17) + b"".join(
            _bulk(part.encode()) for part in ("EVALSHA", sha, "6"))
        self._dedupe_prefix = into.dedupe_prefix.encode()
        self._keys = b"".join(_bulk(key.encode()) for key in script_keys)
        self._window = _bulk(b"%d" % dedupe_ttl_seconds) + _bulk(b"1") + _bulk(b"") * 4 + _bulk(b"%d" % ARMED_TTL_MS)
        self._tail: dict[int, bytes] = {}  # per shard cap: the bucket width, the cap, the target

    def pack(self, delivery_id: str, body: bytes, batch: Batch, *, signature: bytes, now: float,
             shard_cap: int = dedupe_marks.DEFAULT_CAP, legacy_digest: bool = False) -> bytes:
        if legacy_digest or not batch.enqueue or batch.heartbeat is not None or batch.quarantine is not None or (
                batch.quarantined_events):
            script_keys, args = script_call(delivery_id, body, batch, signature=signature, now=now,
                                            dedupe_ttl_seconds=self._ttl, dedupe_bucket_seconds=self._bucket,
                                            shard_cap=shard_cap, legacy_digest=legacy_digest, into=self._into)
            return hiredis.pack_command(  # type: ignore[no-any-return]
                ("EVALSHA", self._sha, len(script_keys), *script_keys, *args))  # type: ignore[arg-type]
        tail = self._tail.get(shard_cap)
        if tail is None:
            tail = self._tail[shard_cap] = b"".join(_bulk(b"%d" % value) for value in (
                min(self._bucket, self._ttl), shard_cap, dedupe_marks.target_for(shard_cap)))
        identity = delivery_id.encode()
        mark = dedupe_marks.mark_of(delivery_id, signature)
        return b"".join((
            self._head, b"$%d\r\n%b%b\r\n" % (len(self._dedupe_prefix) + len(identity), self._dedupe_prefix, identity),
            self._keys, _bulk(identity), b"$%d\r\n" % len(body), body, b"\r\n%b" % _bulk(b"%d" % int(now * 1000)),
            self._window, _bulk(b"%.3f" % now), _bulk(b""), _bulk(b"%d" % mark.hash), _bulk(mark.field), tail))
