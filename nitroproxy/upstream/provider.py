"""One configured upstream: its settings, its format's adapter and its request headers.

Headers are built once: they hold the credential, so they live here and nowhere else (never
logged, never in a record)."""

from __future__ import annotations

from collections.abc import Mapping

from nitroproxy.config import ProviderSettings
from nitroproxy.core.errors import UpstreamError
from nitroproxy.core.types import ApiFormat, Endpoint
from nitroproxy.upstream.adapter import Adapter, Outbound
from nitroproxy.upstream.anthropic import AnthropicAdapter
from nitroproxy.upstream.errors import ErrorMap
from nitroproxy.upstream.openai import OpenAIAdapter

ADAPTERS: dict[ApiFormat, Adapter] = {
    ApiFormat.OPENAI: OpenAIAdapter(),
    ApiFormat.ANTHROPIC: AnthropicAdapter(),
}


class Provider:
    __slots__ = ("adapter", "errors", "headers", "kind", "name", "settings")

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.kind = settings.kind
        self.adapter = ADAPTERS[settings.kind]
        self.headers = self.adapter.headers(settings)
        self.errors = ErrorMap(self.name)

    def serves(self, endpoint: Endpoint) -> bool:
        return self.adapter.path(endpoint, self.settings) is not None

    def url(self, endpoint: Endpoint) -> str:
        path = self.adapter.path(endpoint, self.settings)
        if path is None:
            raise UpstreamError(
                f"provider '{self.name}' ({self.kind.value}) does not serve {endpoint.value}",
                code="unsupported_endpoint",
            )
        return self.settings.base_url + path

    def request_headers(self, call: Outbound) -> Mapping[str, str]:
        """This call's headers: the provider's, plus what the call may carry upstream."""
        extra = self.adapter.call_headers(call, self.settings)
        return {**self.headers, **extra} if extra else self.headers

    def __repr__(self) -> str:
        return f"Provider({self.name!r}, {self.kind.value})"
