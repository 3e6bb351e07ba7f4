"""Which terminal action updates were handled already: a memory by receipt time, not by count.

Enode retries a failed delivery up to 16 times over about 26 hours, in no particular order, so a terminal
update (CONFIRMED, FAILED, CANCELLED) may arrive after any number of newer ones. Each handled terminal action
is therefore remembered, per user, as `key -> receipt second`: `key` a 64-bit hash of the action id, the
receipt second the newest second any update of it was received in. An action is forgotten once its receipt
second is more than `action_memory_seconds` older than the newest receipt second remembered, so it is kept
for at least that long (72 h by default, beyond Enode's retries). The memory is a function of the set of
updates seen (per action the newest receipt, then the same window against the newest of all), so any
arrival order leaves the same memory. It costs ~14 bytes of msgpack per action: ~20 actions per vehicle in
72 hours stay well inside the ~1 KB per vehicle with its charger that the state is sized for.

Why a hash cannot realistically drop an action: a new action is taken for a remembered one only if its key
equals one of the n keys in its own user's memory, with probability n / 2^64 (about 1e-18 for n = 20). A
million vehicles with 20 actions each every 72 hours make ~2.4e9 actions a year: one action mistaken every
~4e8 years.
"""

from __future__ import annotations

import hashlib


def action_key(action_id: str) -> int:
    """A stable 64-bit key for an action id (the same in every process, unlike `hash()`)."""
    return int.from_bytes(hashlib.blake2b(action_id.encode(), digest_size=8).digest(), "big")


def remember(memory: dict[int, int], key: int, received_s: int, window_s: int) -> dict[int, int]:
    """`memory` with `key` received at `received_s`, without what fell out of the window.

    Returns `memory` itself when nothing changes: a repeat received no later than remembered, or an update
    received so long before the newest remembered one that it is outside the window already.
    """
    newest = max(memory.values(), default=received_s)
    if memory.get(key, -1) >= received_s or received_s < newest - window_s:
        return memory
    oldest = max(newest, received_s) - window_s
    kept = {k: at for k, at in memory.items() if at >= oldest}
    kept[key] = received_s
    return kept
