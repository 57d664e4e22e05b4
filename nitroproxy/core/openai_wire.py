"""OpenAI wire format: request validation, usage and text extraction, error and list bodies.

The proxy forwards OpenAI bodies as they came (unknown fields pass through), so this
module checks only what routing and accounting depend on, and reads chunks without
rebuilding them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

from nitroproxy.core.errors import InvalidRequest
from nitroproxy.core.json_values import count, is_int
from nitroproxy.core.types import Endpoint, Usage

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _require_model(body: Mapping[str, Any]) -> None:
    model = body.get("model")
    if model is None:
        raise InvalidRequest("you must provide a model parameter", param="model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' must be a non-empty string", param="model")


def _optional(
    body: Mapping[str, Any], name: str, kinds: type | tuple[type, ...], what: str
) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise InvalidRequest(f"'{name}' must be {what}", param=name)
    if not isinstance(value, kinds):
        raise InvalidRequest(f"'{name}' must be {what}", param=name)


def _common(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    _require_model(body)
    _optional(body, "stream", bool, "a boolean")
    _optional(body, "stream_options", dict, "an object")
    _optional(body, "max_tokens", int, "an integer")
    _optional(body, "max_completion_tokens", int, "an integer")
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if isinstance(value, int) and value < 1:
            raise InvalidRequest(f"'{name}' must be at least 1", param=name)
    return body


def validate_chat(raw: Any) -> Mapping[str, Any]:
    body = _common(raw)
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("you must provide a messages parameter", param="messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"'messages[{i}]' must be an object", param=f"messages[{i}]")
        role = message.get("role")
        if role not in _ROLES:
            raise InvalidRequest(
                f"'messages[{i}].role' must be one of {', '.join(sorted(_ROLES))}",
                param=f"messages[{i}].role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise InvalidRequest(
                f"'messages[{i}].content' must be a string or an array of parts",
                param=f"messages[{i}].content",
            )
    _optional(body, "tools", list, "an array")
    _optional(body, "provider", dict, "an object")
    return body


def validate_completion(raw: Any) -> Mapping[str, Any]:
    body = _common(raw)
    if "prompt" not in body:
        raise InvalidRequest("you must provide a prompt parameter", param="prompt")
    if not isinstance(body["prompt"], str | list):
        raise InvalidRequest("'prompt' must be a string or an array", param="prompt")
    return body


def validate_embedding(raw: Any) -> Mapping[str, Any]:
    body = _common(raw)
    value = body.get("input")
    if value is None:
        raise InvalidRequest("you must provide an input parameter", param="input")
    if not isinstance(value, str | list) or (isinstance(value, list) and not value):
        raise InvalidRequest("'input' must be a string or a non-empty array", param="input")
    return body


VALIDATORS = {
    Endpoint.CHAT: validate_chat,
    Endpoint.COMPLETIONS: validate_completion,
    Endpoint.EMBEDDINGS: validate_embedding,
}


def error_body(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def parse_error(body: Any) -> tuple[str | None, str | None, str | None, str | None]:
    """(type, message, code, param) from an OpenAI-style error body (a dict, or its JSON text).

    OpenAI-compatible servers vary: vLLM puts the fields at the top level with an integer
    code, others send ``{"error": "text"}`` or FastAPI's ``{"detail": ...}``.
    """
    if isinstance(body, bytes | str):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None, None, None, None
    obj = body if isinstance(body, Mapping) else {}
    error = obj.get("error", obj)
    if isinstance(error, str):
        return None, error, None, None
    if not isinstance(error, Mapping):
        return None, None, None, None
    message = error.get("message", obj.get("detail"))

    def text(value: Any) -> str | None:
        if isinstance(value, str):
            return value
        return str(value) if is_int(value) else None

    return (
        text(error.get("type")),
        message if isinstance(message, str) else None,
        text(error.get("code")),
        text(error.get("param")),
    )


def usage_from(raw: Any) -> Usage | None:
    """Usage from an OpenAI ``usage`` object; None when absent or not an object. Missing or
    null parts count as 0 (servers differ in which details they send)."""
    if not isinstance(raw, Mapping):
        return None
    details = raw.get("prompt_tokens_details")
    cdetails = raw.get("completion_tokens_details")
    return Usage(
        prompt_tokens=count(raw.get("prompt_tokens")),
        completion_tokens=count(raw.get("completion_tokens")),
        cached_tokens=count(details.get("cached_tokens")) if isinstance(details, Mapping) else 0,
        reasoning_tokens=count(cdetails.get("reasoning_tokens"))
        if isinstance(cdetails, Mapping)
        else 0,
    )


def chunk_texts(chunk: Mapping[str, Any]) -> Iterator[str]:
    """Every piece of generated text in one stream chunk or response: content, refusal,
    tool-call arguments, and legacy completion text. Used for in-flight counting."""
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        text = choice.get("text")
        if isinstance(text, str):
            yield text
        part = choice.get("delta") or choice.get("message")
        if isinstance(part, dict):
            yield from _message_texts(part)


def _message_texts(part: Mapping[str, Any]) -> Iterator[str]:
    content = part.get("content")
    if isinstance(content, str):
        yield content
    refusal = part.get("refusal")
    if isinstance(refusal, str):
        yield refusal
    calls = part.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                if isinstance(fn.get("name"), str):
                    yield fn["name"]
                if isinstance(fn.get("arguments"), str):
                    yield fn["arguments"]


def finish_reason(chunk: Mapping[str, Any]) -> str | None:
    choices = chunk.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                return str(choice["finish_reason"])
    return None


def model_object(name: str, *, created: int, owned_by: str = "nitroproxy") -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": owned_by}


def model_list(
    names: Iterable[str], *, created: int, owned_by: str = "nitroproxy"
) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [model_object(name, created=created, owned_by=owned_by) for name in names],
    }
