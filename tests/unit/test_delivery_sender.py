"""worker.delivery.sender: one signed POST per event, against a real uvicorn server that notes which client
connection each request came on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plugwatch.settings import DeliverySettings
from tests.support.servers import ThreadedUvicorn
from worker.delivery.policy import AttemptResult, Outcome
from worker.delivery.sender import MAX_DISCARD_BYTES, open_session, post_event

ANSWERS = {"/empty": b"", "/short": b'{"ok": true}', "/huge": b"x" * (4 * MAX_DISCARD_BYTES),
           "/fail": b"try later", "/slow": b""}


class Server:
    """Answers each path with its body from ANSWERS (503 on /fail) and records each request's client port."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> Response:
        await request.body()
        assert request.client is not None
        self.ports.append(request.client.port)
        if request.url.path == "/slow":
            await asyncio.sleep(1.0)
        if request.url.path == "/redirect":
            return Response(b"", status_code=302, headers={"location": "/short"})
        status = 503 if request.url.path == "/fail" else 200
        return Response(ANSWERS[request.url.path], status_code=status)


@pytest.fixture
def server() -> Iterator[tuple[Server, str]]:
    app = Server()
    with ThreadedUvicorn(app.app) as running:
        yield app, running.url


def send(url: str, *, event_id: str = "evt_1", body: bytes = b'{"id": "evt_1"}', times: int = 1) -> list[AttemptResult]:
    """`times` POSTs one after the other through one drain's session (its own event loop, as a drainer has)."""
    async def run() -> list[AttemptResult]:
        session = await open_session(DeliverySettings())
        try:
            return [await post_event(session, url, key=b"k" * 32, event_id=event_id, body=body, now=time.time())
                    for _ in range(times)]
        finally:
            await session.close()

    return asyncio.run(run())


@pytest.mark.parametrize("path", ["/empty", "/short"])
def test_successive_successes_reuse_one_connection(server: tuple[Server, str], path: str) -> None:
    """A connection whose response was not read to its end cannot go back to the pool: without reading the
    body, every event would open (and the sink accept) a new TCP connection."""
    app, base = server
    assert [result.outcome for result in send(base + path, times=5)] == [Outcome.SUCCESS] * 5
    assert len(set(app.ports)) == 1


def test_a_success_with_a_huge_body_is_not_read_to_the_end_and_the_next_post_still_works(
        server: tuple[Server, str]) -> None:
    app, base = server

    async def run() -> list[Outcome]:
        session = await open_session(DeliverySettings())
        try:
            return [(await post_event(session, base + path, key=b"k" * 32, event_id="evt_1", body=b"{}",
                                      now=time.time())).outcome for path in ("/huge", "/short")]
        finally:
            await session.close()

    assert asyncio.run(run()) == [Outcome.SUCCESS, Outcome.SUCCESS]
    assert len(set(app.ports)) == 2  # the huge answer's connection was dropped, not drained


def test_a_failure_keeps_a_snippet_of_the_body_as_its_detail(server: tuple[Server, str]) -> None:
    _, base = server
    [result] = send(base + "/fail", body=b"{}")
    assert (result.outcome, result.detail) == (Outcome.RETRY, "HTTP 503: try later")


def test_a_redirect_is_not_followed_and_is_retried(server: tuple[Server, str]) -> None:
    app, base = server
    [result] = send(base + "/redirect")
    assert (result.outcome, result.status) == (Outcome.RETRY, 302)
    assert len(app.ports) == 1  # /short, where it points, was not asked


@pytest.mark.parametrize("url", ["http://h:abc/hook", "http:///hook", "ftp://sink.example/hook"])
def test_a_url_the_client_cannot_send_to_disables_it_instead_of_raising(url: str) -> None:
    """InvalidURL used to escape and crash the drainer ~4 times a second."""
    [result] = send(url, body=b"{}")
    assert result.outcome is Outcome.DISABLED
    assert result.detail.startswith(("InvalidURL: ", "UnsupportedProtocol: "))
    assert result.status is None


@pytest.mark.parametrize("event_id", ["evt\r\nx-injected: 1", "", " evt", "évt"])
def test_a_request_that_cannot_be_written_is_dead_lettered(server: tuple[Server, str], event_id: str) -> None:
    """An id that cannot be a header value is never sent (and would fail again on every retry)."""
    app, base = server
    [result] = send(base + "/short", event_id=event_id)
    assert (result.outcome, result.detail) == (
        Outcome.DEAD_LETTER, "InvalidHeader: the event id cannot be a webhook-id header")
    assert app.ports == []


def test_an_error_outside_the_client_is_a_retry_not_a_crash() -> None:
    """The resolver raises UnicodeError (a ValueError) for a host with an empty label."""
    [result] = send("http://a..b/hook", body=b"{}")
    assert result.outcome is Outcome.RETRY
    assert result.detail.startswith("UnicodeError: ")


def test_a_sink_slower_than_the_read_timeout_is_a_timed_out_retry(server: tuple[Server, str]) -> None:
    _, base = server

    async def run() -> AttemptResult:
        session = await open_session(DeliverySettings())
        try:
            return await post_event(session, base + "/slow", key=b"k" * 32, event_id="evt_1", body=b"{}",
                                    now=time.time(), read_timeout=0.2)
        finally:
            await session.close()

    result = asyncio.run(run())
    assert (result.outcome, result.timed_out) == (Outcome.RETRY, True)
    assert result.detail == "ReadTimeout: no answer within 0.2 s"
