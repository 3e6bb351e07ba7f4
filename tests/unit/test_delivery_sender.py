"""worker.delivery.sender: one signed POST per event, against a real uvicorn server that notes which client
connection each request came on."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.servers import ThreadedUvicorn
from worker.delivery.policy import Outcome
from worker.delivery.sender import MAX_DISCARD_BYTES, post_event

ANSWERS = {"/empty": b"", "/short": b'{"ok": true}', "/huge": b"x" * (4 * MAX_DISCARD_BYTES),
           "/fail": b"try later"}


class Server:
    """Answers each path with its body from ANSWERS (503 on /fail) and records each request's client port."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> Response:
        await request.body()
        assert request.client is not None
        self.ports.append(request.client.port)
        status = 503 if request.url.path == "/fail" else 200
        return Response(ANSWERS[request.url.path], status_code=status)


@pytest.fixture
def server() -> Iterator[tuple[Server, str]]:
    app = Server()
    with ThreadedUvicorn(app.app) as running:
        yield app, running.url


def post(client: httpx.Client, url: str) -> Outcome:
    return post_event(client, url, key=b"k" * 32, event_id="evt_1", body=b'{"id": "evt_1"}', now=time.time()).outcome


@pytest.mark.parametrize("path", ["/empty", "/short"])
def test_successive_successes_reuse_one_connection(server: tuple[Server, str], path: str) -> None:
    """A connection whose response was not read to its end cannot go back to the pool: without reading the
    body, every event would open (and the sink accept) a new TCP connection."""
    app, base = server
    with httpx.Client() as client:
        outcomes = [post(client, base + path) for _ in range(5)]
    assert outcomes == [Outcome.SUCCESS] * 5
    assert len(set(app.ports)) == 1


def test_a_success_with_a_huge_body_is_not_read_to_the_end_and_the_next_post_still_works(
        server: tuple[Server, str]) -> None:
    app, base = server
    with httpx.Client() as client:
        assert post(client, base + "/huge") is Outcome.SUCCESS
        assert post(client, base + "/short") is Outcome.SUCCESS
    assert len(set(app.ports)) == 2  # the huge answer's connection was dropped, not drained


def test_a_failure_keeps_a_snippet_of_the_body_as_its_detail(server: tuple[Server, str]) -> None:
    _, base = server
    with httpx.Client() as client:
        result = post_event(client, base + "/fail", key=b"k" * 32, event_id="evt_1", body=b"{}", now=time.time())
    assert (result.outcome, result.detail) == (Outcome.RETRY, "HTTP 503: try later")


@pytest.mark.parametrize("url", ["http://h:abc/hook", "http:///hook", "ftp://sink.example/hook"])
def test_a_url_httpx_cannot_send_to_disables_it_instead_of_raising(url: str) -> None:
    """InvalidURL is no httpx.HTTPError: it used to escape and crash the drainer ~4 times a second."""
    with httpx.Client() as client:
        result = post_event(client, url, key=b"k" * 32, event_id="evt_1", body=b"{}", now=time.time())
    assert result.outcome is Outcome.DISABLED
    assert result.detail.startswith(("InvalidURL: ", "UnsupportedProtocol: "))
    assert result.status is None


def test_a_request_that_cannot_be_written_is_dead_lettered() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.LocalProtocolError("Illegal header value", request=request)

    with httpx.Client(transport=httpx.MockTransport(refuse)) as client:
        result = post_event(client, "http://sink.example/hook", key=b"k" * 32, event_id="evt_1", body=b"{}",
                            now=time.time())
    assert (result.outcome, result.detail) == (Outcome.DEAD_LETTER, "LocalProtocolError: Illegal header value")


def test_an_error_outside_httpx_is_a_retry_not_a_crash() -> None:
    """The resolver raises UnicodeError (a ValueError) for a host with an empty label."""
    with httpx.Client() as client:
        result = post_event(client, "http://a..b/hook", key=b"k" * 32, event_id="evt_1", body=b"{}",
                            now=time.time())
    assert result.outcome is Outcome.RETRY
    assert result.detail.startswith("UnicodeError: ")
