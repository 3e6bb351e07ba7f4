"""The Enode exception tree: status -> transient or permanent, problem+json parsed defensively."""

from __future__ import annotations

import pytest

from plugwatch.enode_api.errors import (
    EnodeAuthError,
    EnodeNotFound,
    EnodePermanentError,
    EnodeRateLimited,
    EnodeRequestError,
    EnodeTransientError,
    EnodeUnavailable,
    Problem,
    error_for_status,
)


@pytest.mark.parametrize(("status", "kind", "transient"), [
    (429, EnodeRateLimited, True),
    (500, EnodeUnavailable, True),
    (503, EnodeUnavailable, True),
    (401, EnodeAuthError, False),
    (403, EnodeAuthError, False),
    (404, EnodeNotFound, False),
    (400, EnodeRequestError, False),
    (409, EnodeRequestError, False),
    (422, EnodeRequestError, False),
])
def test_status_maps_to_the_documented_exception(status: int, kind: type, transient: bool) -> None:
    error = error_for_status("GET", "/x", status, None)
    assert type(error) is kind
    assert isinstance(error, EnodeTransientError) is transient
    assert isinstance(error, EnodePermanentError) is not transient
    assert error.status == status


def test_problem_json_fields_make_the_message() -> None:
    body = {"type": "https://developers.enode.com/api/problems/bad-request", "title": "Bad request",
            "detail": "latitude must be a number", "issues": [{"path": ["latitude"]}]}
    error = error_for_status("POST", "/users/u/locations", 400, body)
    assert str(error) == "POST /users/u/locations failed (400): Bad request: latitude must be a number"
    assert error.problem.issues == ({"path": ["latitude"]},)


@pytest.mark.parametrize("body", [None, "oops", [1, 2], {"title": 5, "detail": None, "issues": "x"}])
def test_a_body_that_is_not_problem_json_never_raises(body: object) -> None:
    problem = Problem.from_body(body)
    assert problem.issues == ()
    assert isinstance(problem.summary(), str)


def test_rate_limited_keeps_the_retry_after_hint() -> None:
    error = error_for_status("GET", "/vehicles", 429, None, retry_after=7.0)
    assert isinstance(error, EnodeRateLimited)
    assert error.retry_after == 7.0
    assert "rate limited" in str(error)


def test_transport_failure_message_has_no_status() -> None:
    assert str(EnodeUnavailable("GET", "/vehicles", None, reason="ConnectError")) == (
        "GET /vehicles failed: ConnectError")
