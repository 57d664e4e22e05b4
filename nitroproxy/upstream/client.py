"""The one outbound HTTP client: a shared session, per-provider timeouts, mapped errors."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable

import aiohttp

from nitroproxy.config import ProviderSettings, UpstreamSettings
from nitroproxy.core.errors import ProxyError
from nitroproxy.core.types import Endpoint
from nitroproxy.security import tls
from nitroproxy.upstream.provider import Provider, status_error, transport_error

_FOREIGN = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class UpstreamClient:
    """Owns the ``ClientSession``: one connection pool with keep-alive for every provider."""

    def __init__(
        self, settings: UpstreamSettings, providers: Iterable[ProviderSettings] = ()
    ) -> None:
        self._settings = settings
        self._providers = tuple(providers)
        # Providers with their own trust settings (nitroproxy.tls); the others use
        # aiohttp's default context (ssl=True), which verifies against the system store.
        self._ssl: dict[str, ssl.SSLContext] = {}
        self._session: aiohttp.ClientSession | None = None

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

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("UpstreamClient is not started")
        return self._session

    async def send(
        self, provider: Provider, endpoint: Endpoint, body: bytes
    ) -> aiohttp.ClientResponse:
        """POST and wait for a successful status line; any failure becomes a ProxyError.

        The caller owns the returned response and must release or close it.
        """
        t = provider.settings.timeouts
        timeout = aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, sock_read=t.idle)
        try:
            async with asyncio.timeout(t.first_byte):
                resp = await self.session.post(
                    provider.url(endpoint),
                    data=body,
                    headers=provider.headers,
                    timeout=timeout,
                    ssl=self._ssl.get(provider.name, True),
                )
        except ProxyError:
            raise
        except _FOREIGN as exc:
            raise transport_error(provider, exc) from None
        if resp.status >= 400:
            try:
                payload = await resp.read()
            except _FOREIGN:
                payload = b""
            finally:
                resp.release()
            raise status_error(provider, resp.status, payload, resp.headers)
        return resp

    @staticmethod
    async def read(provider: Provider, resp: aiohttp.ClientResponse) -> bytes:
        try:
            return await resp.read()
        except _FOREIGN as exc:
            raise transport_error(provider, exc) from None

    @staticmethod
    async def next_chunk(provider: Provider, resp: aiohttp.ClientResponse) -> bytes:
        """The next body bytes as they arrive (b"" at the end). The idle timeout is the
        request's ``sock_read``."""
        try:
            return await resp.content.readany()
        except _FOREIGN as exc:
            raise transport_error(provider, exc) from None

    @classmethod
    async def first_chunk(cls, provider: Provider, resp: aiohttp.ClientResponse) -> bytes:
        async with asyncio.timeout(provider.settings.timeouts.first_byte):
            return await cls.next_chunk(provider, resp)
