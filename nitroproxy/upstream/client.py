"""The one outbound HTTP client: a transport, per-provider timeouts, mapped errors.

A ``Transport`` posts a body and returns a response shaped like aiohttp's
``ClientResponse`` (``status``, ``headers``, ``read()``, ``content.readany()``,
``release()``, ``close()``): the real one is a shared ``aiohttp.ClientSession``, and tests
pass a fake that answers from a handler (as httpx's ``MockTransport`` does), so the gateway's
failover and settlement run without sockets.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Protocol

import aiohttp

from nitroproxy.config import ProviderSettings, UpstreamSettings
from nitroproxy.core.errors import ProxyError
from nitroproxy.core.types import Endpoint
from nitroproxy.security import tls
from nitroproxy.upstream.errors import status_error
from nitroproxy.upstream.provider import Provider


class Body(Protocol):
    async def readany(self) -> bytes: ...


class Response(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> Body: ...

    async def read(self) -> bytes: ...

    def release(self) -> Any: ...

    def close(self) -> None: ...


class Transport(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def configure(self, providers: Iterable[ProviderSettings]) -> None:
        """Take reloaded provider settings; raises ``ConfigError`` if one cannot be used."""
        ...

    async def post(
        self, provider: Provider, url: str, body: bytes, headers: Mapping[str, str]
    ) -> Response:
        """Send with ``headers`` and wait for the status line, at most the provider's
        ``timeouts.first_byte`` (a ``TimeoutError`` past it); any status comes back,
        foreign errors raise."""
        ...


class AiohttpTransport:
    """Owns the ``ClientSession``: one connection pool with keep-alive for every provider."""

    def __init__(
        self, settings: UpstreamSettings, providers: Iterable[ProviderSettings] = ()
    ) -> None:
        self._settings = settings
        self._providers = tuple(providers)
        # Providers with their own trust settings (security.tls); the others use aiohttp's
        # default context (ssl=True), which verifies against the system store.
        self._ssl: dict[str, ssl.SSLContext] = {}
        self._timeouts = {p.name: _timeout(p) for p in self._providers}
        self._session: aiohttp.ClientSession | None = None

    async def configure(self, providers: Iterable[ProviderSettings]) -> None:
        """Take reloaded provider settings (SIGHUP): timeouts and trust for each. A provider
        the reload removed keeps its entries, for the attempts still using it."""
        providers = tuple(providers)
        contexts = await asyncio.to_thread(tls.client_contexts, providers)
        for p in providers:
            self._timeouts[p.name] = _timeout(p)
            if p.name in contexts:
                self._ssl[p.name] = contexts[p.name]
            else:
                self._ssl.pop(p.name, None)
        self._providers = providers

    async def start(self) -> None:
        self._ssl = await asyncio.to_thread(tls.client_contexts, self._providers)
        connector = aiohttp.TCPConnector(
            limit=self._settings.max_connections,
            limit_per_host=self._settings.max_connections_per_host,
            keepalive_timeout=self._settings.keepalive_timeout,
            ttl_dns_cache=300,
        )
        # Timeouts are per request (each provider has its own); none at session level.
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self, provider: Provider, url: str, body: bytes, headers: Mapping[str, str]
    ) -> aiohttp.ClientResponse:
        if self._session is None:
            raise RuntimeError("AiohttpTransport is not started")
        data: bytes | AsyncIterator[memoryview] = body
        if len(body) > _LARGE_BODY:
            # Handed over whole, the part of a large body the socket does not take at once
            # is copied into the transport's buffer: a third copy beside the parsed request
            # and this body. In pieces, with a drain after each, that copy stays small.
            data = _pieces(body)
            headers = {**headers, "Content-Length": str(len(body))}
        async with asyncio.timeout(provider.settings.timeouts.first_byte):
            return await self._session.post(
                url,
                data=data,
                headers=headers,
                timeout=self._timeouts[provider.name],
                ssl=self._ssl.get(provider.name, True),
            )


def _timeout(p: ProviderSettings) -> aiohttp.ClientTimeout:
    t = p.timeouts
    return aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, sock_read=t.idle)


_LARGE_BODY = 1024 * 1024
_PIECE = 256 * 1024


async def _pieces(body: bytes) -> AsyncIterator[memoryview]:
    view = memoryview(body)
    for start in range(0, len(view), _PIECE):
        yield view[start : start + _PIECE]


class UpstreamClient:
    """Sends through a transport; every failure leaves as a ``ProxyError``."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def start(self) -> None:
        await self.transport.start()

    async def close(self) -> None:
        await self.transport.close()

    async def configure(self, providers: Iterable[ProviderSettings]) -> None:
        await self.transport.configure(providers)

    async def send(
        self,
        provider: Provider,
        endpoint: Endpoint,
        body: bytes,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """POST and wait for a successful status line within the provider's first-byte
        timeout. The caller owns the returned response and must release or close it.
        ``headers`` default to the provider's own."""
        url = provider.url(endpoint)
        with provider.errors:
            resp = await self.transport.post(
                provider, url, body, headers if headers is not None else provider.headers
            )
        if resp.status >= 400:
            payload = b""
            try:
                with provider.errors:
                    payload = await resp.read()
            except ProxyError:
                pass  # the status says enough
            finally:
                resp.release()
            raise status_error(provider, resp.status, payload, resp.headers)
        return resp

    @staticmethod
    async def read(provider: Provider, resp: Response) -> bytes:
        with provider.errors:
            return await resp.read()

    @staticmethod
    async def next_chunk(provider: Provider, resp: Response) -> bytes:
        """The next body bytes as they arrive (b"" at the end). The idle timeout is the
        transport's (``sock_read``)."""
        with provider.errors:
            return await resp.content.readany()

    @staticmethod
    async def first_chunk(provider: Provider, resp: Response) -> bytes:
        with provider.errors:
            async with asyncio.timeout(provider.settings.timeouts.first_byte):
                return await resp.content.readany()
