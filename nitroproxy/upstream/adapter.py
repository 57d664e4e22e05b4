"""What an adapter is: everything the proxy must know about one upstream API format.

There is one adapter per upstream format (``upstream.openai``, ``upstream.anthropic``); they
are the only modules that branch on which format an upstream speaks. Each answers four
questions, as TensorZero's providers do: where a call goes (``path``), what is sent
(``headers``, ``call_headers``, ``make_body``), what came back (``parse_answer``,
``parse_error``) and how its stream reaches the client (``stream``). All of it is pure:
bytes and dicts in and out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from nitroproxy.config import ProviderSettings
from nitroproxy.core.pipeline import Counter, UpstreamStream
from nitroproxy.core.responses_output import ResponsesBuilder
from nitroproxy.core.responses_tools import tool_names
from nitroproxy.core.types import ApiFormat, Endpoint, Usage


class Outbound(Protocol):
    """The parts of a call an adapter reads (``proxy.Call`` has them)."""

    @property
    def body(self) -> Mapping[str, Any]: ...

    @property
    def client_format(self) -> ApiFormat: ...

    @property
    def endpoint(self) -> Endpoint: ...

    @property
    def stream(self) -> bool: ...

    @property
    def wants_usage(self) -> bool: ...

    @property
    def default_max_tokens(self) -> int: ...

    @property
    def client_headers(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An upstream error body as parsed by its own format; ``is_json`` when it was JSON that
    a client of the same format can be shown as it is."""

    type: str | None = None
    message: str | None = None
    code: str | None = None
    param: str | None = None
    is_json: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete non-streamed answer, already in the client's format.

    ``document`` is ``body`` parsed (the opt-in cache stores it); ``output_text`` is the
    generated text, filled in only when the upstream reported no usage and the proxy must
    count it."""

    body: bytes
    document: dict[str, Any]
    usage: Usage | None
    output_text: str = ""


@dataclass(frozen=True, slots=True)
class Context:
    """What a translation needs beyond the call: who answered, and the names and numbers of
    the events and bodies the proxy writes itself."""

    provider: str
    model: str
    created: int
    message_id: str
    prompt_tokens: int
    stem: str = ""
    """What the ids the proxy makes for this call share (``resp_<stem>``, ...)."""
    native_responses: bool = False
    """The provider speaks the Responses API itself (``ProviderSettings.responses``)."""


class Adapter(Protocol):
    kind: ApiFormat

    def path(self, endpoint: Endpoint, settings: ProviderSettings) -> str | None:
        """The upstream path for a client endpoint, or None if this provider has no such API."""
        ...

    def headers(self, settings: ProviderSettings) -> dict[str, str]:
        """The headers of every request to this provider, credential included (built once)."""
        ...

    def call_headers(self, call: Outbound, settings: ProviderSettings) -> dict[str, str]:
        """The client's headers this call carries upstream (``settings.forward_headers``,
        only to an upstream of the client's own format); usually none."""
        ...

    def make_body(self, call: Outbound, upstream_model: str, settings: ProviderSettings) -> bytes:
        """The upstream request body for ``call``, translated if the client speaks the other
        format. Raises ``InvalidRequest`` for what cannot be translated."""
        ...

    def parse_answer(self, raw: bytes, call: Outbound, ctx: Context) -> Answer:
        """A non-streamed upstream body as the client's answer. Raises ``UpstreamError``
        when it is not a JSON object of this format."""
        ...

    def parse_error(self, body: bytes) -> ErrorInfo: ...

    def stream(self, call: Outbound, counter: Counter | None, ctx: Context) -> UpstreamStream:
        """The pure stream transform from this format to the client's."""
        ...


def responses_builder(call: Outbound, ctx: Context) -> ResponsesBuilder:
    """What writes a Responses client's answer from another API's: ids from the call, the
    model that answered, and the prompt estimate until the upstream's usage arrives."""
    return ResponsesBuilder(
        call.body,
        stem=ctx.stem,
        created_at=ctx.created,
        model=ctx.model,
        names=tool_names(call.body),
        usage=Usage(prompt_tokens=ctx.prompt_tokens),
    )


def forwarded(call: Outbound, settings: ProviderSettings) -> dict[str, str]:
    """The allowed client headers of a call, for an upstream of the client's format."""
    if call.client_format is not settings.kind:
        return {}
    headers = call.client_headers
    return {name: headers[name] for name in settings.forward_headers if name in headers}
