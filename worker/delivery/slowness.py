"""A slow URL's read timeout: raised after an attempt times out, kept while the URL stays slow.  Pure.

An attempt that timed out waiting for the answer has usually reached the sink, which goes on and handles
it: retrying with the same timeout sends the same event again and again to a sink that is merely slower
than the timeout.  So, per URL (kept in its state hash, `read_timeout` and `slow_at`):

    an attempt timed out after T             -> T := min(2T, max)         the next attempt waits longer
    an answer slower than the base timeout   -> keep T, note the time     still slow
    answers within the base timeout for      -> T := base                 recovered
      `reset_after` seconds since the last slow answer (or time-out)

Within one slow period T only grows, doubling from the base to the max, so at most
k = ceil(log2(max / base)) attempts time out in it.  A sink that always answers within the max therefore
receives each event at most k + 1 times, and the events of the whole period together at most k extra
times (k = 3 with the defaults 15 s -> 120 s).  A sink slower than the max times out on every attempt and
is retried with the usual backoff until the event's max age, like a sink that is down.
"""

from __future__ import annotations

import enum
import math

NOTE_FRACTION = 0.1  # a still-slow URL's `slow_at` is rewritten at most every tenth of `reset_after`


class Verdict(enum.Enum):
    UNCHANGED = "unchanged"
    STILL_SLOW = "still_slow"  # note the time of this slow answer
    RECOVERED = "recovered"  # back to the base timeout


def timeout_for(raised: float, base: float) -> float:
    """The read timeout of the next attempt: the URL's raised one (0 when none), never below the base."""
    return max(raised, base)


def raised(current: float, maximum: float) -> float:
    """The read timeout after an attempt timed out waiting `current` seconds."""
    return max(current, min(2 * current, maximum))


def after_answer(elapsed: float, now: float, *, raised_timeout: float, slow_at: float, base: float,
                 reset_after: float) -> Verdict:
    """What an answer that took `elapsed` seconds says about a URL whose timeout is `raised_timeout`
    (0: the base) and whose last slow answer or time-out was at `slow_at` (unix seconds, like `now`)."""
    if raised_timeout <= base:
        return Verdict.UNCHANGED
    if elapsed > base:
        return Verdict.STILL_SLOW if now - slow_at >= reset_after * NOTE_FRACTION else Verdict.UNCHANGED
    return Verdict.RECOVERED if now - slow_at >= reset_after else Verdict.UNCHANGED


def attempts_bound(base: float, maximum: float) -> int:
    """The most times one event reaches a sink that answers within `maximum` (see the module docstring)."""
    return 1 + max(0, math.ceil(math.log2(maximum / base) - 1e-9))
