"""A lean HTTP/1.1 client for SSE load: one ``asyncio.Protocol`` per keep-alive connection.

aiohttp's client wakes a coroutine per body chunk; at 20,000 events/s that alone kept the
load core busy and delayed the very timestamps TTFT is made of. Here bytes are handled in
``data_received`` as they arrive: headers, chunked or fixed-length bodies, then SSE blocks
handed to a callback. Enough HTTP for the servers under test, not a general client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

OnBlock = Callable[[bytes], None]


def request_bytes(url: str, body: bytes, headers: dict[str, str]) -> tuple[str, int, bytes]:
    """(host, port, the request's bytes) for a POST of ``body`` to ``url``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += [f"Content-Length: {len(body)}", "", ""]
    return host, port, "\r\n".join(lines).encode() + body


class SSEConnection(asyncio.Protocol):
    """Sends one request at a time and parses its response; ``exchange`` awaits the end."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._done: asyncio.Future[int] | None = None
        self._on_block: OnBlock = lambda block: None
        self._reset()

    def _reset(self) -> None:
        self._head = b""
        self._status = 0
        self._chunked = False
        self._left = -1  # body bytes still expected (fixed length), or chunk bytes left
        self._raw = b""
        self._events = b""
        self._in_body = False
        self._need_crlf = False
        self._close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionResetError("connection closed mid-response"))

    def exchange(self, request: bytes, on_block: OnBlock) -> asyncio.Future[int]:
        """Send ``request``; the future resolves to the status when the response has ended."""
        assert self.transport is not None
        self._reset()
        self._on_block = on_block
        self._done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._done

    def data_received(self, data: bytes) -> None:
        if not self._in_body:
            # lstrip: the CRLF closing the previous chunked body may arrive on its own.
            self._head = (self._head + data).lstrip(b"\r\n")
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            self._parse_head(self._head[:end])
            data, self._head, self._in_body = self._head[end + 4 :], b"", True
        if self._chunked:
            self._feed_chunked(data)
        else:
            self._body(data[: self._left])
            self._left -= len(data)
            if self._left <= 0:
                self._finish()

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        self._status = int(lines[0].split()[1])
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"transfer-encoding" and b"chunked" in value:
                self._chunked = True
            elif name == b"content-length":
                self._left = int(value)
            elif name == b"connection" and value == b"close":
                self._close_after = True
        if not self._chunked and self._left < 0:
            self._left = 0
            self._close_after = True  # read-until-close bodies are not supported: give up

    def _feed_chunked(self, data: bytes) -> None:
        raw = self._raw + data if self._raw else data
        while raw:
            if self._need_crlf:
                if len(raw) < 2:
                    break
                raw, self._need_crlf = raw[2:], False
                continue
            if self._left <= 0:
                eol = raw.find(b"\r\n")
                if eol < 0:
                    break
                size = int(raw[:eol].split(b";")[0], 16)
                raw = raw[eol + 2 :]
                if size == 0:
                    self._raw = b""
                    self._finish()  # the final CRLF may follow; _reset drops nothing needed
                    return
                self._left = size
            piece = raw[: self._left]
            raw = raw[len(piece) :]
            self._left -= len(piece)
            self._body(piece)
            if self._left == 0:
                self._need_crlf = True
        self._raw = raw

    def _body(self, piece: bytes) -> None:
        if self._status != 200 or not piece:
            return
        events = self._events + piece if self._events else piece
        if b"\r" in events:
            events = events.replace(b"\r\n", b"\n")
        *blocks, self._events = events.split(b"\n\n")
        for block in blocks:
            self._on_block(block)

    def _finish(self) -> None:
        if self._events.strip() and self._status == 200:
            self._on_block(self._events)
        self._events = b""
        self._in_body = False
        if self._close_after and self.transport is not None:
            self.transport.close()
            self.closed = True
        if self._done is not None and not self._done.done():
            self._done.set_result(self._status)
