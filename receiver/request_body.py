"""Reading an ASGI request body with a size limit enforced while it streams in (never buffering more)."""

from __future__ import annotations

from starlette.types import Receive


class BodyTooLarge(Exception):
    """The body (declared or received) exceeds the limit."""


class BadBody(Exception):
    """An unusable Content-Length, or the client went away mid-body."""


def check_declared_length(declared: bytes | None, limit: int) -> None:
    """Refuse early on Content-Length alone (before reading a byte)."""
    if declared is None:
        return
    if not declared.isdigit():
        raise BadBody("content-length is not a number")
    if len(declared) > 18 or int(declared) > limit:  # 19+ digits: past any limit (and int()'s digit cap)
        raise BodyTooLarge


async def read_limited(receive: Receive, declared_length: bytes | None, limit: int) -> bytes:
    """The whole body, or BodyTooLarge as soon as more than `limit` bytes have arrived."""
    check_declared_length(declared_length, limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise BadBody("client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
