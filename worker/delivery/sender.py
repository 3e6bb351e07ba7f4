"""One signed POST of one event to one URL; every way it can end becomes an `AttemptResult` (nothing
raises: an exception escaping here would crash the URL's drainer, again and again on the same event).

Each drain has one `aiohttp.ClientSession` on its own event loop (`open_session`): a keep-alive pool of
at most `concurrency` connections to its URL, which the drain's POSTs share (see `drainer`).  The body is
sent exactly as stored in the outbox (same bytes on every attempt and replay); `webhook-id` is the event
id, `webhook-timestamp` the time of this attempt.  Only the first bytes of a failure's body are kept, so a
misbehaving sink cannot make the worker buffer a huge answer.  A success's body is read to its end and
dropped (up to `MAX_DISCARD_BYTES`): a connection returns to the pool only once its response was read
completely, and a new TCP connection per event would cost more than the POST itself.  Redirects are not
followed, cookies are not kept, bodies are not decompressed; HTTP(S)_PROXY and NO_PROXY are honoured
(looked up once per session, not per request: aiohttp's `trust_env` would read ~/.netrc in a thread on
every request).
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import urlsplit

import aiohttp
import structlog

from plugwatch.settings import DeliverySettings
from plugwatch.signing import signature_headers
from worker.delivery.policy import AttemptResult, Outcome, classify_status, parse_retry_after

MAX_DETAIL_BYTES = 300
BODY_READ_SECONDS = 2.0  # a body trickling in longer is dropped with its connection (keeps attempts bounded)
MAX_DISCARD_BYTES = 64 * 1024  # a longer success body is not read: its connection is closed instead
USER_AGENT = "plugwatch-webhooks/1"
KEEPALIVE_SECONDS = 4.0  # an idle connection is closed before the usual server-side keep-alive (5 s) does it
_HEADER_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")  # visible ASCII, no CR/LF

log = structlog.get_logger(__name__)


async def open_session(config: DeliverySettings, url: str = "") -> aiohttp.ClientSession:
    """A drain's HTTP client for `url` (call on its event loop): up to `concurrency` connections, kept alive."""
    connector = aiohttp.TCPConnector(limit=max(1, config.concurrency), keepalive_timeout=KEEPALIVE_SECONDS)
    return aiohttp.ClientSession(connector=connector, timeout=_timeout(config.connect_timeout, config.read_timeout),
                                 cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
                                 skip_auto_headers=("Accept-Encoding",), proxy=env_proxy(url))


def env_proxy(url: str) -> str | None:
    """The proxy that HTTP_PROXY / HTTPS_PROXY / ALL_PROXY name for `url`, unless NO_PROXY covers its host."""
    parts = urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


async def post_event(
    session: aiohttp.ClientSession, url: str, *, key: bytes | Sequence[bytes], event_id: str, body: bytes,
    now: float, read_timeout: float | None = None,
) -> AttemptResult:
    """POST `body`, signed with `key` (or with each of several keys, newest first, during a rotation);
    `read_timeout` (seconds) replaces the session's read timeout for this attempt."""
    if not _HEADER_VALUE.fullmatch(event_id):
        return AttemptResult(Outcome.DEAD_LETTER, "InvalidHeader: the event id cannot be a webhook-id header")
    headers = {
        **signature_headers(key, event_id, int(now), body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
    base = session.timeout
    timeout = base if read_timeout is None else _timeout(base.connect or 0.0, read_timeout)
    started = time.monotonic()
    try:
        async with session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False) as response:
            elapsed = time.monotonic() - started
            outcome = classify_status(response.status)
            detail = f"HTTP {response.status}"
            if outcome is Outcome.SUCCESS:
                await _discard(response)
            else:
                detail += await _snippet(response)
            retry_after = parse_retry_after(response.headers.get("retry-after"), now)
            return AttemptResult(outcome, detail, response.status, retry_after, elapsed=elapsed)
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as error:  # the URL itself: no attempt can work
        return AttemptResult(Outcome.DISABLED, _unusable(error, url))
    except aiohttp.SocketTimeoutError:
        return AttemptResult(Outcome.RETRY, f"ReadTimeout: no answer within {timeout.sock_read:g} s",
                             timed_out=True, elapsed=time.monotonic() - started)
    except (aiohttp.ClientError, TimeoutError) as error:  # connect timeout, refused, reset, bad response
        return AttemptResult(Outcome.RETRY, _described(error), elapsed=time.monotonic() - started)
    except Exception as error:  # e.g. UnicodeError from the resolver: retried with backoff, never a crash loop
        log.warning("delivery.send_crashed", exc_info=True)
        return AttemptResult(Outcome.RETRY, _described(error))


@lru_cache(maxsize=64)
def _timeout(connect: float, read: float) -> aiohttp.ClientTimeout:
    """Connect (including the wait for a pooled connection) and each read of the answer; the request is
    written into the socket's buffer at once (an event is a few KB)."""
    return aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=read)


def _unusable(error: Exception, url: str) -> str:
    if isinstance(error, aiohttp.NonHttpUrlClientError):
        return f"UnsupportedProtocol: not an http:// or https:// URL: {url}"[:MAX_DETAIL_BYTES]
    why = str(error.__cause__ or "").removeprefix("Invalid URL: ") or f"cannot send to {url}"
    return f"InvalidURL: {why}"[:MAX_DETAIL_BYTES]


def _described(error: Exception) -> str:
    text = str(error) or "no detail"
    return f"{type(error).__name__}: {text}"[:MAX_DETAIL_BYTES]


async def _discard(response: aiohttp.ClientResponse) -> None:
    """Read a short body to its end without keeping it, so the connection can be reused; a longer or slower
    one is dropped with its connection (the 2xx status already arrived: the event was accepted)."""
    if response.content.at_eof():
        return  # the usual empty answer: nothing to read
    received = 0
    try:
        async with asyncio.timeout(BODY_READ_SECONDS):
            while chunk := await response.content.readany():
                received += len(chunk)
                if received > MAX_DISCARD_BYTES:
                    response.close()
                    return
    except (aiohttp.ClientError, TimeoutError):
        response.close()


async def _snippet(response: aiohttp.ClientResponse) -> str:
    received = b""
    try:
        async with asyncio.timeout(BODY_READ_SECONDS):
            while len(received) < MAX_DETAIL_BYTES and (chunk := await response.content.readany()):
                received += chunk
    except (aiohttp.ClientError, TimeoutError):
        pass  # the status already says what happened; the body is only a hint
    if not response.content.at_eof():
        response.close()
    text = received[:MAX_DETAIL_BYTES].decode(errors="replace").strip()
    return f": {text}" if text else ""
