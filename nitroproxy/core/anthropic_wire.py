"""Anthropic Messages JSON <-> OpenAI chat JSON (the proxy's canonical form).

Request bodies, response bodies, usage and error bodies. The stream state machines live in
``anthropic_stream.py``. ``param`` in errors follows the client's API: ``messages.[2].content``
for OpenAI bodies (as OpenAI reports it), ``messages.2.content`` for Anthropic bodies.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

from nitroproxy.core.errors import InvalidRequest, UpstreamError
from nitroproxy.core.types import Usage

_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
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
_TOOL_CHOICE_TO_ANTHROPIC = {"auto": "auto", "required": "any", "none": "none"}
_TOOL_CHOICE_TO_OPENAI = {
    value: key for key, value in _TOOL_CHOICE_TO_ANTHROPIC.items()
}


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _count(value: Any) -> int:
    """A token count; null, missing or junk counts as 0."""
    return value if _is_int(value) else 0


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- usage ---------------------------------------------------------------------------------


def usage_from_anthropic(usage: Mapping[str, Any] | None) -> Usage:
    usage = usage or {}
    cache_read = _count(usage.get("cache_read_input_tokens"))
    cache_write = _count(usage.get("cache_creation_input_tokens"))
    details = usage.get("output_tokens_details")
    return Usage(
        # Anthropic's input_tokens exclude cache reads and writes; ours include both.
        prompt_tokens=_count(usage.get("input_tokens")) + cache_read + cache_write,
        completion_tokens=_count(usage.get("output_tokens")),
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=_count(details.get("thinking_tokens"))
        if isinstance(details, Mapping)
        else 0,
    )


def usage_from_openai(usage: Mapping[str, Any] | None) -> Usage:
    usage = usage or {}
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    return Usage(
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
        cached_tokens=_count(prompt_details.get("cached_tokens"))
        if isinstance(prompt_details, Mapping)
        else 0,
        reasoning_tokens=_count(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, Mapping)
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


def parse_openai_error(
    body: Any,
) -> tuple[str | None, str | None, str | None, str | None]:
    """(type, message, code, param) from an OpenAI-style error body (a dict, or its JSON text).

    OpenAI-compatible servers vary: vLLM puts the fields at the top level with an integer
    code, others send ``{"error": "text"}`` or FastAPI's ``{"detail": ...}``.
    """
    obj = _json_object(body) or {}
    error = obj.get("error", obj)
    if isinstance(error, str):
        return None, error, None, None
    if not isinstance(error, Mapping):
        return None, None, None, None
    message = error.get("message", obj.get("detail"))
    return (
        _str_or_none(error.get("type")),
        message if isinstance(message, str) else None,
        _str_or_none(error.get("code")),
        _str_or_none(error.get("param")),
    )


def finish_reason_from_stop_reason(stop_reason: str | None) -> str:
    # pause_turn only happens with server tools; to an OpenAI client the turn just ended.
    return _FINISH_BY_STOP_REASON.get(stop_reason or "", "stop")


def stop_reason_from_finish_reason(
    finish_reason: str | None, *, has_tool_use: bool
) -> str:
    # Some OpenAI-compatible servers say "stop" after emitting tool calls; Anthropic clients
    # only run tools when stop_reason is "tool_use".
    if has_tool_use and finish_reason in (None, "stop", "tool_calls", "function_call"):
        return "tool_use"
    return _STOP_REASON_BY_FINISH.get(finish_reason or "", "end_turn")


# --- request validation (Anthropic /v1/messages) ---------------------------------------------


def _is_text_block(block: Any) -> bool:
    return (
        isinstance(block, Mapping)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    )


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(map(check, value))


_OPTIONAL_FIELDS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    (
        "system",
        lambda v: isinstance(v, str) or _list_of(_is_text_block)(v),
        "text or text blocks",
    ),
    ("stream", lambda v: isinstance(v, bool), "a boolean"),
    ("temperature", _is_number, "a number"),
    ("top_p", _is_number, "a number"),
    ("stop_sequences", _list_of(lambda v: isinstance(v, str)), "a list of strings"),
    ("tools", _list_of(lambda v: isinstance(v, Mapping)), "a list of objects"),
    ("tool_choice", lambda v: isinstance(v, Mapping), "an object"),
)


def _validate_message(message: Any, where: str) -> None:
    if not isinstance(message, Mapping):
        raise InvalidRequest(f"{where}: must be an object", param=where)
    if message.get("role") not in ("user", "assistant"):
        raise InvalidRequest(
            f"{where}.role: must be 'user' or 'assistant'", param=f"{where}.role"
        )
    content = message.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequest(
            f"{where}.content: must be a string or a list of content blocks",
            param=f"{where}.content",
        )
    for j, block in enumerate(content):
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            param = f"{where}.content.{j}"
            raise InvalidRequest(f"{param}: must be an object with a type", param=param)


def validate_messages_request(body: Any) -> None:
    """Check the shape of an Anthropic /v1/messages body; raise InvalidRequest(param=...)."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest("model: a model name is required", param="model")
    max_tokens = body.get("max_tokens")
    if not _is_int(max_tokens) or max_tokens < 1:
        raise InvalidRequest(
            "max_tokens: a positive integer is required", param="max_tokens"
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: a non-empty list is required", param="messages")
    for i, message in enumerate(messages):
        _validate_message(message, f"messages.{i}")
    for key, check, what in _OPTIONAL_FIELDS:
        if body.get(key) is not None and not check(body[key]):
            raise InvalidRequest(f"{key}: must be {what}", param=key)


# --- OpenAI chat request -> Anthropic ----------------------------------------------------------


def _text_of_parts(content: Any, where: str) -> list[str]:
    """The texts of a system/developer/tool message: a string or a list of text parts."""
    if isinstance(content, str):
        return [content] if content else []
    if not isinstance(content, list) or not all(
        _is_text_block(part) for part in content
    ):
        raise InvalidRequest(
            f"{where}.content: only text is supported here", param=f"{where}.content"
        )
    return [part["text"] for part in content if part["text"]]


def _parse_data_url(url: str, param: str) -> tuple[str, str]:
    header, comma, data = url.removeprefix("data:").partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or not media_type or encoding != "base64":
        raise InvalidRequest(
            "data URLs must look like data:<media type>;base64,<data>", param=param
        )
    return media_type, data


def _image_block(image_url: Any, param: str) -> dict[str, Any]:
    url = image_url.get("url") if isinstance(image_url, Mapping) else image_url
    if isinstance(url, str) and url.startswith("data:"):
        media_type, data = _parse_data_url(url, param)
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if isinstance(url, str) and url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest("image_url.url must be a data: or http(s) URL", param=param)


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(
            f"{where}.content: must be a string or a list", param=f"{where}.content"
        )
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        param = f"{where}.content.[{j}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            # Anthropic rejects empty text blocks.
            blocks.extend(
                [{"type": "text", "text": part["text"]}] if part["text"] else []
            )
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), param))
        elif (
            kind == "file"
            and isinstance(part.get("file"), Mapping)
            and part["file"].get("file_data")
        ):
            media_type, data = _parse_data_url(str(part["file"]["file_data"]), param)
            source = {"type": "base64", "media_type": media_type, "data": data}
            blocks.append({"type": "document", "source": source})
        else:
            raise InvalidRequest(
                f"{param}: {kind!r} parts are not supported by this model", param=param
            )
    return blocks


