"""Anthropic Messages JSON <-> OpenAI chat JSON (the proxy's canonical form).

Response bodies, usage and error bodies; requests are in ``anthropic_request.py`` and
``chat_request.py``. The stream state machines live in
``anthropic_stream.py``. ``param`` in errors follows the client's API: ``messages.[2].content``
for OpenAI bodies (as OpenAI reports it), ``messages.2.content`` for Anthropic bodies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from nitroproxy.core import openai_wire
from nitroproxy.core.errors import UpstreamError
from nitroproxy.core.json_values import compact, count, is_text_block
from nitroproxy.core.types import Usage

_FINISH_BY_STOP_REASON = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_STOP_REASON_BY_FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


# --- usage ---------------------------------------------------------------------------------


def usage_from_anthropic(usage: Mapping[str, Any] | None) -> Usage:
    usage = usage or {}
    cache_read = count(usage.get("cache_read_input_tokens"))
    cache_write = count(usage.get("cache_creation_input_tokens"))
    tiers = usage.get("cache_creation")
    # The 1-hour writes are billed at 2x input, the 5-minute ones at 1.25x: keep them apart.
    write_1h = count(tiers.get("ephemeral_1h_input_tokens")) if isinstance(tiers, Mapping) else 0
    details = usage.get("output_tokens_details")
    return Usage(
        # Anthropic's input_tokens exclude cache reads and writes; ours include both.
        prompt_tokens=count(usage.get("input_tokens")) + cache_read + cache_write,
        completion_tokens=count(usage.get("output_tokens")),
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=min(write_1h, cache_write),
        reasoning_tokens=count(details.get("thinking_tokens"))
        if isinstance(details, Mapping)
        else 0,
    )


def usage_to_openai(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def usage_to_anthropic(usage: Usage) -> dict[str, Any]:
    uncached = usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens
    out: dict[str, Any] = {
        "input_tokens": max(uncached, 0),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
    }
    if usage.cache_write_tokens:
        out["cache_creation"] = {
            "ephemeral_5m_input_tokens": usage.cache_write_tokens - usage.cache_write_1h_tokens,
            "ephemeral_1h_input_tokens": usage.cache_write_1h_tokens,
        }
    if usage.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": usage.reasoning_tokens}
    return out


# --- errors and stop reasons ---------------------------------------------------------------


def anthropic_error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _json_object(body: Any) -> Mapping[str, Any] | None:
    if isinstance(body, bytes | bytearray | str):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    return body if isinstance(body, Mapping) else None


def _str_or_none(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    return None if value is None or isinstance(value, bool) else str(value)


def parse_anthropic_error(body: Any) -> tuple[str | None, str | None]:
    """(type, message) from an Anthropic error body (a dict, or its JSON text)."""
    error = (_json_object(body) or {}).get("error")
    if not isinstance(error, Mapping):
        return None, None
    return _str_or_none(error.get("type")), _str_or_none(error.get("message"))


def finish_reason_from_stop_reason(stop_reason: str | None) -> str:
    # pause_turn only happens with server tools; to an OpenAI client the turn just ended.
    return _FINISH_BY_STOP_REASON.get(stop_reason or "", "stop")


def stop_reason_from_finish_reason(finish_reason: str | None, *, has_tool_use: bool) -> str:
    # Some OpenAI-compatible servers say "stop" after emitting tool calls; Anthropic clients
    # only run tools when stop_reason is "tool_use".
    if has_tool_use and finish_reason in (None, "stop", "tool_calls", "function_call"):
        return "tool_use"
    return _STOP_REASON_BY_FINISH.get(finish_reason or "", "end_turn")


# --- responses ---------------------------------------------------------------------------------


def messages_response_to_chat(
    body: Mapping[str, Any], *, model: str, created: int
) -> dict[str, Any]:
    """An Anthropic message as a chat.completion; thinking blocks are dropped."""
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in body.get("content") or []:
        if is_text_block(block):
            texts.append(block["text"])
        elif isinstance(block, Mapping) and block.get("type") == "tool_use":
            function = {
                "name": block.get("name"),
                "arguments": compact(block.get("input") or {}),
            }
            tool_calls.append({"id": block.get("id"), "type": "function", "function": function})
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": finish_reason_from_stop_reason(body.get("stop_reason")),
        "logprobs": None,
    }
    return {
        "id": f"chatcmpl-{body.get('id', '')}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage_to_openai(usage_from_anthropic(body.get("usage"))),
    }


def message_id_from_chat_id(chat_id: Any) -> str:
    """msg_<id>; a chatcmpl-msg_<id> made by messages_response_to_chat maps back to msg_<id>."""
    rest = str(chat_id or "").removeprefix("chatcmpl-")
    return rest if rest.startswith("msg_") else f"msg_{rest}"


def _upstream_arguments(arguments: Any) -> dict[str, Any]:
    try:
        decoded = json.loads(arguments) if arguments else {}
    except (TypeError, ValueError):
        decoded = None
    if not isinstance(decoded, dict):
        # The model's output, not the client's input: an upstream failure, not a 400.
        raise UpstreamError("upstream returned tool call arguments that are not a JSON object")
    return decoded


def chat_response_to_messages(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """A chat.completion (first choice) as an Anthropic message."""
    message_id = message_id_from_chat_id(body.get("id"))
    choices = body.get("choices") or [{}]
    message = choices[0].get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, list):  # some OpenAI-compatible servers answer with parts
        text = "".join(part.get("text") or "" for part in text if isinstance(part, Mapping))
    for value in (text, message.get("refusal")):
        if isinstance(value, str) and value:
            content.append({"type": "text", "text": value})
    for k, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        tool_use = {
            "type": "tool_use",
            "id": call.get("id") or f"toolu_{message_id}_{k}",
            "name": function.get("name") or "",
            "input": _upstream_arguments(function.get("arguments")),
        }
        content.append(tool_use)
    has_tool_use = any(block["type"] == "tool_use" for block in content)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        # OpenAI does not say which stop sequence matched, so it reads as end_turn.
        "stop_reason": stop_reason_from_finish_reason(
            choices[0].get("finish_reason"), has_tool_use=has_tool_use
        ),
        "stop_sequence": None,
        "usage": usage_to_anthropic(openai_wire.usage_from(body.get("usage")) or Usage()),
    }


def message_texts(body: Mapping[str, Any]) -> Iterator[str]:
    """Every piece of generated text in an Anthropic message (text, thinking, tool names and
    inputs), for counting output tokens when the upstream reports none."""
    for block in body.get("content") or []:
        if not isinstance(block, Mapping):
            continue
        for name in ("text", "thinking", "name"):
            if isinstance(block.get(name), str):
                yield block[name]
        if "input" in block:
            yield compact(block["input"])


# --- models ------------------------------------------------------------------------------------

# When a model was released is not the proxy's to know; Anthropic's API says an epoch value
# stands for an unknown date.
_UNKNOWN_DATE = "1970-01-01T00:00:00Z"


def model_info(name: str) -> dict[str, Any]:
    """A public model in the shape of Anthropic's ``GET /v1/models/{model_id}``."""
    return {"type": "model", "id": name, "display_name": name, "created_at": _UNKNOWN_DATE}


def model_list(names: list[str]) -> dict[str, Any]:
    """Anthropic's ``GET /v1/models``: one page holding every model."""
    return {
        "data": [model_info(name) for name in names],
        "has_more": False,
        "first_id": names[0] if names else None,
        "last_id": names[-1] if names else None,
    }
