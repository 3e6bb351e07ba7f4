"""RQ job functions (enqueued by dotted path; see `plugwatch.keys`).  They only hand work on: the HTTP
happens in drainer threads, so these jobs take milliseconds and never hold the RQ worker.

- `drain_outbox(url)` on `plugwatch-delivery`: armed by `kick`/`pump`; starts (or re-runs) the URL's drainer.
- `deliver_dead_letter(url, event_json)` on `plugwatch-dead-letters`: a dead letter; re-running it (RQ
  requeue, rq-dashboard's Requeue button) puts the same event bytes back into the URL's outbox.  It fails
  again (and stays a dead letter) while the URL is disabled or no longer configured.
"""

from __future__ import annotations

from plugwatch import dead_letters as deadletters
from worker.delivery import context


def drain_outbox(url: str) -> None:
    context.current().threads.request(url)


def deliver_dead_letter(url: str, event_json: str) -> None:
    current = context.current()
    deadletters.requeue_event(current.connection, current.settings, url, event_json)
