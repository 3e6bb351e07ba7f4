"""Downstream delivery: every emitted event reaches every downstream URL, signed, retried, dead-lettered.

Public surface for the rest of the worker:

- `kick(connection, settings, urls)` — call after committing events to the URLs' outbox streams.
- `pump(connection, settings)` — call every ~1 s from the worker's pump thread.

See `worker.delivery.arming` for how a drain is armed.
"""

from __future__ import annotations

from worker.delivery.arming import kick, pump

__all__ = ["kick", "pump"]
