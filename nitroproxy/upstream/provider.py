"""Provider adapters and the one table that maps foreign failures to ``core.errors``.

A provider knows its URLs and headers; everything else (sending, timeouts, reading) is
shared in ``providers.client``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from nitroproxy.config import ProviderSettings
from nitroproxy.core import anthropic_wire, openai_wire
from nitroproxy.core.errors import (
    ProxyError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from nitroproxy.core.types import ApiFormat, Endpoint

_PATHS = {
    (ApiFormat.OPENAI, Endpoint.CHAT): "/chat/completions",
    (ApiFormat.OPENAI, Endpoint.COMPLETIONS): "/completions",
    (ApiFormat.OPENAI, Endpoint.EMBEDDINGS): "/embeddings",
    (ApiFormat.ANTHROPIC, Endpoint.MESSAGES): "/messages",
}

# Statuses worth another deployment: the next one may well succeed. 4xx other than 408/409/
# 429 describe the request itself and would fail the same way anywhere.
RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529})


class Provider:
    """One configured upstream. Headers are built once: they hold the credential, so they
    live here and nowhere else (never logged, never in a record)."""

    __slots__ = ("headers", "kind", "name", "settings")

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.kind = settings.kind
        self.headers = self._headers()

    def url(self, endpoint: Endpoint) -> str:
        path = _PATHS.get((self.kind, endpoint))
        if path is None:
            raise UpstreamError(
                f"provider '{self.name}' ({self.kind.value}) does not serve {endpoint.value}",
                code="unsupported_endpoint",
            )
        return self.settings.base_url + path

    def _headers(self) -> dict[str, str]:
        s = self.settings
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self.kind is ApiFormat.ANTHROPIC:
            headers["anthropic-version"] = s.anthropic_version
            if s.api_key:
                headers["x-api-key"] = s.api_key
        elif s.api_key:
            if s.auth_header == "authorization":
                headers["authorization"] = f"Bearer {s.api_key}"
            else:
                headers[s.auth_header] = s.api_key
        headers.update(s.headers)
        return headers

    def __repr__(self) -> str:
        return f"Provider({self.name!r}, {self.kind.value})"


def status_error(
    provider: Provider, status: int, body: bytes, headers: Mapping[str, str]
) -> ProxyError:
    """An upstream 4xx/5xx as an ``UpstreamStatusError`` carrying its body for the client."""
    try:
        parsed: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    if provider.kind is ApiFormat.ANTHROPIC:
        etype, message = anthropic_wire.parse_anthropic_error(parsed)
        code = param = None
    else:
        etype, message, code, param = openai_wire.parse_error(parsed)
    if message is None:
        text = body[:200].decode("utf-8", "replace").strip()
        message = f"upstream returned HTTP {status}" + (f": {text}" if text else "")
    return UpstreamStatusError(
        status,
        message,
        body=body if parsed is not None else None,
        body_format=provider.kind.value,
        error_type=etype,
        code=code,
        param=param,
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


def transport_error(provider: Provider, exc: BaseException) -> ProxyError:
    """The single mapping from aiohttp and socket failures to our errors."""
    name = provider.name
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


def is_retryable(error: ProxyError) -> bool:
    if isinstance(error, UpstreamStatusError):
        return error.upstream_status in RETRYABLE_STATUSES
    if isinstance(error, UpstreamError):
        return error.code != "upstream_tls_error" and error.code != "unsupported_endpoint"
    return False
