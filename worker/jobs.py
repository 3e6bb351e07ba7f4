"""The RQ job functions, enqueued by dotted path (`plugwatch.keys`) and run with the process's one context.

- `drain_ingest(slot=0, partition=0)` on `plugwatch-ingest`: armed by the receiver, the pump or a busy drain;
  drains a partition's ingest stream (`worker.ingest.drain`).
- `drain_outbox(url, partition=0)` on `plugwatch-delivery`: armed by a kick or the pump; starts (or re-runs)
  the drainer thread of the URL's outbox in that partition, so the job takes milliseconds and never holds the
  RQ worker on HTTP.
- `deliver_dead_letter(url, event_json)` on `plugwatch-dead-letters`: a dead letter; re-running it (RQ
  requeue, rq-dashboard's Requeue button) puts the same event bytes back into the URL's outbox.  It fails
  again (and stays a dead letter) while the URL is disabled or no longer configured.

`WorkerJob`, the job class `python -m worker` runs jobs with, also runs jobs enqueued under the dotted paths
these functions had before they moved here (`MOVED`): drain jobs queued across an upgrade, and dead letters
kept for 7 days, which rq-dashboard's Requeue re-runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rq.job import Job
from rq.utils import import_attribute

from plugwatch import dead_letters, keys
from plugwatch.outboxes import Outbox
from plugwatch.partitions import layout
from worker.bootstrap import current
from worker.ingest import drain

MOVED = {
    "worker.ingest.drain_ingest": keys.DRAIN_INGEST_JOB,
    "worker.delivery.jobs.drain_outbox": keys.DRAIN_OUTBOX_JOB,
    "worker.delivery.jobs.deliver_dead_letter": keys.DEAD_LETTER_JOB,
}


class WorkerJob(Job):
    """RQ's job, resolving a dotted path of `MOVED` to where its function lives now."""

    @property
    def func(self) -> Callable[..., Any]:
        moved = MOVED.get(self.func_name or "")
        return import_attribute(moved) if moved else super().func


def drain_ingest(slot: int = 0, partition: int = 0) -> dict[str, int | bool]:
    """Drain a partition's ingest stream with this process's context (`slot` > 0: a helper drain)."""
    drained = drain.drain(current(), slot, partition)
    return {"deliveries": drained.deliveries, "events": drained.events, "emitted": drained.emitted,
            "rearmed": drained.rearmed}


def drain_outbox(url: str, partition: int = 0) -> None:
    context = current()
    context.delivery.start_here([Outbox(url, layout(partition, context.settings.process.partitions))])


def deliver_dead_letter(url: str, event_json: str) -> None:
    context = current()
    context.delivery.start_here(dead_letters.requeue_event(context.connection, context.queues, context.settings, url,
                                                                  event_json))
