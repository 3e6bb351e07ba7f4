"""OAuth2 client-credentials token for the Enode API: fetched once, reused, refreshed before it expires.

Enode issues bearer tokens valid for `expires_in` seconds (3599 in practice).  `TokenCache.get()` returns the
cached token until `refresh_margin` seconds before expiry (at most half its lifetime), then fetches a new
one; `invalidate()` drops it after the API answered 401, so the next `get()` fetches a fresh token.
Thread-safe: the worker's job thread and its pump thread may share one client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import structlog

from plugwatch.enode_api.errors import EnodeAuthError, EnodeProtocolError, error_for_status

log = structlog.get_logger(__name__)

DEFAULT_REFRESH_MARGIN_SECONDS = 60.0


@dataclass(frozen=True)
class AccessToken:
    value: str
    expires_at: float  # on the cache's monotonic clock


class TokenCache:
    """Holds one client-credentials token; `fetch` is the HTTP call (injected so retries wrap it)."""

    def __init__(self, fetch: Callable[[], httpx.Response], token_url: str,
                 clock: Callable[[], float], refresh_margin: float = DEFAULT_REFRESH_MARGIN_SECONDS) -> None:
        self._fetch = fetch
        self._token_url = token_url
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._token: AccessToken | None = None
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            token = self._token
            if token is None or self._clock() >= token.expires_at:
                token = self._token = self._fetch_token()
            return token.value

    def invalidate(self, rejected: str) -> None:
        """Forget `rejected` (unless another thread already replaced it)."""
        with self._lock:
            if self._token is not None and self._token.value == rejected:
                self._token = None

    def _fetch_token(self) -> AccessToken:
        response = self._fetch()
        body = _json_or_none(response)
        if response.status_code in (400, 401, 403):
            raise EnodeAuthError("POST", self._token_url, response.status_code, None,
                                 reason="the token endpoint rejected ENODE_CLIENT_ID/ENODE_CLIENT_SECRET")
        if not response.is_success:
            raise error_for_status("POST", self._token_url, response.status_code, body)
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise EnodeProtocolError("POST", self._token_url, response.status_code,
                                     reason="token response has no access_token")
        lifetime = body.get("expires_in")
        lifetime = float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else 3600.0
        margin = min(self._refresh_margin, lifetime / 2)
        log.info("enode.token_fetched", expires_in=lifetime)
        return AccessToken(body["access_token"], self._clock() + lifetime - margin)


def _json_or_none(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None
