"""One signed POST of one event to one URL; every way it can end becomes an `AttemptResult` (nothing
raises: an exception escaping here would crash the URL's drainer, again and again on the same event).

The body is sent exactly as stored in the outbox (same bytes on every attempt and replay); `webhook-id`
is the event id, `webhook-timestamp` the time of this attempt.  Only the first bytes of a failure's body
are kept, so a misbehaving sink cannot make the worker buffer a huge answer.  A success's body is read to
its end and dropped (up to `MAX_DISCARD_BYTES`): a connection returns to the client's pool only once its
response was read completely, and a new TCP connection per event would cost more than the POST itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx
import structlog

from plugwatch.signing import signature_headers
from worker.delivery.policy import AttemptResult, Outcome, classify_status, parse_retry_after

MAX_DETAIL_BYTES = 300
BODY_READ_SECONDS = 2.0  # a body trickling in longer is dropped with its connection (keeps attempts bounded)
MAX_DISCARD_BYTES = 64 * 1024  # a longer success body is not read: its connection is closed instead
USER_AGENT = "plugwatch-webhooks/1"

log = structlog.get_logger(__name__)


def post_event(
    client: httpx.Client, url: str, *, key: bytes | Sequence[bytes], event_id: str, body: bytes, now: float,
    read_timeout: float | None = None,
) -> AttemptResult:
    """POST `body`, signed with `key` (or with each of several keys, newest first, during a rotation);
    `read_timeout` (seconds) replaces the client's read timeout for this attempt."""
    headers = {
        **signature_headers(key, event_id, int(now), body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
    timeout = client.timeout if read_timeout is None else httpx.Timeout(
        connect=client.timeout.connect, read=read_timeout, write=client.timeout.write, pool=client.timeout.pool)
    started = time.monotonic()
    try:
        with client.stream("POST", url, content=body, headers=headers, timeout=timeout) as response:
            elapsed = time.monotonic() - started
            outcome = classify_status(response.status_code)
            detail = f"HTTP {response.status_code}"
            if outcome is Outcome.SUCCESS:
                _discard(response)
            else:
                detail += _snippet(response)
            retry_after = parse_retry_after(response.headers.get("retry-after"), now)
            return AttemptResult(outcome, detail, response.status_code, retry_after, elapsed=elapsed)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:  # the URL itself: no attempt can work
        return AttemptResult(Outcome.DISABLED, _described(error))
    except httpx.LocalProtocolError as error:  # this request could not be written: never retried as is
        return AttemptResult(Outcome.DEAD_LETTER, _described(error))
    except httpx.ReadTimeout:
        return AttemptResult(Outcome.RETRY, f"ReadTimeout: no answer within {timeout.read:g} s", timed_out=True,
                             elapsed=time.monotonic() - started)
    except httpx.HTTPError as error:
        return AttemptResult(Outcome.RETRY, _described(error), elapsed=time.monotonic() - started)
    except Exception as error:  # e.g. UnicodeError from the resolver: retried with backoff, never a crash loop
        log.warning("delivery.send_crashed", exc_info=True)
        return AttemptResult(Outcome.RETRY, _described(error))


def _described(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:MAX_DETAIL_BYTES]


def _discard(response: httpx.Response) -> None:
    """Read a short body to its end without keeping it, so the connection can be reused."""
    received, deadline = 0, time.monotonic() + BODY_READ_SECONDS
    try:
        for chunk in response.iter_raw():
            received += len(chunk)
            if received > MAX_DISCARD_BYTES or time.monotonic() > deadline:
                return
    except httpx.HTTPError:
        pass  # the 2xx status already arrived: the event was accepted; the connection is dropped


def _snippet(response: httpx.Response) -> str:
    received, deadline = b"", time.monotonic() + BODY_READ_SECONDS
    try:
        for chunk in response.iter_raw():
            received += chunk
            if len(received) >= MAX_DETAIL_BYTES or time.monotonic() > deadline:
                break
    except httpx.HTTPError:
        pass  # the status already says what happened; the body is only a hint
    text = received[:MAX_DETAIL_BYTES].decode(errors="replace").strip()
    return f": {text}" if text else ""
