"""Anthropic Messages requests: validating /v1/messages (and count_tokens) bodies, and
building an Anthropic request from an OpenAI chat body (the proxy's canonical form).

Validation checks only what the proxy relies on (roles, content shapes, the numbers it
routes and limits by); everything else in a block (thinking signatures, ``cache_control``,
citations, document sources) goes to an Anthropic upstream untouched. A ``system`` message
inside ``messages`` is valid: Claude Code sends one, and the native path keeps it in place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from nitroproxy.core.errors import InvalidRequest
from nitroproxy.core.json_values import is_int, is_number, is_text_block

EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
TOOL_CHOICE_TO_ANTHROPIC = {"auto": "auto", "required": "any", "none": "none"}


# --- request validation (Anthropic /v1/messages) ---------------------------------------------


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(map(check, value))


_OPTIONAL_FIELDS: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    (
        "system",
        lambda v: isinstance(v, str) or _list_of(is_text_block)(v),
        "text or text blocks",
    ),
    ("stream", lambda v: isinstance(v, bool), "a boolean"),
    ("temperature", is_number, "a number"),
    ("top_p", is_number, "a number"),
    ("stop_sequences", _list_of(lambda v: isinstance(v, str)), "a list of strings"),
    ("tools", _list_of(lambda v: isinstance(v, Mapping)), "a list of objects"),
    ("tool_choice", lambda v: isinstance(v, Mapping), "an object"),
)


_ROLES = ("user", "assistant", "system")


def _validate_message(message: Any, where: str) -> None:
    if not isinstance(message, Mapping):
        raise InvalidRequest(f"{where}: must be an object", param=where)
    if message.get("role") not in _ROLES:
        raise InvalidRequest(
            f"{where}.role: must be 'user', 'assistant' or 'system'", param=f"{where}.role"
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


def validate_messages_request(body: Any, *, counting: bool = False) -> None:
    """Check the shape of an Anthropic /v1/messages body; raise InvalidRequest(param=...).

    ``counting`` is for /v1/messages/count_tokens, whose bodies have no ``max_tokens``."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest("model: a model name is required", param="model")
    max_tokens = body.get("max_tokens")
    if not (counting and max_tokens is None) and (not is_int(max_tokens) or max_tokens < 1):
        raise InvalidRequest("max_tokens: a positive integer is required", param="max_tokens")
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
    if not isinstance(content, list) or not all(is_text_block(part) for part in content):
        raise InvalidRequest(
            f"{where}.content: only text is supported here", param=f"{where}.content"
        )
    return [part["text"] for part in content if part["text"]]


def parse_data_url(url: str, param: str) -> tuple[str, str]:
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
        media_type, data = parse_data_url(url, param)
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
            blocks.extend([{"type": "text", "text": part["text"]}] if part["text"] else [])
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), param))
        elif (
            kind == "file"
            and isinstance(part.get("file"), Mapping)
            and part["file"].get("file_data")
        ):
            media_type, data = parse_data_url(str(part["file"]["file_data"]), param)
            source = {"type": "base64", "media_type": media_type, "data": data}
            blocks.append({"type": "document", "source": source})
        else:
            raise InvalidRequest(
                f"{param}: {kind!r} parts are not supported by this model", param=param
            )
    return blocks


def decode_arguments(arguments: Any, param: str) -> dict[str, Any]:
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
        texts = [p.get("text") or p.get("refusal") for p in content if isinstance(p, Mapping)]
        content = "".join(t for t in texts if isinstance(t, str))
    blocks: list[dict[str, Any]] = []
    if isinstance(content, str) and content:
        blocks.append({"type": "text", "text": content})
    tool_calls = message.get("tool_calls") or []
    for k, call in enumerate(tool_calls if isinstance(tool_calls, list) else [None]):
        param = f"{where}.tool_calls.[{k}]"
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise InvalidRequest(f"{param}: a function tool call is required", param=param)
        if not isinstance(call.get("id"), str):
            raise InvalidRequest(f"{param}.id: required", param=f"{param}.id")
        arguments = decode_arguments(function.get("arguments"), f"{param}.function.arguments")
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
        raise InvalidRequest(f"{where}.tool_call_id: required", param=f"{where}.tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_call_id}
    content = message.get("content")
    texts = _text_of_parts(content, where)
    if isinstance(content, str) and texts:
        block["content"] = content
    elif texts:
        block["content"] = [{"type": "text", "text": text} for text in texts]
    return block


def finish_turn(turn: dict[str, Any]) -> dict[str, Any]:
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
            raise InvalidRequest(f"{where}.role: unsupported role {role!r}", param=f"{where}.role")
        if not blocks:
            continue  # Anthropic rejects empty content
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)  # Anthropic requires alternating roles
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise InvalidRequest("messages: a user or assistant message is required", param="messages")
    return system, [finish_turn(turn) for turn in turns]


def _chat_tools_to_anthropic(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequest("tools: must be a list", param="tools")
    out = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or tool.get("type") != "function":
            raise InvalidRequest("only function tools are supported", param=f"tools.[{i}]")
        if not isinstance(function.get("name"), str):
            raise InvalidRequest("a tool name is required", param=f"tools.[{i}].function.name")
        converted = {
            "name": function["name"],
            "input_schema": function.get("parameters") or EMPTY_SCHEMA,
        }
        if function.get("description"):
            converted["description"] = function["description"]
        if isinstance(function.get("strict"), bool):
            converted["strict"] = function["strict"]
        out.append(converted)
    return out


def _chat_tool_choice_to_anthropic(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any]
    if isinstance(choice, str) and choice in TOOL_CHOICE_TO_ANTHROPIC:
        out = {"type": TOOL_CHOICE_TO_ANTHROPIC[choice]}
    elif isinstance(choice, Mapping) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str):
            raise InvalidRequest("a function name is required", param="tool_choice.function.name")
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
            if not is_int(value) or value < 1:
                raise InvalidRequest(f"{key}: must be a positive integer", param=key)
            return int(value)
    return default  # Anthropic requires max_tokens; OpenAI does not


def _chat_sampling_to_anthropic(body: Mapping[str, Any], out: dict[str, Any]) -> None:
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None and not is_number(value):
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
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise InvalidRequest("stop: must be a string or a list of strings", param="stop")
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
        raise InvalidRequest("n: only one choice can be generated by this model", param="n")
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
        out["stream"] = True  # Anthropic always reports usage, so stream_options has no use
    # tool_choice goes only with tools: Anthropic rejects it alone.
    tools = _chat_tools_to_anthropic(body["tools"]) if body.get("tools") is not None else []
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
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
        json_schema = response_format.get("json_schema")
        schema = json_schema.get("schema") if isinstance(json_schema, Mapping) else None
        if not isinstance(schema, Mapping):
            raise InvalidRequest("a schema is required", param="response_format.json_schema.schema")
        out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    # json_object has no Anthropic switch; OpenAI already requires the prompt to ask for JSON.
    return out
