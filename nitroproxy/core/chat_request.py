"""OpenAI chat requests built from Anthropic Messages bodies (for /v1/messages clients routed
to OpenAI-compatible upstreams).

What maps is translated; what is only a hint to Claude is dropped (``thinking`` blocks in
the history, ``cache_control``, ``top_k``, ``thinking``, ``context_management``); what the
client relies on and chat cannot carry (server tools, search results, url documents, tool
results holding documents) is refused with a 400 naming the block.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nitroproxy.core.anthropic_request import EMPTY_SCHEMA, TOOL_CHOICE_TO_ANTHROPIC
from nitroproxy.core.errors import InvalidRequest
from nitroproxy.core.json_values import compact, is_text_block

_TOOL_CHOICE_TO_OPENAI = {value: key for key, value in TOOL_CHOICE_TO_ANTHROPIC.items()}


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
    raise InvalidRequest(f"{param}.source: {kind!r} sources are not supported", param=param)


def _image_part(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": _source_url(block, param)}}


def _document_part(block: Mapping[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source")
    if isinstance(source, Mapping) and source.get("type") == "text":
        return {"type": "text", "text": source.get("data")}
    if isinstance(source, Mapping) and source.get("type") == "content":
        # A "content" document is the client's own text blocks: their text is the document.
        return {"type": "text", "text": "\n\n".join(_system_texts(source.get("content"), param))}
    # OpenAI file parts take inline data only, so url documents are refused.
    file = {
        "filename": block.get("title") or "document.pdf",
        "file_data": _source_url(block, param),
    }
    if not file["file_data"].startswith("data:"):
        raise InvalidRequest(f"{param}.source: url documents are not supported", param=param)
    return {"type": "file", "file": file}


def _tool_result_to_chat(block: Mapping[str, Any], param: str) -> tuple[dict[str, Any], list[Any]]:
    """A role "tool" message, plus the images it held: OpenAI tool messages carry text only,
    so images move to the user message that follows the tool messages."""
    if not isinstance(block.get("tool_use_id"), str):
        raise InvalidRequest(f"{param}.tool_use_id: required", param=f"{param}.tool_use_id")
    content = block.get("content")
    texts: list[str] = []
    images: list[Any] = []
    for j, item in enumerate(content if isinstance(content, list) else [content]):
        if isinstance(item, str | None):
            texts.extend([item] if item else [])
        elif is_text_block(item):
            texts.append(item["text"])
        elif isinstance(item, Mapping) and item.get("type") == "image":
            images.append(_image_part(item, f"{param}.content.{j}"))
        else:
            raise InvalidRequest(f"{param}.content.{j}: unsupported in tool results", param=param)
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
        elif is_text_block(block):
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image_part(block, param))
        elif kind == "document":
            parts.append(_document_part(block, param))
        else:
            raise InvalidRequest(f"{param}: unsupported or malformed {kind!r} block", param=param)
    # OpenAI needs tool messages right after the assistant's tool_calls, so they go first.
    parts = images + parts
    return tool_messages + ([{"role": "user", "content": _collapse(parts)}] if parts else [])


def _system_texts(content: Any, param: str) -> list[str]:
    """The texts of a system prompt or a system message: a string or text blocks."""
    if isinstance(content, str) or content is None:
        return [content] if content else []
    blocks = content if isinstance(content, list) else [content]
    if not all(is_text_block(block) for block in blocks):
        raise InvalidRequest(f"{param}: only text blocks are supported here", param=param)
    return [block["text"] for block in blocks if block["text"]]


def _assistant_to_chat(blocks: list[Any], where: str) -> dict[str, Any]:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        param, kind = f"{where}.content.{j}", block["type"]
        if is_text_block(block):
            texts.append(block["text"])
        elif kind == "tool_use" and isinstance(block.get("id"), str):
            function = {
                "name": block.get("name"),
                "arguments": compact(block.get("input") or {}),
            }
            tool_calls.append({"id": block["id"], "type": "function", "function": function})
        elif kind not in ("thinking", "redacted_thinking"):
            # Thinking is dropped: OpenAI has no way to send it back to the model.
            raise InvalidRequest(f"{param}: unsupported or malformed {kind!r} block", param=param)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if tool_calls:
        message["content"] = message["content"] or None
        message["tool_calls"] = tool_calls
    return message


def _tools_to_chat(tools: list[Any]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type") not in (None, "custom") or not isinstance(tool.get("name"), str):
            raise InvalidRequest(
                f"tools.{i}: only custom tools are supported by this model",
                param=f"tools.{i}",
            )
        function = {
            "name": tool["name"],
            "parameters": tool.get("input_schema") or EMPTY_SCHEMA,
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


def messages_to_chat_request(body: Mapping[str, Any], *, upstream_model: str) -> dict[str, Any]:
    """An Anthropic Messages body (already through validate_messages_request) as OpenAI chat.

    thinking, top_k, cache_control and server tools have no OpenAI equivalent: thinking,
    top_k and cache_control are dropped (hints), server tools are refused (capabilities).
    """
    messages: list[dict[str, Any]] = []
    system = _system_texts(body.get("system"), "system")
    if system:
        messages.append({"role": "system", "content": "\n\n".join(system)})
    for i, message in enumerate(body["messages"]):
        content = message["content"]
        if message["role"] == "system":
            # Claude Code sends instructions as a system message inside the conversation;
            # chat takes system messages anywhere, so it stays where it was.
            texts = _system_texts(content, f"messages.{i}.content")
            if texts:
                messages.append({"role": "system", "content": "\n\n".join(texts)})
        elif isinstance(content, str):
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
    output_format = output_config.get("format") if isinstance(output_config, Mapping) else None
    if isinstance(output_format, Mapping) and output_format.get("type") == "json_schema":
        json_schema = {"name": "output", "schema": output_format.get("schema")}
        out["response_format"] = {"type": "json_schema", "json_schema": json_schema}
    return out
