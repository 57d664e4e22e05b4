"""The OpenAI-format upstream (OpenAI and every OpenAI-compatible server): chat completions,
legacy completions and embeddings; a Messages client's call is translated to chat."""

from __future__ import annotations

from typing import Any

import orjson

from nitroproxy.config import ProviderSettings
from nitroproxy.core import anthropic_wire, chat_request, openai_wire
from nitroproxy.core.errors import UpstreamError
from nitroproxy.core.pipeline import Counter, OpenAIStream
from nitroproxy.core.types import ApiFormat, Endpoint
from nitroproxy.upstream.adapter import Answer, Context, ErrorInfo, Outbound

_PATHS = {
    Endpoint.CHAT: "/chat/completions",
    Endpoint.COMPLETIONS: "/completions",
    Endpoint.EMBEDDINGS: "/embeddings",
    Endpoint.MESSAGES: "/chat/completions",  # translated
}


class OpenAIAdapter:
    kind = ApiFormat.OPENAI

    def path(self, endpoint: Endpoint) -> str | None:
        return _PATHS.get(endpoint)

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
        body = dict(call.body)
        body["model"] = upstream_model
        body.pop("provider", None)
        if (
            call.stream
            and settings.stream_usage
            and call.endpoint is not Endpoint.EMBEDDINGS
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
        usage = openai_wire.usage_from(parsed.get("usage"))
        text = "" if usage is not None else "".join(openai_wire.chunk_texts(parsed))
        if call.client_format is ApiFormat.OPENAI:
            return Answer(raw, parsed, usage, text)
        answer = anthropic_wire.chat_response_to_messages(parsed, model=ctx.model)
        return Answer(orjson.dumps(answer), answer, usage, text)

    def parse_error(self, body: bytes) -> ErrorInfo:
        is_json = _is_json(body)
        etype, message, code, param = openai_wire.parse_error(body)
        return ErrorInfo(etype, message, code, param, is_json)

    def stream(self, call: Outbound, counter: Counter | None, ctx: Context) -> OpenAIStream:
        return OpenAIStream(
            client=call.client_format,
            counter=counter,
            strip_usage=not call.wants_usage,
            model=ctx.model,
            message_id=ctx.message_id,
            prompt_tokens=ctx.prompt_tokens,
            wants_usage=call.wants_usage,
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
