"""A lean HTTP/1.1 client for upstream calls: keep-alive pools and httptools' C parser.

aiohttp's ``ClientSession.post`` spent about 5x the CPU of a bare protocol on the same
request (206 against 38 us here, ``benchmarks/client_cost.py``): request objects, header
multidicts, tracing hooks and timers per call. An LLM upstream needs far less: one method,
a JSON body, a status line, a handful of headers and a body that is either whole
(Content-Length) or chunked SSE. This transport does that and nothing more; aiohttp's stays
available (``upstream.client: aiohttp``).

Invariants: a connection goes back to its pool only after its response was read to the end
(and the server did not ask to close); anything else closes it. A reused connection that
fails before any byte of the response arrives is retried once on a new one (the server
closed an idle keep-alive connection at the moment it was taken); nothing is retried after
a response byte arrived. The response body flows through a bounded buffer: past
``_HIGH_WATER`` unread bytes the socket stops being read, so a slow client slows the
upstream instead of filling memory.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

from nitroproxy.config import ProviderSettings, UpstreamSettings
from nitroproxy.core.errors import InvalidRequest
from nitroproxy.security import tls
from nitroproxy.upstream.errors import UpstreamDisconnected, UpstreamProtocolError
from nitroproxy.upstream.provider import Provider

_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
_WRITE_PIECE = 256 * 1024


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int
    path: str
    host_header: str


class Http1Response:
    """Shaped like aiohttp's ``ClientResponse`` as the upstream client uses it: ``status``,
    ``headers`` (lower-case names), ``read()``, ``content.readany()``, ``release()``,
    ``close()``."""

    __slots__ = (
        "_chunks",
        "_conn",
        "_deadline",
        "_decoder",
        "_eof",
        "_error",
        "_idle",
        "_size",
        "_waiter",
        "headers",
        "status",
    )

    def __init__(self, conn: _Connection, idle: float, deadline: float) -> None:
        self._conn = conn
        self._idle = idle
        self._deadline = deadline
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: zlib._Decompress | None = None
        self.status = 0
        self.headers: dict[str, str] = {}

    @property
    def content(self) -> Http1Response:
        return self

    async def readany(self) -> bytes:
        """The bytes that arrived since the last call (b"" at the end of the body)."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            await self._wait()
        data = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        self._conn.resume()
        return data

    async def read(self) -> bytes:
        parts = []
        while chunk := await self.readany():
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Done with the response: a completed one leaves its connection to the pool."""
        if not self._eof:
            self._conn.close()

    def close(self) -> None:
        if not self._eof:
            self._conn.close()

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timeout = min(self._idle, self._deadline - loop.time())
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await waiter
        finally:
            self._waiter = None

    def _feed(self, data: bytes) -> None:
        if self._decoder is not None:
            data = self._decoder.decompress(data)
        if data:
            self._chunks.append(data)
            self._size += len(data)
            if self._size > _HIGH_WATER:
                self._conn.pause()
        self._wake()

    def _finish(self, error: BaseException | None) -> None:
        if error is None:
            if self._decoder is not None:
                tail = self._decoder.flush()
                if tail:
                    self._chunks.append(tail)
            self._eof = True
        elif not self._eof:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; answers one request at a time."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._response: Http1Response | None = None
        self._headers_ready: asyncio.Future[Http1Response] | None = None
        self._names: list[bytes] = []
        self._values: list[bytes] = []
        self._paused = False
        self._until_close = False  # the body has no length: it ends when the connection does
        self.received = False  # a byte of the current response arrived
        self.closed = False
        self.idle_since = 0.0

    # -- the request ------------------------------------------------------------------------

    def send(
        self, head: bytes, body: bytes, idle: float, deadline: float
    ) -> asyncio.Future[Http1Response]:
        if self._transport is None or self.closed:
            raise UpstreamDisconnected("the connection to the upstream is closed")
        loop = asyncio.get_running_loop()
        self._response = Http1Response(self, idle, deadline)
        self._headers_ready = loop.create_future()
        self._names.clear()
        self._values.clear()
        self._until_close = False
        self.received = False
        if len(body) <= _WRITE_PIECE:
            self._transport.write(head + body)
        else:
            self._transport.write(head)
            view = memoryview(body)
            for start in range(0, len(view), _WRITE_PIECE):
                self._transport.write(view[start : start + _WRITE_PIECE])
        return self._headers_ready

    def pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._transport is not None:
                self._transport.close()
        self._pool.forget(self)

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamProtocolError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamProtocolError(f"the upstream sent a malformed response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        if self._until_close and self._response is not None and exc is None:
            self._response._finish(None)  # a body without a length ends with the connection
            self._response = None
            return
        self._fail(UpstreamDisconnected("the upstream closed the connection"))

    # -- httptools callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._names.append(name)
        self._values.append(value)

    def on_headers_complete(self) -> None:
        response = self._response
        if response is None:
            return
        headers: dict[str, str] = {}
        for raw_name, raw_value in zip(self._names, self._values, strict=True):
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        response.headers = headers
        response.status = self._parser.get_status_code()
        self._until_close = "content-length" not in headers and "chunked" not in headers.get(
            "transfer-encoding", ""
        )
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            response._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            response._decoder = zlib.decompressobj()
        elif encoding != "identity":
            self._fail(UpstreamProtocolError(f"unsupported content-encoding {encoding!r}"))
            return
        ready = self._headers_ready
        if ready is not None and not ready.done():
            ready.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            self._response._feed(body)

    def on_message_complete(self) -> None:
        response = self._response
        keep = self._parser.should_keep_alive()
        self._response = None
        if response is not None:
            response._finish(None)
        if keep and not self.closed:
            self.resume()
            self._pool.release(self)
        else:
            self.close()

    def _fail(self, error: BaseException) -> None:
        ready = self._headers_ready
        if ready is not None and not ready.done():
            ready.set_exception(error)
        if self._response is not None:
            self._response._finish(error)
            self._response = None
        if not self.closed:
            self.close()


class _Pool:
    """Idle keep-alive connections per origin, and the count of all connections open."""

    def __init__(self, settings: UpstreamSettings) -> None:
        self._settings = settings
        self._idle: dict[tuple[str, str, int], collections.deque[_Connection]] = {}
        self._keys: dict[_Connection, tuple[str, str, int]] = {}
        self._room: asyncio.Future[None] | None = None
        self.open = 0

    def take(self, key: tuple[str, str, int], now: float) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if now - conn.idle_since > self._settings.keepalive_timeout:
                conn.close()
                continue
            return conn
        return None

    def reserve(self) -> None:
        """Count a connection being opened, before it is: the cap holds for concurrent
        connects too."""
        self.open += 1

    def unreserve(self) -> None:
        self.open -= 1
        self._wake()

    def track(self, conn: _Connection, key: tuple[str, str, int]) -> None:
        self._keys[conn] = key  # already counted by reserve()

    def release(self, conn: _Connection) -> None:
        key = self._keys.get(conn)
        if key is None:
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(key, collections.deque()).append(conn)
        self._wake()

    def _wake(self) -> None:
        if self._room is not None and not self._room.done():
            self._room.set_result(None)

    def forget(self, conn: _Connection) -> None:
        key = self._keys.pop(conn, None)
        if key is None:
            return
        self.open -= 1
        idle = self._idle.get(key)
        if idle is not None and conn in idle:
            idle.remove(conn)
        self._wake()

    async def turn(
        self, key: tuple[str, str, int], limit: int, within: float
    ) -> _Connection | None:
        """At the cap: wait for an idle connection to ``key`` (returned) or for room to open
        a new one (None), closing another origin's idle connection when that makes room;
        past ``within`` seconds, the TimeoutError is the caller's."""
        async with asyncio.timeout(within):
            while True:
                conn = self.take(key, time.monotonic())
                if conn is not None:
                    return conn
                if self.open < limit:
                    return None
                other = next((q for q in self._idle.values() if q), None)
                if other is not None:
                    other.popleft().close()
                    continue
                if self._room is None or self._room.done():
                    self._room = asyncio.get_running_loop().create_future()
                await asyncio.shield(self._room)

    def close_all(self) -> None:
        for conn in list(self._keys):
            conn.close()


