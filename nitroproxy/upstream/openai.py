"""The OpenAI-format upstream (OpenAI and every OpenAI-compatible server): chat completions,
legacy completions and embeddings; a Messages client's call is translated to chat.

A Responses API call goes as it came to a provider with ``responses: true`` (OpenAI itself:
its store, ``previous_response_id`` and input_tokens work there), and is translated to chat
completions for any other, where stored state is refused with a 400 that says why."""

from __future__ import annotations

from typing import Any

import orjson

from nitroproxy.config import ProviderSettings
from nitroproxy.core import (
    anthropic_wire,
    chat_request,
    openai_wire,
    responses_request,
    responses_stream,
    responses_wire,
)
from nitroproxy.core.errors import UpstreamError
from nitroproxy.core.pipeline import Counter, OpenAIStream, ResponsesStream, UpstreamStream
from nitroproxy.core.types import ApiFormat, Endpoint
from nitroproxy.upstream.adapter import (
    Answer,
    Context,
    ErrorInfo,
    Outbound,
    forwarded,
    responses_builder,
)

_PATHS = {
    Endpoint.CHAT: "/chat/completions",
    Endpoint.COMPLETIONS: "/completions",
    Endpoint.EMBEDDINGS: "/embeddings",
    Endpoint.MESSAGES: "/chat/completions",  # translated
    Endpoint.RESPONSES: "/chat/completions",  # translated, unless the provider has it
}
# Only a provider with the Responses API has these.
_NATIVE_PATHS = {
    Endpoint.RESPONSES: "/responses",
    Endpoint.INPUT_TOKENS: "/responses/input_tokens",
}


class OpenAIAdapter:
    kind = ApiFormat.OPENAI

    def path(self, endpoint: Endpoint, settings: ProviderSettings) -> str | None:
        if settings.responses and endpoint in _NATIVE_PATHS:
            return _NATIVE_PATHS[endpoint]
        return _PATHS.get(endpoint)

    def call_headers(self, call: Outbound, settings: ProviderSettings) -> dict[str, str]:
        return forwarded(call, settings)

    def headers(self, settings: ProviderSettings) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if settings.api_key:
            if settings.auth_header == "authorization":
                headers["authorization"] = f"Bearer {settings.api_key}"
            else:
                headers[settings.auth_header] = settings.api_key
        headers.update(settings.headers)
        return headers

    def make_body(self, call: Outbound, upstream_model: str, settings: ProviderSettings) -> bytes:
        if call.client_format is ApiFormat.ANTHROPIC:
            return orjson.dumps(
                chat_request.messages_to_chat_request(call.body, upstream_model=upstream_model)
            )
        if call.endpoint is Endpoint.RESPONSES and not settings.responses:
            return orjson.dumps(
                responses_request.responses_to_chat_request(
                    call.body, upstream_model=upstream_model
                )
            )
        body = dict(call.body)
        body["model"] = upstream_model
        body.pop("provider", None)
        if (
            call.stream
            and settings.stream_usage
            and call.endpoint in (Endpoint.CHAT, Endpoint.COMPLETIONS)
            and not call.wants_usage
        ):
            # Ask for usage so the record is the provider's count; the stream transform takes
            # it back out, so the client's stream is byte for byte what it asked for.
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
        return orjson.dumps(body)

    def parse_answer(self, raw: bytes, call: Outbound, ctx: Context) -> Answer:
        parsed = _object(raw, ctx.provider)
        if call.endpoint is Endpoint.INPUT_TOKENS:
            return Answer(raw, parsed, None)  # a count: nothing generated, nothing to bill
        if call.endpoint is Endpoint.RESPONSES and ctx.native_responses:
            usage = responses_wire.usage_from_responses(parsed.get("usage"))
            text = "" if usage is not None else "".join(responses_wire.response_texts(parsed))
            return Answer(raw, parsed, usage, text)
        usage = openai_wire.usage_from(parsed.get("usage"))
        text = "" if usage is not None else "".join(openai_wire.chunk_texts(parsed))
        if call.endpoint is Endpoint.RESPONSES:
            answer = responses_stream.chat_to_response(parsed, responses_builder(call, ctx))
            return Answer(orjson.dumps(answer), answer, usage, text)
        if call.client_format is ApiFormat.OPENAI:
            return Answer(raw, parsed, usage, text)
        answer = anthropic_wire.chat_response_to_messages(parsed, model=ctx.model)
        return Answer(orjson.dumps(answer), answer, usage, text)

    def parse_error(self, body: bytes) -> ErrorInfo:
        is_json = _is_json(body)
        etype, message, code, param = openai_wire.parse_error(body)
        return ErrorInfo(etype, message, code, param, is_json)

    def stream(self, call: Outbound, counter: Counter | None, ctx: Context) -> UpstreamStream:
        if call.endpoint is Endpoint.RESPONSES and ctx.native_responses:
            return ResponsesStream(counter=counter)
        responses = call.endpoint is Endpoint.RESPONSES
        return OpenAIStream(
            client=call.client_format,
            counter=counter,
            strip_usage=not call.wants_usage,
            model=ctx.model,
            message_id=ctx.message_id,
            prompt_tokens=ctx.prompt_tokens,
            wants_usage=call.wants_usage,
            responses=responses_builder(call, ctx) if responses else None,
        )


def _object(raw: bytes, provider: str) -> dict[str, Any]:
    try:
        parsed: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UpstreamError(
            f"provider '{provider}' sent a malformed response", code="malformed_response"
        )
    return parsed


def _is_json(body: bytes) -> bool:
    if not body:
        return False
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True
