"""Outboxes: where committed events wait for one downstream URL, one outbox per URL and partition.

    Outbox(url, into)                 .stream, .lease, .partition, .name; a drain's unit of work
    of_urls(urls, partitions)         every outbox of these URLs, partition by partition
    for_event(url, body, partitions)  the outbox an event's JSON goes back to (its userId's partition)

The commit of a partition (`worker.ingest.store`) appends an event to that partition's outbox of each URL that
subscribed to its type, in the same Lua call and hash slot as the state change (`plugwatch.partitions`). Each
outbox is drained on its own, under its own lease (`plugwatch.delivery_arming`, `worker.delivery`): a URL's
partitions are delivered in parallel, and each vehicle's events in order (they are all in one partition).
With one partition an outbox is the URL's one stream, `plugwatch:outbox:<url key>`, as it always was.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import orjson

from plugwatch import keys
from plugwatch.partitions import Layout, layout, layouts, partition_of


class Outbox(NamedTuple):
    url: str
    into: Layout

    @property
    def stream(self) -> str:
        return self.into.outbox(self.url)

    @property
    def lease(self) -> str:
        return self.into.lease(self.url)

    @property
    def partition(self) -> int:
        return self.into.partition

    @property
    def name(self) -> str:
        """For logs and thread names: the URL key, and the partition when there are several."""
        key = keys.url_key(self.url)
        return key if self.into.count == 1 else f"{key}:{self.into.partition}"


def only(url: str) -> Outbox:
    """The one outbox of `url` without partitions."""
    return Outbox(url, layout(0, 1))


def of_urls(urls: Iterable[str], partitions: int) -> list[Outbox]:
    return [Outbox(url, into) for url in urls for into in layouts(partitions)]


def for_event(url: str, body: bytes, partitions: int) -> Outbox:
    """The outbox of `url` in the partition of the event's `userId` (partition 0 for one without)."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        event = None
    user = event.get("userId") if isinstance(event, dict) else None
    return Outbox(url, layout(partition_of(user, partitions) if isinstance(user, str) else 0, partitions))