def _decode_arguments(arguments: Any, param: str) -> dict[str, Any]:
    if arguments in (None, ""):
        return {}  # some clients send "" for tools without parameters
    try:
        decoded = json.loads(arguments) if isinstance(arguments, str) else None
    except ValueError:
        decoded = None
    if not isinstance(decoded, dict):
        raise InvalidRequest("tool call arguments must be a JSON object", param=param)
    return decoded


def _assistant_blocks(message: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, list):
        # Assistant parts are text or refusal; both are plain text to Anthropic.
        texts = [
            p.get("text") or p.get("refusal") for p in content if isinstance(p, Mapping)
        ]
        content = "".join(t for t in texts if isinstance(t, str))
    blocks: list[dict[str, Any]] = []
    if isinstance(content, str) and content:
        blocks.append({"type": "text", "text": content})
    tool_calls = message.get("tool_calls") or []
    for k, call in enumerate(tool_calls if isinstance(tool_calls, list) else [None]):
        param = f"{where}.tool_calls.[{k}]"
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(
            function.get("name"), str
        ):
            raise InvalidRequest(
                f"{param}: a function tool call is required", param=param
            )
        if not isinstance(call.get("id"), str):
            raise InvalidRequest(f"{param}.id: required", param=f"{param}.id")
        arguments = _decode_arguments(
            function.get("arguments"), f"{param}.function.arguments"
        )
        blocks.append(
            {
                "type": "tool_use",
                "id": call["id"],
                "name": function["name"],
                "input": arguments,
            }
        )
    return blocks


