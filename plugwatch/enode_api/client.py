"""A small synchronous Enode API client (httpx): authentication, retries, errors, pagination.

- **Auth**: OAuth2 client credentials (`auth.TokenCache`): one token, reused until shortly before it expires;
  a 401 drops it and the request is retried once with a fresh token.
- **Retries**: 429 (honouring `Retry-After`), 5xx and transport errors are retried with exponential backoff
  and full jitter, up to `RetryPolicy.max_attempts`.  Requests that are not idempotent (POST) are retried only
  when they provably did not reach Enode: a 429 or a failed connection.
- **Errors**: anything else non-2xx becomes an exception from `errors` (problem+json parsed).
- **Version**: every request carries `Enode-Version` (default `2024-10-01`).

Build one per process with `EnodeClient.from_settings(settings)`; close it (or use `with`) at exit.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Self
from urllib.parse import quote

import httpx
import structlog

from plugwatch.enode_api.auth import DEFAULT_REFRESH_MARGIN_SECONDS, TokenCache
from plugwatch.enode_api.errors import (
    EnodeNotConfigured,
    EnodeProtocolError,
    EnodeRateLimited,
    EnodeUnavailable,
    Problem,
    error_for_status,
)
from plugwatch.settings import Settings

log = structlog.get_logger(__name__)

DEFAULT_API_VERSION = "2024-10-01"
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay: float = 0.5  # seconds; the n-th retry waits up to base_delay * 2**(n-1) (full jitter)
    max_delay: float = 8.0
    max_retry_after: float = 60.0  # a longer Retry-After is not waited for: EnodeRateLimited is raised

    def backoff(self, retry: int, rng: Callable[[], float]) -> float:
        return float(rng() * min(self.max_delay, self.base_delay * 2 ** (retry - 1)))


@dataclass(frozen=True)
class EnodeConfig:
    client_id: str
    client_secret: str = field(repr=False)
    api_url: str
    token_url: str
    api_version: str = DEFAULT_API_VERSION
    timeout_seconds: float = 10.0
    retry: RetryPolicy = RetryPolicy()
    refresh_margin_seconds: float = DEFAULT_REFRESH_MARGIN_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> EnodeConfig:
        """The client configuration from `settings`; raises `EnodeNotConfigured` without credentials."""
        enode = settings.enode
        if not (enode.api_configured and enode.client_id and enode.client_secret):
            raise EnodeNotConfigured()
        return cls(client_id=enode.client_id, client_secret=enode.client_secret,
                   api_url=enode.api_url.rstrip("/"), token_url=enode.token_url,
                   **overrides)


class EnodeClient:
    """Calls the Enode API.  `clock`, `sleep` and `rng` are injectable for tests of timing behaviour."""

    def __init__(self, config: EnodeConfig, http: httpx.Client | None = None, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random) -> None:
        self.config = config
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=config.timeout_seconds)
        self._sleep = sleep
        self._rng = rng
        self._tokens = TokenCache(self._fetch_token, config.token_url, clock, config.refresh_margin_seconds)

    @classmethod
    def from_settings(cls, settings: Settings, **config_overrides: Any) -> EnodeClient:
        return cls(EnodeConfig.from_settings(settings, **config_overrides))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    # --- public API -------------------------------------------------------------------------------
    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None) -> Any:
        """Send one API request; return the decoded JSON body (None for an empty body)."""
        url = self.config.api_url + path
        for auth_attempt in (1, 2):
            token = self._tokens.get()
            headers = {"Authorization": f"Bearer {token}", "Enode-Version": self.config.api_version}
            response = self._send(method, url, path, headers=headers, params=params, json=json)
            if response.status_code != 401 or auth_attempt == 2:
                break
            log.info("enode.token_rejected", method=method, path=path)
            self._tokens.invalidate(token)
        body = _decode(response, method, path)
        if not response.is_success:
            raise error_for_status(method, path, response.status_code, body)
        return body

    def paginate(self, path: str, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield every item of a cursor-paginated list (`{data, pagination: {after, before}}`)."""
        after: str | None = None
        while True:
            params: dict[str, Any] = {"pageSize": page_size} if page_size else {}
            if after:
                params["after"] = after
            data, pagination = _page(self.get(path, params), path)
            yield from data
            next_after = pagination.get("after")
            if not data or not next_after:
                return
            if next_after == after:  # a listing that silently stopped here would look complete
                raise EnodeProtocolError("GET", path, 200, reason="pagination cursor repeats")
            after = str(next_after)

    # --- transport --------------------------------------------------------------------------------
    def _fetch_token(self) -> httpx.Response:
        return self._send("POST", self.config.token_url, self.config.token_url, idempotent=True,
                          auth=(self.config.client_id, self.config.client_secret),
                          data={"grant_type": "client_credentials"})

    def _send(self, method: str, url: str, path: str, *, idempotent: bool | None = None,
              **kwargs: Any) -> httpx.Response:
        """One request with retries; returns the last response, raises when transient failures persist."""
        idempotent = method != "POST" if idempotent is None else idempotent
        policy = self.config.retry
        for attempt in range(1, policy.max_attempts + 1):
            last = attempt == policy.max_attempts
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if last or not (idempotent or isinstance(exc, _NEVER_SENT)):
                    raise EnodeUnavailable(method, path, None, reason=type(exc).__name__) from exc
                self._wait(policy.backoff(attempt, self._rng), method, path, type(exc).__name__)
                continue
            status = response.status_code
            if status == 429:
                retry_after = _retry_after(response)
                if last or (retry_after or 0) > policy.max_retry_after:
                    raise EnodeRateLimited(method, path, Problem.from_body(_decode(response, method, path)),
                                           retry_after)
                delay = policy.backoff(attempt, self._rng)
                self._wait(delay if retry_after is None else retry_after + delay / 4, method, path, "429")
            elif status >= 500 and idempotent and not last:
                self._wait(policy.backoff(attempt, self._rng), method, path, str(status))
            else:
                return response
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _wait(self, delay: float, method: str, path: str, cause: str) -> None:
        log.info("enode.request_retried", method=method, path=path, cause=cause,
                 delay_seconds=round(delay, 3))
        self._sleep(delay)


def segment(value: str) -> str:
    """`value` as one URL path segment: ids come from operators and webhook bodies, never trust them raw."""
    return quote(value, safe="")


def _retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date), None when absent or unparseable."""
    raw = response.headers.get("retry-after", "").strip()
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _page(body: Any, path: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    data = body.get("data") if isinstance(body, dict) else None
    pagination = body.get("pagination") if isinstance(body, dict) else None
    if not isinstance(data, list) or not isinstance(pagination, dict):
        raise EnodeProtocolError("GET", path, 200, reason="not a paginated list")
    return data, pagination


def _decode(response: httpx.Response, method: str, path: str) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        if response.is_success:
            raise EnodeProtocolError(method, path, response.status_code, reason="body is not JSON") from None
        return None
