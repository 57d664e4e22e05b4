"""Responses API requests for upstreams that do not speak it: as OpenAI chat completions and
as Anthropic Messages.

What maps is translated: ``instructions`` and system/developer messages, text, images and
inline files, function and custom tool calls with their outputs, sampling, output limits,
``text.format`` and ``reasoning.effort``. Hints without an equivalent are dropped
(``include``, ``truncation``, ``prompt_cache_key``, ``service_tier``, ``metadata``, ...).
What the client relies on and the upstream cannot do is refused with a 400 naming it: stored
state (``store: true``, ``previous_response_id``, ``conversation``, ``prompt``, item
references, ``background``), files by id, hosted tools and their call items.

Reasoning items go back to Anthropic as the thinking blocks they came from (their
``encrypted_content`` holds the block's signature, marked as ours); to chat, which cannot take
reasoning back, they are dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from nitroproxy.core.errors import InvalidRequest
from nitroproxy.core.json_values import compact
from nitroproxy.core.responses_tools import (
    ToolNames,
    ToolSpec,
    chosen_tool,
    tool_names,
    tool_specs,
    upstream_call_name,
)

# encrypted_content of a reasoning item made from an Anthropic thinking block (see
# ``responses_output``): the marks say which block it was and that the proxy made it.
SIGNATURE_MARK = "nitroproxy.anthropic.thinking:"
REDACTED_MARK = "nitroproxy.anthropic.redacted:"
CALLS = ("function_call", "custom_tool_call")
OUTPUTS = ("function_call_output", "custom_tool_call_output")
_STORED = (
    "{what} asks for conversation state kept between requests. The upstream of this model "
    "keeps none, and NitroProxy keeps no conversation content (its privacy promise), so it "
    "cannot be served here: send the whole conversation in 'input' with store: false, or "
    "use a model routed to an upstream that stores responses."
)


def refuse_stored(body: Mapping[str, Any]) -> None:
    """A 400 for every field that needs a Responses store the upstream does not have."""
    if body.get("store") is True:
        raise InvalidRequest(_STORED.format(what="store: true"), param="store")
    for name in ("previous_response_id", "conversation", "prompt"):
        if body.get(name) is not None:
            raise InvalidRequest(_STORED.format(what=f"'{name}'"), param=name)
    if body.get("background") is True:
        raise InvalidRequest(_STORED.format(what="background: true"), param="background")


def input_items(body: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """(param, kind, item) for each input item; a string input is one user message."""
    value = body.get("input")
    if isinstance(value, str):
        yield "input", "message", {"role": "user", "content": value}
        return
    for i, item in enumerate(value if isinstance(value, list) else []):
        param = f"input[{i}]"
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "item_reference":
            raise InvalidRequest(_STORED.format(what="an item_reference"), param=param)
        if not isinstance(kind, str):
            raise InvalidRequest(f"{param}: an item type is required", param=f"{param}.type")
        yield param, kind, item


def unsupported_item(param: str, kind: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {kind!r} items are not supported by this model", param=param)


def content_texts(content: Any, param: str) -> list[str]:
    """The texts of a content that may hold only text (system, developer, assistant)."""
    if isinstance(content, str):
        return [content] if content else []
    texts = []
    for j, part in enumerate(content if isinstance(content, list) else [content]):
        text = part.get("text", part.get("refusal")) if isinstance(part, Mapping) else None
        if not isinstance(text, str):
            where = f"{param}.content[{j}]"
            raise InvalidRequest(f"{where}: only text is supported here", param=where)
        texts.extend([text] if text else [])
    return texts


def message_role(item: Mapping[str, Any], param: str) -> str:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        where = f"{param}.role"
        raise InvalidRequest(
            f"{where}: must be one of 'user', 'assistant', 'system', 'developer'", param=where
        )
    return str(role)


def call_id_of(item: Mapping[str, Any], param: str) -> str:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(f"{param}.call_id: required", param=f"{param}.call_id")
    return call_id


def call_arguments(item: Mapping[str, Any], kind: str, param: str) -> dict[str, Any]:
    """A call's arguments as an object (a custom tool's text becomes ``{"input": text}``)."""
    if kind == "custom_tool_call":
        text = item.get("input")
        return {"input": text if isinstance(text, str) else ""}
    raw = item.get("arguments")
    try:
        decoded = json.loads(raw) if isinstance(raw, str) and raw else {}
    except ValueError:
        decoded = None
    if not isinstance(decoded, dict):
        where = f"{param}.arguments"
        raise InvalidRequest(f"{where}: must be a JSON object", param=where)
    return decoded


def image_url_of(part: Mapping[str, Any], param: str) -> str:
    url = part.get("image_url")
    if isinstance(url, str) and url.startswith(("data:", "https://", "http://")):
        return url
    if part.get("file_id") is not None:
        raise InvalidRequest(f"{param}: files by id are not supported by this model", param=param)
    raise InvalidRequest(f"{param}.image_url: a data: or http(s) URL is required", param=param)


def file_data_of(part: Mapping[str, Any], param: str) -> str:
    data = part.get("file_data")
    if isinstance(data, str) and data.startswith("data:"):
        return data
    if part.get("file_id") is not None or part.get("file_url") is not None:
        raise InvalidRequest(
            f"{param}: files by id or URL are not supported by this model", param=param
        )
    raise InvalidRequest(
        f"{param}.file_data: a data:<media type>;base64,<data> URL is required", param=param
    )


# --- to OpenAI chat ------------------------------------------------------------------------


def _chat_parts(content: Any, param: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content if isinstance(content, list) else [content]):
        where = f"{param}.content[{j}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in ("input_text", "output_text") and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image":
            image: dict[str, Any] = {"url": image_url_of(part, where)}
            if part.get("detail") in ("low", "high"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            file = {"filename": part.get("filename") or "file.pdf"}
            file["file_data"] = file_data_of(part, where)
            parts.append({"type": "file", "file": file})
        else:
            raise InvalidRequest(f"{where}: {kind!r} parts are not supported here", param=where)
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts


def _chat_tool_output(item: Mapping[str, Any], param: str) -> tuple[str, list[dict[str, Any]]]:
    """A tool output's text, and the images it held (chat tool messages carry only text)."""
    parts = _chat_parts(item.get("output") or "", f"{param}.output")
    if isinstance(parts, str):
        return parts, []
    texts = [p["text"] for p in parts if p["type"] == "text"]
    return "\n".join(texts), [p for p in parts if p["type"] != "text"]


