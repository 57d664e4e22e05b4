"""The Anthropic Messages upstream; a chat completions client's call is translated to it.
Anthropic has no embeddings and no legacy completions, so those calls skip its
deployments."""

from __future__ import annotations

import orjson

from nitroproxy.config import ProviderSettings
from nitroproxy.core import anthropic_request, anthropic_wire
from nitroproxy.core.pipeline import AnthropicStream, Counter
from nitroproxy.core.types import ApiFormat, Endpoint
from nitroproxy.upstream.adapter import Answer, Context, ErrorInfo, Outbound
from nitroproxy.upstream.openai import _is_json, _object

_PATHS = {
    Endpoint.MESSAGES: "/messages",
    Endpoint.CHAT: "/messages",  # translated
}


class AnthropicAdapter:
    kind = ApiFormat.ANTHROPIC

    def path(self, endpoint: Endpoint) -> str | None:
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

    def make_body(self, call: Outbound, upstream_model: str, settings: ProviderSettings) -> bytes:
        if call.client_format is ApiFormat.OPENAI:
            return orjson.dumps(
                anthropic_request.chat_to_messages_request(
                    call.body,
                    upstream_model=upstream_model,
                    default_max_tokens=call.default_max_tokens,
                )
            )
        body = dict(call.body)
        body["model"] = upstream_model
        return orjson.dumps(body)

    def parse_answer(self, raw: bytes, call: Outbound, ctx: Context) -> Answer:
        parsed = _object(raw, ctx.provider)
        raw_usage = parsed.get("usage")
        usage = (
            anthropic_wire.usage_from_anthropic(raw_usage) if isinstance(raw_usage, dict) else None
        )
        text = "" if usage is not None else "".join(anthropic_wire.message_texts(parsed))
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
        return AnthropicStream(
            client=call.client_format,
            counter=counter,
            model=ctx.model,
            created=ctx.created,
            include_usage=call.wants_usage,
        )
