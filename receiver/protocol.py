"""uvicorn's httptools HTTP protocol with the receiver's slow-client limits (see `receiver.connections`).

    uvicorn.Config(app, http=guarded_protocol(guard), ws="none", ...)      (what `python -m receiver` does)

uvicorn has a keep-alive timeout but no deadline for a request's headers or body: a connection that sends
its headers one byte a second, or never sends anything, holds a socket and a descriptor for as long as it
likes.  This subclass arms one timer per connection (header deadline from the first byte of a request, or
from the connection for its first one; body deadline from the end of the headers), tells the guard how far
the connection has got, and lets the guard cut it.  Between requests uvicorn's keep-alive timeout applies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, ClassVar, cast

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from receiver.connections import CUT_SCOPE_KEY, ConnectionGuard, CutReason

REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=` option, bound to this process's guard."""

    class Guarded(GuardedHttpToolsProtocol):
        pass

    Guarded.guard = guard
    return Guarded


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    guard: ClassVar[ConnectionGuard]

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._deadline: asyncio.TimerHandle | None = None  # armed while a request's headers or body are due
        self._received = False

    @property
    def peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else ""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.guard.limits.header_timeout, self._headers_late)
        self.guard.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._received = True
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request of a kept-alive connection: the same time for headers
            self._arm(self.guard.limits.header_timeout, self._headers_late)

    def on_headers_complete(self) -> None:
        self._arm(self.guard.limits.body_timeout, self._body_late)
        self.guard.headers_read(self)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self.guard.body_read(self)
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._deadline is None and not self.pipeline and not self.transport.is_closing():
            self.guard.waiting(self)

    def cut(self, reason: CutReason) -> None:
        """Close the connection (the guard decided); a request that was under way is answered 408."""
        self._disarm()
        if self.transport.is_closing():
            return
        if self._request_under_way(reason):
            self.transport.write(REQUEST_TIMEOUT)
        if reason is CutReason.BODY_TIMEOUT:
            cast(dict[str, Any], self.cycle.scope)[CUT_SCOPE_KEY] = reason.value
        self.transport.close()

    def _request_under_way(self, reason: CutReason) -> bool:
        """Whether a 408 answers a request here (never in the middle of another response)."""
        if reason is CutReason.HEADER_TIMEOUT:
            return self.cycle is None or self.cycle.response_complete
        return reason is CutReason.BODY_TIMEOUT and not self.cycle.response_started

    def _headers_late(self) -> None:
        self._deadline = None
        self.guard.cut(self, CutReason.HEADER_TIMEOUT if self._received else CutReason.IDLE)

    def _body_late(self) -> None:
        self._deadline = None
        self.guard.cut(self, CutReason.BODY_TIMEOUT)

    def _arm(self, seconds: float, late: Callable[[], None]) -> None:
        self._disarm()
        self._when(time.monotonic() + seconds, late)

    def _when(self, due: float, late: Callable[[], None]) -> None:
        """Call `late` at `due` (monotonic), never sooner: the loop's timers run on the time its current
        iteration began, which lags while a burst of connections is being accepted."""
        left = due - time.monotonic()
        if left <= 0:
            late()
        else:
            self._deadline = self.loop.call_later(left, self._when, due, late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
