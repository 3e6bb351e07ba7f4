"""The RQ job functions, enqueued by dotted path (`plugwatch.keys`) and run with the process's one context.

- `drain_ingest(slot=0)` on `plugwatch-ingest`: armed by the receiver, the pump or a busy drain; drains the
  ingest stream (`worker.ingest.drain`).
- `drain_outbox(url)` on `plugwatch-delivery`: armed by a kick or the pump; starts (or re-runs) the URL's
  drainer thread, so the job takes milliseconds and never holds the RQ worker on HTTP.
- `deliver_dead_letter(url, event_json)` on `plugwatch-dead-letters`: a dead letter; re-running it (RQ
  requeue, rq-dashboard's Requeue button) puts the same event bytes back into the URL's outbox.  It fails
  again (and stays a dead letter) while the URL is disabled or no longer configured.
"""

from __future__ import annotations

from plugwatch import dead_letters
from worker.bootstrap import current
from worker.ingest import drain


def drain_ingest(slot: int = 0) -> dict[str, int | bool]:
    """Drain the ingest stream with this process's context (`slot` > 0: a helper drain)."""
    drained = drain.drain(current(), slot)
    return {"deliveries": drained.deliveries, "events": drained.events, "emitted": drained.emitted,
            "rearmed": drained.rearmed}


def drain_outbox(url: str) -> None:
    current().delivery.start_here([url])


def deliver_dead_letter(url: str, event_json: str) -> None:
    context = current()
    context.delivery.start_here(dead_letters.requeue_event(context.connection, context.settings, url, event_json))
