"""A real HTTP sink for downstream-delivery tests: a Starlette app that records every request and answers
as the test programs it, served by real uvicorn in a thread.

    sink = Sink()                                   # answers 200 to everything by default
    with SinkServer(sink) as server:                # real uvicorn on a free port
        url = server.url + "/hook"                  # any path is accepted
        sink.push(Reply(500), Reply(500))           # the next two requests get 500, then the default
        sink.set_default(Reply(200, delay=10))      # every later request: 200 after 10 s
        server.down(); server.up()                  # connection refused while down, same port after
        sink.wait_for(3)                            # block until 3 requests were received
        sink.requests                               # [Received(method, path, headers, body, at, status)]
        sink.set_default(Reply(200, jitter=0.02))   # each answer after a random 0-20 ms
        sink.fail_first("evt_veh-1_3", Reply(503))  # that event's first arrival gets 503 (any order)
        sink.max_in_flight, sink.overlaps           # most requests open at once; vehicles with two at once

`Received.headers` has lower-case names; `Received.webhook_id` and `.event` help delivery assertions.
Every webhook the sink receives (a request with a `webhook-id` header) is checked against the published
event catalog (`schema/events.schema.json`): once one did not match, `requests` (and so `wait_for`,
`accepted`) and stopping the server raise AssertionError saying why, so the test fails.
All methods are thread-safe (the app runs on uvicorn's event loop thread, tests call from theirs).
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.event_schema import schema_problems
from tests.support.servers import ThreadedUvicorn, free_port, wait_until


@dataclass(frozen=True)
class Reply:
    """How the sink answers one request."""

    status: int = 200
    delay: float = 0.0  # seconds to wait before answering (asyncio: other requests are not held up)
    jitter: float = 0.0  # and a random further 0 to `jitter` seconds
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when the request arrived
    status: int  # what the sink answered (or is about to answer)

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def event(self) -> Any:
        return json.loads(self.body)


class Sink:
    def __init__(self, default: Reply | None = None) -> None:
        self._lock = threading.Lock()
        self._default = default or Reply()
        self._scripted: deque[Reply] = deque()
        self._received: list[Received] = []
        self._off_schema: list[str] = []  # why received webhooks did not match the event catalog
        self._first_replies: dict[str, Reply] = {}  # webhook-id -> the answer to its first arrival
        self._refused: dict[str, Reply] = {}  # webhook-id -> the answer to its every arrival
        self._open: dict[str, int] = {}  # vehicleId -> its requests being answered right now
        self._in_flight = 0
        self.max_in_flight = 0  # the most requests open at once
        self.overlaps: list[str] = []  # a vehicleId each time a request came while another of it was open
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=methods)])

    def set_default(self, reply: Reply) -> None:
        """The answer to every request once the pushed replies are used up."""
        with self._lock:
            self._default = reply

    def push(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order."""
        with self._lock:
            self._scripted.extend(replies)

    def fail_first(self, webhook_id: str, reply: Reply) -> None:
        """Answer the first request carrying this `webhook-id` with `reply` (whenever it comes)."""
        with self._lock:
            self._first_replies[webhook_id] = reply

    def refuse(self, webhook_id: str, reply: Reply) -> None:
        """Answer every request carrying this `webhook-id` with `reply` (a consumer that rejects one event)."""
        with self._lock:
            self._refused[webhook_id] = reply

    @property
    def requests(self) -> list[Received]:
        self.check_schema()
        with self._lock:
            return list(self._received)

    def check_schema(self) -> None:
        """AssertionError if any webhook received so far did not match `schema/events.schema.json`."""
        with self._lock:
            problems = list(self._off_schema)
        if problems:
            raise AssertionError(f"the sink received {len(problems)} events off the schema: " + "; ".join(problems))

    def accepted(self) -> list[Received]:
        """Requests answered 2xx."""
        return [r for r in self.requests if 200 <= r.status < 300]

    def wait_for(self, count: int, timeout: float = 10.0, *, accepted: bool = False) -> list[Received]:
        """Wait until `count` requests (only 2xx-answered ones if `accepted`) were received; return them."""
        def enough() -> bool:
            return len(self.accepted() if accepted else self.requests) >= count
        wait_until(enough, timeout=timeout, message=f"sink did not receive {count} requests in {timeout}s "
                   f"(got {len(self.requests)}: {[r.status for r in self.requests]})")
        return self.accepted() if accepted else self.requests

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        vehicle = _vehicle_of(body)
        problems = schema_problems(body) if "webhook-id" in headers else []
        with self._lock:
            if problems:
                self._off_schema.append(f"{headers['webhook-id']}: {problems}")
            reply = (self._refused.get(headers.get("webhook-id", ""))
                     or self._first_replies.pop(headers.get("webhook-id", ""), None)
                     or (self._scripted.popleft() if self._scripted else self._default))
            self._received.append(Received(request.method, request.url.path, headers, body, time.time(),
                                           reply.status))
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            if vehicle is not None:
                self._open[vehicle] = self._open.get(vehicle, 0) + 1
                if self._open[vehicle] > 1:
                    self.overlaps.append(vehicle)
        try:
            delay = reply.delay + (random.random() * reply.jitter if reply.jitter else 0.0)
            if delay:
                await asyncio.sleep(delay)
            return Response(reply.body, status_code=reply.status, headers=reply.headers)
        finally:
            with self._lock:
                self._in_flight -= 1
                if vehicle is not None:
                    self._open[vehicle] -= 1


def _vehicle_of(body: bytes) -> str | None:
    try:
        event = json.loads(body)
    except ValueError:
        return None
    vehicle = event.get("vehicleId") if isinstance(event, dict) else None
    return vehicle if isinstance(vehicle, str) else None


class SinkServer:
    """Serves a `Sink` under real uvicorn on a fixed port; `down()`/`up()` stop and restart it there."""

    def __init__(self, sink: Sink, port: int | None = None) -> None:
        self.sink = sink
        self.port = port or free_port()
        self._server: ThreadedUvicorn | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        if self._server is None:
            # A short graceful-shutdown timeout: `down()` must not wait for a slow reply to finish.
            self._server = ThreadedUvicorn(self.sink.app, port=self.port, timeout_graceful_shutdown=1)
            self._server.__enter__()

    def down(self) -> None:
        """Stop listening: connections are refused until `up()`."""
        if self._server is not None:
            self._server.__exit__(None, None, None)
            self._server = None
        self.sink.check_schema()

    def __enter__(self) -> SinkServer:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()
