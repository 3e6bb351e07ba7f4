"""Outbound: every emitted event reaches every downstream URL, signed, retried, dead-lettered.

Public surface for the rest of the worker:

- `build(settings, connection=..., metrics=...) -> DeliveryContext`: the per-process wiring the worker
  bootstrap does (see `worker.delivery.context`);
- `context.kick(outboxes)` after committing events to outbox streams (`plugwatch.outboxes`: a URL's, per
  partition), `context.pump()` every ~1 s, `context.close()` at shutdown.

How it fits together: `kick`/`pump` arm one RQ job `drain_outbox(url[, partition])` per outbox
(`plugwatch.delivery_arming`, which the operator tools use too); the job (`worker.jobs`) hands the outbox to a
drainer thread of its process (`threads`), which holds the outbox's lease (`lease`) and delivers it in order
(`drainer`, `outbox`, `sender`, `policy`), pausing the URL on retryable failures (`plugwatch.url_state`),
raising a slow URL's read timeout instead of resending to it again and again (`slowness`), and turning
permanent failures into dead letters (`plugwatch.dead_letters`).
"""

from __future__ import annotations

from worker.delivery.context import DeliveryContext, build

__all__ = ["DeliveryContext", "build"]
