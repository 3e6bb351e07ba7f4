"""A simulator of Enode's webhook traffic that knows what plugwatch must emit.

Pure parts (no I/O): `world` (devices of one Enode user and the API 2024-10-01 events their changes
produce, built by `payloads`), `stories` (seeded scenarios for N users), `truth` (the events plugwatch
must emit for an in-order event log, written from DESIGN.md §1) and `deliveries` (batching, shuffling,
duplicating, signing). The one shell is `sender`, which POSTs deliveries with httpx and resends on 5xx
and transport errors as Enode does.
"""

from __future__ import annotations