class Http1Transport:
    """The ``Transport`` that upstream calls take by default (``upstream.client: lean``)."""

    def __init__(
        self, settings: UpstreamSettings, providers: Iterable[ProviderSettings] = ()
    ) -> None:
        self._settings = settings
        self._providers = tuple(providers)
        self._ssl: dict[str, ssl.SSLContext] = {}
        self._default_ssl: ssl.SSLContext | None = None
        self._pool = _Pool(settings)
        self._origins: dict[str, _Origin] = {}

    async def start(self) -> None:
        self._ssl = await asyncio.to_thread(tls.client_contexts, self._providers)
        self._default_ssl = await asyncio.to_thread(ssl.create_default_context)

    async def configure(self, providers: Iterable[ProviderSettings]) -> None:
        providers = tuple(providers)
        contexts = await asyncio.to_thread(tls.client_contexts, providers)
        for p in providers:
            if p.name in contexts:
                self._ssl[p.name] = contexts[p.name]
            else:
                self._ssl.pop(p.name, None)
        self._providers = providers

    async def close(self) -> None:
        self._pool.close_all()

    @property
    def open_connections(self) -> int:
        return self._pool.open

    async def post(
        self, provider: Provider, url: str, body: bytes, headers: Mapping[str, str]
    ) -> Http1Response:
        origin = self._origin(url)
        head = _head(origin, body, headers)
        t = provider.settings.timeouts
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline, first_byte = now + t.total, now + t.first_byte
        key = (origin.scheme, origin.host, origin.port)
        conn = self._pool.take(key, time.monotonic())
        limit = self._settings.max_connections
        if conn is None and limit and self._pool.open >= limit:
            conn = await self._pool.turn(key, limit, t.connect)
        if conn is not None:
            try:
                return await _exchange(conn, head, body, t.idle, deadline, first_byte)
            except UpstreamDisconnected:
                if conn.received:
                    raise
                # The server dropped an idle connection as we took it: once more, fresh.
        async with asyncio.timeout_at(first_byte):
            conn = await self._connect(provider, origin, key)
        return await _exchange(conn, head, body, t.idle, deadline, first_byte)

    async def _connect(
        self, provider: Provider, origin: _Origin, key: tuple[str, str, int]
    ) -> _Connection:
        context: ssl.SSLContext | None = None
        if origin.scheme == "https":
            context = self._ssl.get(provider.name) or self._default_ssl
        loop = asyncio.get_running_loop()
        self._pool.reserve()
        try:
            async with asyncio.timeout(provider.settings.timeouts.connect):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._pool),
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context is not None else None,
                )
        except BaseException:
            self._pool.unreserve()
            raise
        self._pool.track(conn, key)
        if conn.closed:  # lost before it was tracked: forget() found nothing to count down
            self._pool.forget(conn)
        return conn

    def _origin(self, url: str) -> _Origin:
        origin = self._origins.get(url)
        if origin is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidRequest(f"cannot call {parts.scheme!r} upstream URLs")
            default = 443 if parts.scheme == "https" else 80
            port = parts.port or default
            host_header = parts.hostname if port == default else f"{parts.hostname}:{port}"
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            origin = _Origin(parts.scheme, parts.hostname, port, path, host_header)
            self._origins[url] = origin
        return origin


async def _exchange(
    conn: _Connection, head: bytes, body: bytes, idle: float, deadline: float, first_byte: float
) -> Http1Response:
    """Send and wait for the response's headers until ``first_byte`` (loop time; a plain
    timer, cheaper than a timeout scope per call); a wait that ends otherwise (the timer,
    the client gone) closes the connection, whose response nobody will read."""
    ready = conn.send(head, body, idle, deadline)
    timer = asyncio.get_running_loop().call_at(first_byte, _expire, ready)
    try:
        return await ready
    except BaseException:
        conn.close()
        raise
    finally:
        timer.cancel()


def _expire(ready: asyncio.Future[Http1Response]) -> None:
    if not ready.done():
        ready.set_exception(TimeoutError())


_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


def _head(origin: _Origin, body: bytes, headers: Mapping[str, str]) -> bytes:
    lines = [f"POST {origin.path} HTTP/1.1", f"host: {origin.host_header}"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            # A forwarded client header must never split the request in two.
            raise InvalidRequest(f"header {name!r} has a line break in its value")
        if name.lower() not in _OWN_HEADERS:
            lines.append(f"{name}: {value}")
    lines.append(f"content-length: {len(body)}")
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidRequest("a header value is not ISO-8859-1 text") from None