def _chat_messages(body: Mapping[str, Any], names: ToolNames) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    held: list[dict[str, Any]] = []  # tool-output images, sent after the run of tool messages
    for param, kind, item in input_items(body):
        if held and kind not in OUTPUTS:
            messages.append({"role": "user", "content": held})
            held = []
        if kind == "message":
            role = message_role(item, param)
            if role == "user":
                messages.append(
                    {"role": "user", "content": _chat_parts(item.get("content"), param)}
                )
            else:
                # developer becomes system: OpenAI-compatible servers rarely know it.
                text = "".join(content_texts(item.get("content"), param))
                messages.append(
                    {"role": "system" if role != "assistant" else role, "content": text}
                )
        elif kind in CALLS:
            function = {
                "name": upstream_call_name(item, names, param),
                "arguments": compact(call_arguments(item, kind, param)),
            }
            call = {"id": call_id_of(item, param), "type": "function", "function": function}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last["content"] = last["content"] or None
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind in OUTPUTS:
            text, images = _chat_tool_output(item, param)
            messages.append(
                {"role": "tool", "tool_call_id": call_id_of(item, param), "content": text}
            )
            held.extend(images)
        elif kind != "reasoning":  # reasoning cannot go back to a chat model: dropped
            raise unsupported_item(param, kind)
    if held:
        messages.append({"role": "user", "content": held})
    if not any(m["role"] != "system" for m in messages):
        raise InvalidRequest("input: at least one message is required", param="input")
    return messages


def _chat_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if not isinstance(fmt, Mapping) or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), Mapping):
        schema = {"name": fmt.get("name") or "output", "schema": fmt["schema"]}
        if isinstance(fmt.get("strict"), bool):
            schema["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidRequest("text.format: unsupported format", param="text.format")


def responses_to_chat_request(body: Mapping[str, Any], *, upstream_model: str) -> dict[str, Any]:
    """A Responses body (through ``validate_responses_request``) as an OpenAI chat body."""
    refuse_stored(body)
    names = tool_names(body)
    out: dict[str, Any] = {"model": upstream_model, "messages": _chat_messages(body, names)}
    for source, target in (("max_output_tokens", "max_tokens"), ("temperature", "temperature")):
        if body.get(source) is not None:
            out[target] = body[source]
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    specs = tool_specs(body)
    if specs:
        out["tools"] = [{"type": "function", "function": _chat_function(spec)} for spec in specs]
        choice = body.get("tool_choice")
        if choice is not None:
            forced = chosen_tool(choice, names)
            out["tool_choice"] = (
                choice if forced is None else {"type": "function", "function": {"name": forced}}
            )
        if isinstance(body.get("parallel_tool_calls"), bool):
            out["parallel_tool_calls"] = body["parallel_tool_calls"]
    response_format = _chat_format(body.get("text"))
    if response_format is not None:
        out["response_format"] = response_format
    reasoning = body.get("reasoning")
    if isinstance(reasoning, Mapping) and isinstance(reasoning.get("effort"), str):
        out["reasoning_effort"] = reasoning["effort"]
    user = body.get("safety_identifier", body.get("user"))
    if isinstance(user, str):
        out["user"] = user
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _chat_function(spec: ToolSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": spec.upstream_name, "parameters": spec.parameters}
    if spec.description is not None:
        function["description"] = spec.description
    if spec.strict is not None:
        function["strict"] = spec.strict
    return function
