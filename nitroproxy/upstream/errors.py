"""Foreign failures become ``core.errors`` here, and only here.

``ErrorMap`` (``provider.errors``) wraps every await on the upstream connection: aiohttp,
socket, TLS and timeout errors leave it as a ``ProxyError`` whose ``__cause__`` is the
original exception (as httpx maps httpcore's errors), so logs and debuggers keep the whole
story while the rest of the proxy sees one error tree. An upstream 4xx/5xx becomes an
``UpstreamStatusError`` through ``status_error``, parsed by the provider's own adapter.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING

import aiohttp

from nitroproxy.core.errors import ProxyError, UpstreamError, UpstreamStatusError, UpstreamTimeout

if TYPE_CHECKING:
    from nitroproxy.upstream.provider import Provider

# Statuses worth another deployment: the next one may well succeed. 4xx other than 408/409/
# 429 describe the request itself and would fail the same way anywhere.
RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529})
FOREIGN = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class UpstreamDisconnected(ConnectionError):
    """The upstream closed the connection before its response ended (``upstream.http1``)."""


class UpstreamProtocolError(ConnectionError):
    """The upstream's bytes are not an HTTP/1.1 response (``upstream.http1``)."""


def transport_error(provider_name: str, exc: BaseException) -> ProxyError:
    """The single table from aiohttp, socket and ``upstream.http1`` failures to ours."""
    name = provider_name
    if isinstance(exc, UpstreamDisconnected):
        return UpstreamError(
            f"provider '{name}' closed the connection", code="upstream_disconnected"
        )
    if isinstance(exc, UpstreamProtocolError):
        return UpstreamError(f"provider '{name}': {exc}", code="malformed_response")
    if isinstance(exc, ConnectionRefusedError | socket.gaierror):
        return UpstreamError(f"provider '{name}' is unreachable", code="upstream_unreachable")
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamTimeout(f"provider '{name}' timed out")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        return UpstreamError(
            f"provider '{name}': TLS certificate verification failed",
            code="upstream_tls_error",
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError(f"provider '{name}' is unreachable", code="upstream_unreachable")
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return UpstreamError(
            f"provider '{name}' closed the connection", code="upstream_disconnected"
        )
    if isinstance(exc, aiohttp.ClientError | OSError):
        return UpstreamError(f"provider '{name}' failed: {type(exc).__name__}")
    return UpstreamError(f"provider '{name}' failed unexpectedly")


class ErrorMap:
    """``with provider.errors: await ...``: the one context manager around upstream I/O.
    Foreign errors leave it as a ``ProxyError`` raised ``from`` the original.

    A class, not ``@contextmanager``: it wraps every chunk of every stream, and one instance
    per provider (it holds no state) costs no allocation there."""

    __slots__ = ("provider",)

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and isinstance(exc, FOREIGN) and not isinstance(exc, ProxyError):
            raise transport_error(self.provider, exc) from exc


def status_error(
    provider: Provider, status: int, body: bytes, headers: Mapping[str, str]
) -> UpstreamStatusError:
    """An upstream 4xx/5xx as an ``UpstreamStatusError`` carrying its body for the client."""
    parsed = provider.adapter.parse_error(body)
    message = parsed.message
    if message is None:
        text = body[:200].decode("utf-8", "replace").strip()
        message = f"upstream returned HTTP {status}" + (f": {text}" if text else "")
    return UpstreamStatusError(
        status,
        message,
        body=body if parsed.is_json else None,
        body_format=provider.kind.value,
        error_type=parsed.type,
        code=parsed.code,
        param=parsed.param,
        retry_after=retry_after(headers),
    )


def retry_after(headers: Mapping[str, str]) -> float | None:
    for name in ("retry-after-ms", "retry-after"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            return None  # an HTTP-date; rare from LLM APIs, and a default cool-down applies
        return seconds / 1000 if name == "retry-after-ms" else seconds
    return None


def is_retryable(error: ProxyError) -> bool:
    """Worth trying the next deployment: transport failures, timeouts, 408/409/429/5xx."""
    if isinstance(error, UpstreamStatusError):
        return error.upstream_status in RETRYABLE_STATUSES
    if isinstance(error, UpstreamError):
        return error.code != "upstream_tls_error" and error.code != "unsupported_endpoint"
    return False
