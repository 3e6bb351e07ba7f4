"""Everything the Enode API client raises, in one small tree.

    EnodeError                      base of every exception below
    ├── EnodeNotConfigured          no ENODE_CLIENT_ID / ENODE_CLIENT_SECRET: the feature is off
    ├── EnodeTransientError         worth trying again later (the client already retried with backoff)
    │   ├── EnodeUnavailable        5xx, timeouts, connection errors
    │   └── EnodeRateLimited        429 (`retry_after` seconds, when Enode said so)
    └── EnodePermanentError         retrying the same request will not help
        ├── EnodeAuthError          the client credentials or the token were rejected (401/403)
        ├── EnodeNotFound           404: the user, charger, location or webhook does not exist
        ├── EnodeRequestError       any other 4xx (400 validation, 409, 422, ...)
        └── EnodeProtocolError      a 2xx whose body is not the JSON the spec promises

Every HTTP-level error carries `status` and the problem+json fields Enode sends (`type`, `title`,
`detail`, `issues`); `str()` is a one-line message suitable for a CLI or a log field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """An RFC 7807 problem+json body (Enode's error format); fields are empty when the body was not one."""

    type: str = ""
    title: str = ""
    detail: str = ""
    issues: tuple[Any, ...] = field(default=())

    @classmethod
    def from_body(cls, body: object) -> Problem:
        if not isinstance(body, Mapping):
            return cls()
        issues = body.get("issues")
        return cls(
            type=str(body.get("type") or ""),
            title=str(body.get("title") or ""),
            detail=str(body.get("detail") or ""),
            issues=tuple(issues) if isinstance(issues, list) else (),
        )

    def summary(self) -> str:
        return ": ".join(part for part in (self.title, self.detail) if part)


class EnodeError(Exception):
    """Base class of every Enode API error."""


class EnodeNotConfigured(EnodeError):
    """The Enode API credentials are not configured."""

    def __init__(self) -> None:
        super().__init__("Enode API is not configured: set ENODE_CLIENT_ID and ENODE_CLIENT_SECRET")


class EnodeHTTPError(EnodeError):
    """An error tied to one request; `status` is None for transport failures (no response)."""

    def __init__(self, method: str, path: str, status: int | None, problem: Problem | None = None,
                 reason: str = "") -> None:
        self.method = method
        self.path = path
        self.status = status
        self.problem = problem or Problem()
        said = self.problem.summary() or reason
        where = f"{method} {path}"
        super().__init__(f"{where} failed ({status}): {said}" if status else f"{where} failed: {said}")


class EnodeTransientError(EnodeHTTPError):
    """Retrying later may succeed."""


class EnodeUnavailable(EnodeTransientError):
    """Enode answered 5xx, timed out, or could not be reached."""


class EnodeRateLimited(EnodeTransientError):
    """Enode answered 429; `retry_after` is its hint in seconds (None when absent)."""

    def __init__(self, method: str, path: str, problem: Problem | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(method, path, 429, problem, reason="rate limited")
        self.retry_after = retry_after


class EnodePermanentError(EnodeHTTPError):
    """Retrying the same request will not help."""


class EnodeAuthError(EnodePermanentError):
    """The credentials or the access token were rejected."""


class EnodeNotFound(EnodePermanentError):
    """The requested resource does not exist."""


class EnodeRequestError(EnodePermanentError):
    """Enode rejected the request (a 4xx other than 401, 403, 404 and 429)."""


class EnodeProtocolError(EnodePermanentError):
    """A successful response whose body is not what the API specification promises."""


def error_for_status(method: str, path: str, status: int, body: object,
                     retry_after: float | None = None) -> EnodeHTTPError:
    """The exception for a non-2xx response (transient or permanent by status)."""
    problem = Problem.from_body(body)
    if status == 429:
        return EnodeRateLimited(method, path, problem, retry_after)
    if status >= 500:
        return EnodeUnavailable(method, path, status, problem)
    if status in (401, 403):
        return EnodeAuthError(method, path, status, problem)
    if status == 404:
        return EnodeNotFound(method, path, status, problem)
    return EnodeRequestError(method, path, status, problem)
