"""Reading request bodies: under a cap per body, a cap on all bodies in memory at once, and a
deadline for the whole body.

Twenty concurrent 15 MB bodies once held 1.7 GB: aiohttp's ``request.read()`` grows a
bytearray chunk by chunk and then copies it into ``bytes`` it keeps for the request's life,
beside the parsed JSON. Here a body with a ``Content-Length`` is read into one buffer of
that size, handed to the JSON parser, and dropped; what stays is the parsed body. The sum
of the bodies held is capped (``server.limits.body_bytes_in_flight``): a request that would
pass it is answered 503 with ``Retry-After`` before its body is read, and its bytes are
counted until the request ends (the parsed body lives that long).

The body deadline (``server.timeouts.body``) covers the whole body, not the gap between two
reads as nginx's ``client_body_timeout`` does: one byte a second never trips a gap timer.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from nitroproxy.core.errors import InvalidRequest, Overloaded, PayloadTooLarge, RequestTimeout

BODY_BYTES = web.RequestKey("body_bytes", int)
"""The bytes this request holds against the in-flight cap; released when it ends."""


_AT_ONCE = 64 * 1024


async def _rest(
    request: web.Request,
    budget: BodyBudget,
    head: bytes,
    length: int,
    timeout: float,  # noqa: ASYNC109 - the body's own deadline
) -> bytes:
    budget.take(request, length)
    parts, pos = [head], len(head)
    try:
        async with asyncio.timeout(timeout):
            while pos < length:
                chunk = await request.content.read(length - pos)
                if not chunk:
                    raise InvalidRequest("the request body ended before its Content-Length")
                parts.append(chunk)
                pos += len(chunk)
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout:g} s") from None
    return b"".join(parts)


class BodyBudget:
    """The bytes of request bodies held in memory, summed. One event loop; no lock."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, request: web.Request, n: int) -> None:
        """Count ``n`` more bytes for ``request``, or raise a 503 if that passes the cap."""
        if self.held + n > self.limit:
            raise Overloaded(
                "the server holds as many request bytes as it may; retry shortly",
                code="too_many_request_bytes",
                retry_after=1,
            )
        self.held += n
        request[BODY_BYTES] = request.get(BODY_BYTES, 0) + n

    def release(self, request: web.Request) -> None:
        """At the end of the request: give back what it held."""
        n = request.get(BODY_BYTES, 0)
        if n:
            self.held -= n
            request[BODY_BYTES] = 0


async def read_body(
    request: web.Request,
    budget: BodyBudget,
    *,
    max_bytes: int,
    timeout: float,  # noqa: ASYNC109 - a deadline per body, as configured
) -> bytes | bytearray:
    """The whole body, counted against ``budget``; 413 past ``max_bytes``, 408 past
    ``timeout`` seconds (the connection is closed then: the rest of the body is unread)."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLarge("the request body is larger than the server's limit")
    content = request.content
    if length is not None and length <= _AT_ONCE:
        # A small body usually came in the same read as the headers: take it without a
        # timer, and wait (under the deadline) only for what has not arrived yet.
        head = content.read_nowait(length)
        if len(head) == length:
            budget.take(request, length)
            return head
        if head:
            return await _rest(request, budget, head, length, timeout)
    try:
        async with asyncio.timeout(timeout):
            if length is not None:
                budget.take(request, length)
                buf = bytearray(length)
                view, pos = memoryview(buf), 0
                while pos < length:
                    chunk = await content.readany()
                    if not chunk:
                        raise InvalidRequest("the request body ended before its Content-Length")
                    end = pos + len(chunk)  # the parser never passes Content-Length
                    view[pos:end] = chunk
                    pos = end
                return buf
            parts: list[bytes] = []
            size = 0
            while chunk := await content.readany():
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge("the request body is larger than the server's limit")
                budget.take(request, len(chunk))
                parts.append(chunk)
            return b"".join(parts)
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout:g} s") from None
