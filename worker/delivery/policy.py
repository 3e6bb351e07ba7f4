"""What to do after an attempt, and how long to wait before the next one.  Pure: no I/O, no clock.

    2xx                                  -> SUCCESS      ack, next event
    410 Gone                             -> DISABLED     stop delivering to the URL, dead-letter its events
    any other status (1xx, 3xx, 4xx, 5xx), transport error
                                         -> RETRY        pause the URL (breaker), retry the same event later,
                                                         until its max age (then it is dead-lettered)

As Standard Webhooks asks, every non-2xx answer is a failure to retry: a consumer's bad deploy answering
401 or 404 for ten minutes must not cost it ten minutes of events.

and when no response can arrive (see `sender`):

    InvalidURL, UnsupportedProtocol      -> DISABLED     the URL itself is unusable (Settings refuses such
                                                         URLs; this catches any that get past it)
    LocalProtocolError                   -> DEAD_LETTER  this request cannot be written
    timeout, network or any other error  -> RETRY

Redirects are not followed: a webhook URL that redirects is misconfigured, and following it would send
signed events to a place nobody configured.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


class Outcome(enum.Enum):
    SUCCESS = "success"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    DISABLED = "disabled"


@dataclass(frozen=True)
class AttemptResult:
    outcome: Outcome
    detail: str  # "HTTP 503", "ConnectError: ...": says why, for logs and dead letters
    status: int | None = None  # None when no response arrived
    retry_after: float | None = None  # seconds the sink asked us to wait
    timed_out: bool = False  # sent, but no answer within the read timeout (the sink may still handle it)
    elapsed: float = 0.0  # seconds until the answer's status line (or until the attempt failed)


def classify_status(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.SUCCESS
    if status == 410:
        return Outcome.DISABLED
    return Outcome.RETRY


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date); None if unusable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() also accepts "²", which float() refuses
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def backoff_delay(attempts: int, *, base: float, cap: float, jitter: float) -> float:
    """Exponential backoff with equal jitter: half the step fixed, half random (`jitter` in [0, 1)).

    attempts = failed attempts so far (>= 1); the step doubles from `base` and is capped at `cap`.
    """
    step = min(cap, base * 2.0 ** min(attempts - 1, 62))
    return step / 2 + step / 2 * jitter


def retry_delay(
    attempts: int, retry_after: float | None, *, base: float, cap: float, retry_after_max: float, jitter: float
) -> float:
    """The pause before the next attempt: the backoff, or the sink's Retry-After if longer (capped)."""
    delay = backoff_delay(attempts, base=base, cap=cap, jitter=jitter)
    if retry_after is not None:
        delay = max(delay, min(retry_after, retry_after_max))
    return delay
