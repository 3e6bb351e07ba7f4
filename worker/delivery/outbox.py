"""An outbox stream (a URL's, in one partition: `plugwatch.outboxes.Outbox`), read through the consumer group
`keys.OUTBOX_GROUP` by the one consumer `keys.OUTBOX_CONSUMER` (the lease guarantees one drainer at a time).

Entries a drainer read but did not finish (it was killed, or paused mid-batch) stay pending in the group
and are read again first, so order is kept across crashes.  Entries finish out of stream order (several
are in flight at once, see `flight`); the pending ones are still read back in stream order.  A finished
entry (delivered or dead-lettered) is XACKed and XDELed in one transaction, so the stream's length is the
URL's backlog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from plugwatch import keys
from plugwatch.outboxes import Outbox


@dataclass(frozen=True)
class OutboxEntry:
    entry_id: str
    body: bytes | None  # None: the entry was deleted while pending (nothing left to deliver)

    @property
    def enqueued_at(self) -> float:
        """Unix seconds when the worker added the entry (the stream id's time part)."""
        return int(self.entry_id.split("-", 1)[0]) / 1000


def ensure_group(connection: redis.Redis, box: Outbox) -> None:
    try:
        connection.xgroup_create(box.stream, keys.OUTBOX_GROUP, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def read_batch(connection: redis.Redis, box: Outbox, count: int) -> list[OutboxEntry]:
    """The oldest unfinished entries: pending ones (read before, never finished) first, then new ones."""
    return read_pending(connection, box, count) or read_new(connection, box, count)


def read_pending(connection: redis.Redis, box: Outbox, count: int, after: str = "0") -> list[OutboxEntry]:
    """Entries read before and not finished yet, oldest first, after the entry id `after`."""
    return _read(connection, box, after, count)


def read_new(connection: redis.Redis, box: Outbox, count: int) -> list[OutboxEntry]:
    """Entries never read before, oldest first (they are pending from now on)."""
    return _read(connection, box, ">", count)


def _read(connection: redis.Redis, box: Outbox, start: str, count: int) -> list[OutboxEntry]:
    reply: Any = connection.xreadgroup(keys.OUTBOX_GROUP, keys.OUTBOX_CONSUMER, {box.stream: start},
                                       count=count)
    return [_entry(entry_id, fields) for _, items in reply or [] for entry_id, fields in items]


def wait_for_new(connection: redis.Redis, box: Outbox, count: int, block_ms: int) -> bool:
    """Block up to `block_ms` for entries added after everything read so far; True if some arrived.

    They are read (pending) from then on, so the next `read_batch` returns them first, in order.
    """
    stream = box.stream
    reply: Any = connection.xreadgroup(keys.OUTBOX_GROUP, keys.OUTBOX_CONSUMER, {stream: ">"}, count=count,
                                       block=block_ms)
    return any(items for _, items in reply or [])


def finish(connection: redis.Redis, box: Outbox, *entry_ids: str) -> None:
    """The entries were delivered or dead-lettered: remove them from the group and the stream, atomically.

    Entries may finish in any order (XACK is per entry): what a later drainer reads is exactly the
    unfinished ones, oldest first."""
    stream = box.stream
    pipe = connection.pipeline(transaction=True)
    pipe.xack(stream, keys.OUTBOX_GROUP, *entry_ids)
    pipe.xdel(stream, *entry_ids)
    pipe.execute()


def expired(connection: redis.Redis, box: Outbox, enqueued_before: float, count: int) -> list[OutboxEntry]:
    """The oldest entries added before `enqueued_before` (unix seconds), read or not."""
    end = str(int(enqueued_before * 1000) - 1)  # an id without a sequence part means "any sequence"
    reply: Any = connection.xrange(box.stream, "-", end, count=count)
    return [_entry(entry_id, fields) for entry_id, fields in reply or []]


def _entry(entry_id: bytes | str, fields: dict[bytes, bytes] | None) -> OutboxEntry:
    text_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return OutboxEntry(text_id, (fields or {}).get(b"event"))