def _tool_result_block(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str):
        raise InvalidRequest(
            f"{where}.tool_call_id: required", param=f"{where}.tool_call_id"
        )
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_call_id}
    content = message.get("content")
    texts = _text_of_parts(content, where)
    if isinstance(content, str) and texts:
        block["content"] = content
    elif texts:
        block["content"] = [{"type": "text", "text": text} for text in texts]
    return block


def _finish_turn(turn: dict[str, Any]) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = turn["content"]
    # Anthropic wants tool results first in a user turn; a stable sort keeps the rest in order.
    blocks.sort(key=lambda block: block["type"] != "tool_result")
    if len(blocks) == 1 and blocks[0].keys() == {"type", "text"}:
        turn["content"] = blocks[0]["text"]
    return turn


def _chat_messages_to_anthropic(
    messages: Any,
) -> tuple[list[str], list[dict[str, Any]]]:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: a non-empty list is required", param="messages")
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages.[{i}]"
        role = message.get("role") if isinstance(message, Mapping) else None
        if role in ("system", "developer"):
            # Anthropic has one top-level system prompt; later instructions are hoisted too.
            system.extend(_text_of_parts(message.get("content"), where))
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), where)
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
        elif role == "tool":
            role, blocks = "user", [_tool_result_block(message, where)]
        else:
            raise InvalidRequest(
                f"{where}.role: unsupported role {role!r}", param=f"{where}.role"
            )
        if not blocks:
            continue  # Anthropic rejects empty content
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)  # Anthropic requires alternating roles
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise InvalidRequest(
            "messages: a user or assistant message is required", param="messages"
        )
    return system, [_finish_turn(turn) for turn in turns]


def _chat_tools_to_anthropic(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequest("tools: must be a list", param="tools")
    out = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or tool.get("type") != "function":
            raise InvalidRequest(
                "only function tools are supported", param=f"tools.[{i}]"
            )
        if not isinstance(function.get("name"), str):
            raise InvalidRequest(
                "a tool name is required", param=f"tools.[{i}].function.name"
            )
        converted = {
            "name": function["name"],
            "input_schema": function.get("parameters") or _EMPTY_SCHEMA,
        }
        if function.get("description"):
            converted["description"] = function["description"]
        if isinstance(function.get("strict"), bool):
            converted["strict"] = function["strict"]
        out.append(converted)
    return out


def _chat_tool_choice_to_anthropic(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any]
    if isinstance(choice, str) and choice in _TOOL_CHOICE_TO_ANTHROPIC:
        out = {"type": _TOOL_CHOICE_TO_ANTHROPIC[choice]}
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str):
            raise InvalidRequest(
                "a function name is required", param="tool_choice.function.name"
            )
        out = {"type": "tool", "name": name}
    elif choice is None:
        if parallel is not False:
            return None
        out = {"type": "auto"}  # Anthropic's default, needed to carry the parallel flag
    else:
        raise InvalidRequest("tool_choice: unsupported value", param="tool_choice")
    if parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _chat_max_tokens(body: Mapping[str, Any], default: int) -> int:
    # max_completion_tokens supersedes the deprecated max_tokens in OpenAI's API.
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is not None:
            if not _is_int(value) or value < 1:
                raise InvalidRequest(f"{key}: must be a positive integer", param=key)
            return int(value)
    return default  # Anthropic requires max_tokens; OpenAI does not


