"""A simulator of Enode's webhook traffic that knows what plugwatch must emit.

Pure parts (no I/O): `world` (devices of one Enode user and the API 2024-10-01 events their changes
produce, built by `payloads`), `stories` (seeded scenarios for N users), `truth` (the events plugwatch
must emit for an in-order event log, written from DESIGN.md §1) and `deliveries` (batching, shuffling,
duplicating, signing with `plugwatch.enode_signature`). The one shell is `sender`, which POSTs deliveries
with httpx and resends on 5xx and transport errors as Enode does.

For `plugwatch up` and `plugwatch simulate` (mounted by `cli`): `stack` (Redis, found, started or in-process,
and the child processes), `redis_binary`, `demo_sink` (prints every emitted event), `up_cli`, `simulate_cli`.
"""

from __future__ import annotations
