"""Reading a request body with a size limit enforced while it streams in (never buffering more)."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request


class BodyTooLarge(Exception):
    """The body (declared or received) exceeds the limit."""


class BadBody(Exception):
    """An unusable Content-Length, or the client went away mid-body."""


def check_declared_length(request: Request, limit: int) -> None:
    """Refuse early on Content-Length alone (before reading a byte)."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isascii() or not declared.isdigit():
        raise BadBody("content-length is not a number")
    if int(declared) > limit:
        raise BodyTooLarge


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, or BodyTooLarge as soon as more than `limit` bytes have arrived."""
    check_declared_length(request, limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadBody("client disconnected") from None
    return b"".join(chunks)