def _chat_sampling_to_anthropic(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None and not _is_number(value):
            raise InvalidRequest(f"{key}: must be a number", param=key)
    if body.get("temperature") is not None:
        # OpenAI allows 0..2, Anthropic 0..1. Clamping keeps the usual values (0, 0.2, 0.7, 1)
        # meaning what the client chose; scaling by half would change all of them.
        out["temperature"] = min(max(body["temperature"], 0), 1)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and not (
        isinstance(stop, list) and all(isinstance(s, str) for s in stop)
    ):
        raise InvalidRequest(
            "stop: must be a string or a list of strings", param="stop"
        )
    if stop:
        out["stop_sequences"] = stop


def chat_to_messages_request(
    body: Mapping[str, Any], *, upstream_model: str, default_max_tokens: int = 4096
) -> dict[str, Any]:
    """An OpenAI chat body as an Anthropic Messages body.

    Fields without an Anthropic meaning (logprobs, penalties, seed, logit_bias, store,
    stream_options, reasoning_effort, ...) are dropped: rejecting them would break clients
    that send OpenAI's defaults. ``n`` is the exception, as n>1 asks for output we can't give.
    """
    if body.get("n") not in (None, 1):
        raise InvalidRequest(
            "n: only one choice can be generated by this model", param="n"
        )
    system, messages = _chat_messages_to_anthropic(body.get("messages"))
    out: dict[str, Any] = {
        "model": upstream_model,
        "max_tokens": _chat_max_tokens(body, default_max_tokens),
        "messages": messages,
    }
    if system:
        out["system"] = "\n\n".join(system)
    _chat_sampling_to_anthropic(body, out)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("stream: must be a boolean", param="stream")
    if stream:
        out["stream"] = (
            True  # Anthropic always reports usage, so stream_options has no use
        )
    # tool_choice goes only with tools: Anthropic rejects it alone.
    tools = (
        _chat_tools_to_anthropic(body["tools"]) if body.get("tools") is not None else []
    )
    if tools:
        out["tools"] = tools
        choice = _chat_tool_choice_to_anthropic(
            body.get("tool_choice"), body.get("parallel_tool_calls")
        )
        if choice is not None:
            out["tool_choice"] = choice
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    response_format = body.get("response_format")
    if (
        isinstance(response_format, Mapping)
        and response_format.get("type") == "json_schema"
    ):
        json_schema = response_format.get("json_schema")
        schema = json_schema.get("schema") if isinstance(json_schema, Mapping) else None
        if not isinstance(schema, Mapping):
            raise InvalidRequest(
                "a schema is required", param="response_format.json_schema.schema"
            )
        out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    # json_object has no Anthropic switch; OpenAI already requires the prompt to ask for JSON.
    return out


# --- Anthropic request -> OpenAI chat ----------------------------------------------------------


def _source_url(block: Mapping[str, Any], param: str) -> str:
    """A base64 or url source as a URL; base64 becomes a data: URL."""
    source = block.get("source")
    source = source if isinstance(source, Mapping) else {}
    kind = source.get("type")
    if kind == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    if kind == "url":
        return str(source.get("url"))
    raise InvalidRequest(
        f"{param}.source: {kind!r} sources are not supported", param=param
    )


def _image_part(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": _source_url(block, param)}}


def _document_part(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source")
    if isinstance(source, Mapping) and source.get("type") == "text":
        return {"type": "text", "text": source.get("data")}
    # OpenAI file parts take inline data only, so url documents are refused.
    file = {
        "filename": block.get("title") or "document.pdf",
        "file_data": _source_url(block, param),
    }
    if not file["file_data"].startswith("data:"):
        raise InvalidRequest(
            f"{param}.source: url documents are not supported", param=param
        )
    return {"type": "file", "file": file}


def _tool_result_to_chat(
    block: Mapping[str, Any], param: str
) -> tuple[dict[str, Any], list[Any]]:
    """A role "tool" message, plus the images it held: OpenAI tool messages carry text only,
    so images move to the user message that follows the tool messages."""
    if not isinstance(block.get("tool_use_id"), str):
        raise InvalidRequest(
            f"{param}.tool_use_id: required", param=f"{param}.tool_use_id"
        )
    content = block.get("content")
    texts: list[str] = []
    images: list[Any] = []
    for j, item in enumerate(content if isinstance(content, list) else [content]):
        if isinstance(item, str | None):
            texts.extend([item] if item else [])
        elif _is_text_block(item):
            texts.append(item["text"])
        elif isinstance(item, Mapping) and item.get("type") == "image":
            images.append(_image_part(item, f"{param}.content.{j}"))
        else:
            raise InvalidRequest(
                f"{param}.content.{j}: unsupported in tool results", param=param
            )
    message = {
        "role": "tool",
        "tool_call_id": block["tool_use_id"],
        "content": "\n".join(texts),
    }
    return message, images


def _collapse(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    # A lone text part as a plain string suits text-only OpenAI-compatible servers.
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts


def _user_to_chat(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    tool_messages: list[dict[str, Any]] = []
    images: list[Any] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        param, kind = f"{where}.content.{j}", block["type"]
        if kind == "tool_result":
            message, held = _tool_result_to_chat(block, param)
            tool_messages.append(message)
            images.extend(held)
        elif _is_text_block(block):
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image_part(block, param))
        elif kind == "document":
            parts.append(_document_part(block, param))
        else:
            raise InvalidRequest(
                f"{param}: unsupported or malformed {kind!r} block", param=param
            )
    # OpenAI needs tool messages right after the assistant's tool_calls, so they go first.
    parts = images + parts
    return tool_messages + (
        [{"role": "user", "content": _collapse(parts)}] if parts else []
    )


def _assistant_to_chat(blocks: list[Any], where: str) -> dict[str, Any]:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        param, kind = f"{where}.content.{j}", block["type"]
        if _is_text_block(block):
            texts.append(block["text"])
        elif kind == "tool_use" and isinstance(block.get("id"), str):
            function = {
                "name": block.get("name"),
                "arguments": _compact(block.get("input") or {}),
            }
            tool_calls.append(
                {"id": block["id"], "type": "function", "function": function}
            )
        elif kind not in ("thinking", "redacted_thinking"):
            # Thinking is dropped: OpenAI has no way to send it back to the model.
            raise InvalidRequest(
                f"{param}: unsupported or malformed {kind!r} block", param=param
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if tool_calls:
        message["content"] = message["content"] or None
        message["tool_calls"] = tool_calls
    return message


def _tools_to_chat(tools: list[Any]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type") not in (None, "custom") or not isinstance(
            tool.get("name"), str
        ):
            raise InvalidRequest(
                f"tools.{i}: only custom tools are supported by this model",
                param=f"tools.{i}",
            )
        function = {
            "name": tool["name"],
            "parameters": tool.get("input_schema") or _EMPTY_SCHEMA,
        }
        if tool.get("description"):
            function["description"] = tool["description"]
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice_to_chat(choice: Mapping[str, Any], out: dict[str, Any]) -> None:
    kind = choice.get("type")
    if kind == "tool" and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif isinstance(kind, str) and kind in _TOOL_CHOICE_TO_OPENAI:
        out["tool_choice"] = _TOOL_CHOICE_TO_OPENAI[kind]
    else:
        raise InvalidRequest("tool_choice: unsupported value", param="tool_choice")
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False


def messages_to_chat_request(
    body: Mapping[str, Any], *, upstream_model: str
) -> dict[str, Any]:
    """An Anthropic Messages body (already through validate_messages_request) as OpenAI chat.

    thinking, top_k, cache_control and server tools have no OpenAI equivalent: thinking,
    top_k and cache_control are dropped (hints), server tools are refused (capabilities).
    """
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, list):
        system = "\n\n".join(block["text"] for block in system)
    if system:
        messages.append({"role": "system", "content": system})
    for i, message in enumerate(body["messages"]):
        content = message["content"]
        if isinstance(content, str):
            messages.append({"role": message["role"], "content": content})
        elif message["role"] == "assistant":
            messages.append(_assistant_to_chat(content, f"messages.{i}"))
        else:
            messages.extend(_user_to_chat(content, f"messages.{i}"))
    out: dict[str, Any] = {"model": upstream_model, "messages": messages}
    for source, target in (
        ("max_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stop_sequences", "stop"),
    ):
        if body.get(source) is not None:
            out[target] = body[source]
    if body.get("stream"):
        # Usage is needed for every request; OpenAI only sends it in a stream when asked.
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    if body.get("tools"):
        out["tools"] = _tools_to_chat(body["tools"])
        if body.get("tool_choice") is not None:
            _tool_choice_to_chat(body["tool_choice"], out)
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    output_config = body.get("output_config")
    output_format = (
        output_config.get("format") if isinstance(output_config, Mapping) else None
    )
    if (
        isinstance(output_format, Mapping)
        and output_format.get("type") == "json_schema"
    ):
        json_schema = {"name": "output", "schema": output_format.get("schema")}
        out["response_format"] = {"type": "json_schema", "json_schema": json_schema}
    return out


# --- responses ---------------------------------------------------------------------------------


def messages_response_to_chat(
    body: Mapping[str, Any], *, model: str, created: int
) -> dict[str, Any]:
    """An Anthropic message as a chat.completion; thinking blocks are dropped."""
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in body.get("content") or []:
        if _is_text_block(block):
            texts.append(block["text"])
        elif isinstance(block, Mapping) and block.get("type") == "tool_use":
            function = {
                "name": block.get("name"),
                "arguments": _compact(block.get("input") or {}),
            }
            tool_calls.append(
                {"id": block.get("id"), "type": "function", "function": function}
            )
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
        raise UpstreamError(
            "upstream returned tool call arguments that are not a JSON object"
        )
    return decoded


def chat_response_to_messages(body: Mapping[str, Any], *, model: str) -> dict[str, Any]:
    """A chat.completion (first choice) as an Anthropic message."""
    message_id = message_id_from_chat_id(body.get("id"))
    choices = body.get("choices") or [{}]
    message = choices[0].get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, list):  # some OpenAI-compatible servers answer with parts
        text = "".join(
            part.get("text") or "" for part in text if isinstance(part, Mapping)
        )
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
        "usage": usage_to_anthropic(usage_from_openai(body.get("usage"))),
    }
