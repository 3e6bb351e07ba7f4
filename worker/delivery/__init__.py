"""Downstream delivery: every emitted event reaches every downstream URL, signed, retried, dead-lettered.

Public surface for the rest of the worker:

- `kick(connection, settings, urls)` — call after committing events to the URLs' outbox streams.
- `pump(connection, settings)` — call every ~1 s from the worker's pump thread.
- `build(settings, connection=...) -> DeliveryContext`, `install(context)`, `context.close()` — the
  per-process wiring the worker bootstrap does (see `worker.delivery.context`).

How it fits together: `kick`/`pump` arm one RQ job `drain_outbox(url)` per URL (`arming`); the job hands
the URL to a drainer thread of its process (`threads`), which holds the URL's lease (`lease`) and delivers
the outbox in order (`drainer`, `sender`, `policy`), pausing the URL on retryable failures (`state`), raising
a slow URL's read timeout instead of resending to it again and again (`slowness`), and turning permanent
failures into dead letters (`deadletters`).
"""

from __future__ import annotations

from worker.delivery.arming import kick, pump
from worker.delivery.context import DeliveryContext, build, current, install

__all__ = ["DeliveryContext", "build", "current", "install", "kick", "pump"]
