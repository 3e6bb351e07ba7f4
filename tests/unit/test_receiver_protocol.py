"""receiver.protocol: uvicorn's httptools protocol with header and body deadlines, against real uvicorn on a
free port and raw client sockets (the deadlines here are 0.3 s)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from receiver.connections import CUT_SCOPE_KEY, ConnectionGuard, ConnectionLimits, CutReason
from receiver.protocol import REQUEST_TIMEOUT, guarded_protocol
from tests.support.servers import ThreadedUvicorn

DEADLINE = 0.3
GET = b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n"


class App:
    """Answers 200 with the body's length; /slow after 1 s; notes the scope of each request it saw end."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        if scope["path"] == "/slow":
            await asyncio.sleep(1.0)
        self.scopes.append(scope)
        body = str(size).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def served() -> Iterator[tuple[App, int, CollectorRegistry]]:
    app, registry = App(), CollectorRegistry()
    guard = ConnectionGuard(ConnectionLimits(DEADLINE, DEADLINE, 100), registry)
    with ThreadedUvicorn(app, http=guarded_protocol(guard), ws="none") as server:
        yield app, server.port, registry


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (at most 5 s)."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def cuts(registry: CollectorRegistry) -> dict[str, float]:
    values = {reason.value: registry.get_sample_value("plugwatch_receiver_connections_cut_total",
                                                      {"reason": reason.value}) for reason in CutReason}
    return {reason: value for reason, value in values.items() if value}


def test_a_connection_that_never_sends_a_byte_is_closed_silently_as_idle(served: tuple) -> None:
    _, port, registry = served
    with connect(port) as sock:
        started = time.monotonic()
        assert until_closed(sock) == b""
        assert time.monotonic() - started >= DEADLINE * 0.9
    assert cuts(registry) == {"idle": 1.0}


def test_headers_trickling_past_the_deadline_get_408_however_steadily_they_come(served: tuple) -> None:
    _, port, registry = served
    with connect(port) as sock:
        sock.settimeout(0.05)
        answer = b""
        for byte in GET[:-2]:  # one byte every 50 ms: far longer than the deadline in all
            sock.send(bytes([byte]))
            try:
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            break
        assert answer == REQUEST_TIMEOUT
    assert cuts(registry) == {"header_timeout": 1.0}


def test_a_body_trickling_past_the_deadline_gets_408_and_the_request_is_marked_cut(served: tuple) -> None:
    app, port, registry = served
    with connect(port) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\nab")
        assert until_closed(sock) == REQUEST_TIMEOUT
    assert cuts(registry) == {"body_timeout": 1.0}
    deadline = time.monotonic() + 5
    while not app.scopes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.scopes[0][CUT_SCOPE_KEY] == "body_timeout"


def test_the_next_request_on_a_kept_alive_connection_has_the_same_header_deadline(served: tuple) -> None:
    _, port, registry = served
    with connect(port) as sock:
        sock.sendall(GET)
        assert sock.recv(4096).endswith(b"\r\n\r\n0")
        sock.sendall(b"GET /x HTT")  # the next request starts and stalls
        assert until_closed(sock) == REQUEST_TIMEOUT
    assert cuts(registry) == {"header_timeout": 1.0}


def test_a_request_read_in_time_is_answered_however_long_the_app_takes(served: tuple) -> None:
    _, port, registry = served
    with connect(port) as sock:
        sock.sendall(b"POST /slow HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc")
        assert until_closed(sock).endswith(b"\r\n\r\n3")
    assert cuts(registry) == {}
