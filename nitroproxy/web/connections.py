"""Client connections: how many may be open, how long a request's head may take, and
aiohttp's own refusals in the API's JSON shape.

aiohttp bounds an idle keep-alive connection (``keepalive_timeout``) but not a client that
trickles its request head in a byte a second, nor the number of connections (each costs a
descriptor), and its parser refuses a bad request (too many or too long headers) as plain
text. ``ListenSite`` is a ``TCPSite`` whose protocol factory answers a connection past
``server.limits.connections`` with a 503 and closes it; ``Connection`` is aiohttp's
``RequestHandler`` plus a head deadline (``server.timeouts.header``, from connecting or from
the first byte after the previous answer until the middleware sees the request) and a
``handle_error`` that renders JSON. ``Tracker`` counts open connections and requests in
progress, for the limit and for graceful shutdown.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from nitroproxy.core.error_shapes import error_payload
from nitroproxy.core.errors import (
    HeadersTooLarge,
    InvalidRequest,
    Overloaded,
    PayloadTooLarge,
    ProxyError,
    RequestTimeout,
    status_of,
)
from nitroproxy.core.types import ApiFormat
from nitroproxy.web.errors import error_response, family_of

_REASONS = {408: "Request Timeout", 503: "Service Unavailable"}


def raw_response(error: ProxyError) -> bytes:
    """A whole HTTP/1.1 error response, for when no handler runs (OpenAI's shape: the
    request's path is unknown)."""
    body = orjson.dumps(error_payload(error, ApiFormat.OPENAI))
    status = status_of(error)
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


_TOO_MANY = raw_response(
    Overloaded("the server has as many open connections as it may", code="too_many_connections")
)


class Tracker:
    """Open connections and requests in progress (one event loop; no lock)."""

    __slots__ = ("connections", "idle", "on_refused", "requests")

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.idle = asyncio.Event()  # set while no request is in progress
        self.idle.set()
        self.on_refused: Any = None  # Callable[[str], None]: a metrics hook

    def refused(self, reason: str) -> None:
        if self.on_refused is not None:
            self.on_refused(reason)

    def request_started(self, request: web.BaseRequest) -> None:
        self.requests += 1
        self.idle.clear()
        protocol = request.protocol
        if isinstance(protocol, Connection):
            protocol.head_done()

    def request_ended(self, request: web.BaseRequest, *, last: bool) -> None:
        """``last``: the answer closes the connection (what follows is not a request)."""
        self.requests -= 1
        if self.requests == 0:
            self.idle.set()
        protocol = request.protocol
        if isinstance(protocol, Connection):
            protocol.request_done(last=last)


class Connection(web.RequestHandler):
    def __init__(
        self,
        manager: web.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        tracker: Tracker,
        header_timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._event_loop = loop
        self._tracker = tracker
        self._header_timeout = header_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._tracker.connections += 1
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._tracker.connections -= 1
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and not self._busy:
            self._arm()  # the first byte of the next request's head
        super().data_received(data)

    def head_done(self) -> None:
        """The request's head is parsed and a handler runs: no deadline until it ends."""
        self._busy = True
        self._disarm()

    def request_done(self, *, last: bool) -> None:
        # After a last answer aiohttp may still read (and discard) the rest of a body for
        # a while: those bytes are not a new request's head.
        self._busy = last

    def _arm(self) -> None:
        self._head_timer = self._event_loop.call_later(self._header_timeout, self._head_expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._busy or self.transport is None:
            return
        self._tracker.refused("header_timeout")
        error = RequestTimeout(f"the request head did not arrive within {self._header_timeout:g} s")
        self.transport.write(raw_response(error))
        self.force_close()  # closes after the buffered answer is written

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse or handle, as API JSON."""
        if status >= 500:
            self.log_exception("Error handling request", exc_info=exc)
            error: ProxyError = ProxyError("internal error")
        else:
            self._tracker.refused("bad_request")
            error = _parser_error(status, exc)
        response = error_response(error, family_of(request.path))
        response.force_close()
        return response


def _parser_error(status: int, exc: BaseException | None) -> ProxyError:
    # The parser's own messages quote the offending line, which may hold a credential:
    # say what was wrong, not what was sent.
    if isinstance(exc, LineTooLong):
        return HeadersTooLarge("a line of the request head is longer than the server allows")
    if isinstance(exc, BadHttpMessage) and "too many headers" in exc.message.lower():
        return HeadersTooLarge("the request has more headers than the server allows")
    if status == 413:
        return PayloadTooLarge("the request body is larger than the server's limit")
    return InvalidRequest("the request is not valid HTTP/1.1", code="bad_request")


class ListenSite(web.BaseSite):
    """A TCP listener whose connections are ``Connection``s, at most ``limit`` at once."""

    __slots__ = ("_host", "_kwargs", "_limit", "_port", "_reuse_port", "_tracker")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        tracker: Tracker,
        limit: int,
        header_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 1024,
        reuse_port: bool = False,
        **handler_kwargs: Any,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._reuse_port = reuse_port  # one of several workers on one port (web.workers)
        self._host = host
        self._port = port
        self._tracker = tracker
        self._limit = limit
        self._kwargs = {"header_timeout": header_timeout, **handler_kwargs}

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None

        def factory() -> asyncio.Protocol:
            if self._tracker.connections >= self._limit:
                self._tracker.refused("connections")
                return _Refuse()
            return Connection(server, loop=loop, tracker=self._tracker, **self._kwargs)

        self._server = await loop.create_server(
            factory,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_port=self._reuse_port or None,
        )


class _Refuse(asyncio.Protocol):
    """A connection past the limit: told so in JSON, then closed, never read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_TOO_MANY)
        transport.close()
