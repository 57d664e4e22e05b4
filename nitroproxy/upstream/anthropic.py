"""The Anthropic Messages upstream; chat completions and Responses API calls are translated to
it. Anthropic has no embeddings and no legacy completions, so those calls skip its
deployments.

A Messages client's own ``anthropic-beta`` and ``anthropic-version`` go with its call when the
provider's ``forward_headers`` allow them (they do by default): Claude Code turns features on
with betas, and a real Anthropic upstream needs them to accept its requests. Token counting
(Claude Code's ``/context``; a Responses client's input_tokens, translated) goes to
``/messages/count_tokens``, which generates nothing and costs nothing.
"""

from __future__ import annotations

from typing import Any

import orjson

from nitroproxy.config import ProviderSettings
from nitroproxy.core import anthropic_request, anthropic_wire, responses_anthropic, usage_wire
from nitroproxy.core.json_values import count
from nitroproxy.core.pipeline import AnthropicStream, Counter
from nitroproxy.core.responses_stream import message_to_response
from nitroproxy.core.types import ApiFormat, Endpoint
from nitroproxy.upstream.adapter import (
    Answer,
    Context,
    ErrorInfo,
    Outbound,
    forwarded,
    responses_builder,
)
from nitroproxy.upstream.openai import _is_json, _object

_PATHS = {
    Endpoint.MESSAGES: "/messages",
    Endpoint.CHAT: "/messages",  # translated
    Endpoint.RESPONSES: "/messages",  # translated
    Endpoint.COUNT_TOKENS: "/messages/count_tokens",
    Endpoint.INPUT_TOKENS: "/messages/count_tokens",  # translated
}
# What count_tokens takes of a Messages body (it refuses max_tokens, stream and sampling).
_COUNTED = ("model", "messages", "system", "tools", "tool_choice", "thinking")


class AnthropicAdapter:
    kind = ApiFormat.ANTHROPIC

    def path(self, endpoint: Endpoint, settings: ProviderSettings) -> str | None:
        return _PATHS.get(endpoint)

    def headers(self, settings: ProviderSettings) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "anthropic-version": settings.anthropic_version,
        }
        if settings.api_key:
            headers["x-api-key"] = settings.api_key
        headers.update(settings.headers)
        return headers

    def call_headers(self, call: Outbound, settings: ProviderSettings) -> dict[str, str]:
        return forwarded(call, settings)

    def make_body(self, call: Outbound, upstream_model: str, settings: ProviderSettings) -> bytes:
        body: dict[str, Any]
        if call.endpoint in (Endpoint.RESPONSES, Endpoint.INPUT_TOKENS):
            body = responses_anthropic.responses_to_messages_request(
                call.body,
                upstream_model=upstream_model,
                default_max_tokens=call.default_max_tokens,
            )
        elif call.client_format is ApiFormat.OPENAI:
            body = anthropic_request.chat_to_messages_request(
                call.body,
                upstream_model=upstream_model,
                default_max_tokens=call.default_max_tokens,
            )
        else:
            body = dict(call.body)
            body["model"] = upstream_model
        if call.endpoint is Endpoint.INPUT_TOKENS:
            body = {key: body[key] for key in _COUNTED if key in body}
        return orjson.dumps(body)

    def parse_answer(self, raw: bytes, call: Outbound, ctx: Context) -> Answer:
        parsed = _object(raw, ctx.provider)
        if call.endpoint is Endpoint.COUNT_TOKENS:
            return Answer(raw, parsed, None)  # a count: nothing generated, nothing to bill
        if call.endpoint is Endpoint.INPUT_TOKENS:
            answer = usage_wire.count_answer(call.endpoint, count(parsed.get("input_tokens")))
            return Answer(orjson.dumps(answer), answer, None)
        raw_usage = parsed.get("usage")
        usage = (
            anthropic_wire.usage_from_anthropic(raw_usage) if isinstance(raw_usage, dict) else None
        )
        text = "" if usage is not None else "".join(anthropic_wire.message_texts(parsed))
        if call.endpoint is Endpoint.RESPONSES:
            answer = message_to_response(parsed, responses_builder(call, ctx))
            return Answer(orjson.dumps(answer), answer, usage, text)
        if call.client_format is ApiFormat.ANTHROPIC:
            return Answer(raw, parsed, usage, text)
        answer = anthropic_wire.messages_response_to_chat(
            parsed, model=ctx.model, created=ctx.created
        )
        return Answer(orjson.dumps(answer), answer, usage, text)

    def parse_error(self, body: bytes) -> ErrorInfo:
        etype, message = anthropic_wire.parse_anthropic_error(body)
        return ErrorInfo(etype, message, None, None, _is_json(body))

    def stream(self, call: Outbound, counter: Counter | None, ctx: Context) -> AnthropicStream:
        responses = call.endpoint is Endpoint.RESPONSES
        return AnthropicStream(
            client=call.client_format,
            counter=counter,
            model=ctx.model,
            created=ctx.created,
            include_usage=call.wants_usage,
            responses=responses_builder(call, ctx) if responses else None,
        )
