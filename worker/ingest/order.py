"""Per-user order across drains: a user's older deliveries that another drain still holds are applied first.

    earlier(context, entries, observations) -> Earlier   what of older pending entries a batch must apply first
    mark_waited(context, entry_id) / waited(...)         an entry that failed while applied after older ones

Several drains can hold entries that are read but not committed at once: helper drains under a backlog, and a
drain whose Redis connection broke mid-batch (its entries stay pending until they are claimed, after
`PLUGWATCH_INGEST_CLAIM_IDLE_SECONDS`). A delivery read later must not be applied before an older one of the
same user: the core takes the older observation, applied second, as stale (invariant 4), and its transition
would never be emitted. The receiver acknowledged the two in that order, so plugwatch keeps it.

Before a batch is applied, ONE Lua call (`EARLIER_LUA`):
1. records the users of each of the batch's entries (`plugwatch:ingest:users:<entry id>`, with a TTL; the
   commit that acknowledges the entry deletes it);
2. walks the pending entries older than the batch's newest that are not in the batch: every entry read before
   the batch is pending until the commit that acknowledges it (XREADGROUP hands entries out in id order), so
   this is every older entry whose state change is not in Redis yet;
3. returns those that share a user with the batch, or whose users no drain recorded (its drain died before
   recording them, or runs an older version): the record only saves reading them.
The drain reads those entries (XRANGE) and applies their observations of the batch's users before its own, in
entry order. It acknowledges only its own entries: their owner (or whoever claims them) still applies them,
and what this batch applied already meets the newer state as `duplicate`/`stale`, as a redelivery does. The
compare-and-set commit makes either order of the two commits safe.

The walk is over the consumer group's pending list, which holds a few batches at any time (one per running
drain), so it costs a few µs per entry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from plugwatch import keys
from plugwatch.partitions import Layout
from worker.core import Observation
from worker.ingest.entries import Entry, decode_delivery
from worker.ingest.ports import IngestContext

# KEYS: the ingest stream. ARGV: group, users-key prefix, TTL (ms), the batch's newest entry id, n, then the n
# entry ids of the batch, then their n users (JSON arrays). Reply: the ids of the pending entries to apply first.
EARLIER_LUA = """
local group, prefix, ttl, newest, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local mine, users = {}, {}
for i = 1, n do
  local id, list = ARGV[5 + i], ARGV[5 + n + i]
  mine[id] = true
  redis.call('SET', prefix .. id, list, 'PX', ttl)
  for _, user in ipairs(cjson.decode(list)) do users[user] = true end
end
local earlier, start = {}, '-'
while true do
  local pending = redis.call('XPENDING', KEYS[1], group, start, newest, 1000)
  for _, row in ipairs(pending) do
    local id = row[1]
    if not mine[id] then
      local list = redis.call('GET', prefix .. id)
      if not list then
        earlier[#earlier + 1] = id
      else
        for _, user in ipairs(cjson.decode(list)) do
          if users[user] then
            earlier[#earlier + 1] = id
            break
          end
        end
      end
    end
  end
  if #pending < 1000 then break end
  start = '(' .. pending[#pending][1]
end
return earlier
"""

@dataclass(frozen=True)
class Earlier:
    """Observations of the batch's users from older pending entries, in entry order, and from how many."""

    observations: list[Observation]
    entries: int


NONE = Earlier([], 0)


def earlier(context: IngestContext, into: Layout, entries: Sequence[Entry],
            decoded: Sequence[Sequence[Observation]]) -> Earlier:
    """Record the users of `entries` (decoded[i] are entries[i]'s observations) and return what of older
    pending entries of the same users must be applied before them."""
    connection = context.connection
    ids = [entry_id for entry_id, _ in entries]
    lists = [orjson.dumps(sorted({observation.user_id for observation in observations}))
             for observations in decoded]
    ttl_ms = _ttl_ms(context)
    script = connection.register_script(EARLIER_LUA)  # EVALSHA; computes the SHA only, no I/O
    reply = script(keys=[into.ingest_stream],  # the newest: XREADGROUP and XAUTOCLAIM hand entries out in id order
                   args=[keys.INGEST_GROUP, into.ingest_users_prefix, ttl_ms, ids[-1], len(ids), *ids, *lists])
    if not reply:
        return NONE
    users = {observation.user_id for observations in decoded for observation in observations}
    pipe = connection.pipeline(transaction=False)
    for entry_id in reply:
        pipe.xrange(into.ingest_stream, min=entry_id, max=entry_id, count=1)
    observations: list[Observation] = []
    found = 0
    for rows in pipe.execute():
        for entry in rows:  # none if it was committed meanwhile: its state is in Redis, read by the commit
            ignored: Counter[tuple[str, str]] = Counter()  # its own drain counts and quarantines it
            shared = [observation for observation
                      in decode_delivery(connection, entry, ignored, context.store.config, quarantine=False,
                                                         into=into)
                      if observation.user_id in users]
            found += bool(shared)
            observations += shared
    return Earlier(observations, found)


def mark_waited(context: IngestContext, into: Layout, entry_id: bytes) -> None:
    """`entry_id` failed alone while applied after older pending entries: let its next claim try it once more
    even if its delivery count says poison (the older one, claimed and quarantined first, may be the cause)."""
    context.connection.set(into.ingest_waited_prefix + entry_id.decode(), "1", px=_ttl_ms(context))


def waited(context: IngestContext, into: Layout, entry_id: bytes) -> bool:
    """Was `entry_id` marked by `mark_waited` (and not asked since)? Asking clears the mark."""
    return bool(context.connection.delete(into.ingest_waited_prefix + entry_id.decode()))


def _ttl_ms(context: IngestContext) -> int:
    """How long a record lives: past several claims of a dead drain's entries (a lost one only costs a read)."""
    return max(60_000, 4 * context.options.claim_idle_ms)
