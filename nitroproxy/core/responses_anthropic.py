"""Responses API requests as Anthropic Messages requests (Codex or the OpenAI SDK's
``responses.create`` routed to a Claude deployment).

The rules of ``responses_request`` hold here too. Anthropic specifics: system and developer
messages join ``instructions`` in the one top-level ``system`` (Anthropic's own form; a
system message inside ``messages`` needs a beta); consecutive items of one role make one
turn, tool results first; a reasoning item the proxy made from a thinking block goes back
as that block, signature and all, which Anthropic requires before tool results when
thinking is on; ``reasoning.effort`` becomes a thinking budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nitroproxy.core.anthropic_request import finish_turn, parse_data_url
from nitroproxy.core.errors import InvalidRequest
from nitroproxy.core.responses_request import (
    CALLS,
    OUTPUTS,
    REDACTED_MARK,
    SIGNATURE_MARK,
    call_arguments,
    call_id_of,
    content_texts,
    file_data_of,
    image_url_of,
    input_items,
    message_role,
    refuse_stored,
    unsupported_item,
)
from nitroproxy.core.responses_tools import (
    ToolNames,
    chosen_tool,
    tool_names,
    tool_specs,
    upstream_call_name,
)

# reasoning.effort as a thinking budget; "none" and "minimal" ask for no thinking. Anthropic
# requires at least 1024 and less than max_tokens.
_THINKING_BUDGET = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768}
_MIN_BUDGET = 1024
_CHOICE = {"auto": "auto", "required": "any", "none": "none"}


def _image_block(part: Mapping[str, Any], param: str) -> dict[str, Any]:
    url = image_url_of(part, param)
    if url.startswith("data:"):
        media_type, data = parse_data_url(url, param)
        source = {"type": "base64", "media_type": media_type, "data": data}
        return {"type": "image", "source": source}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any, param: str) -> list[dict[str, Any]]:
    """User content (or a tool output) as Anthropic blocks: text, images, documents."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content if isinstance(content, list) else [content]):
        where = f"{param}.content[{j}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in ("input_text", "output_text") and isinstance(part.get("text"), str):
            # Anthropic rejects empty text blocks.
            blocks.extend([{"type": "text", "text": part["text"]}] if part["text"] else [])
        elif kind == "input_image":
            blocks.append(_image_block(part, where))
        elif kind == "input_file":
            media_type, data = parse_data_url(file_data_of(part, where), where)
            source = {"type": "base64", "media_type": media_type, "data": data}
            document: dict[str, Any] = {"type": "document", "source": source}
            if isinstance(part.get("filename"), str):
                document["title"] = part["filename"]
            blocks.append(document)
        else:
            raise InvalidRequest(f"{where}: {kind!r} parts are not supported here", param=where)
    return blocks


def _thinking(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The thinking block a reasoning item was made from; reasoning from anywhere else (an
    OpenAI model's encrypted reasoning) means nothing to Claude and is dropped."""
    sealed = item.get("encrypted_content")
    if not isinstance(sealed, str):
        return []
    if sealed.startswith(REDACTED_MARK):
        return [{"type": "redacted_thinking", "data": sealed.removeprefix(REDACTED_MARK)}]
    if not sealed.startswith(SIGNATURE_MARK):
        return []
    summary = item.get("summary")
    parts = summary if isinstance(summary, list) else []
    texts = [p.get("text") for p in parts if isinstance(p, Mapping)]
    thinking = "".join(t for t in texts if isinstance(t, str))
    signature = sealed.removeprefix(SIGNATURE_MARK)
    return [{"type": "thinking", "thinking": thinking, "signature": signature}]


def _turns(body: Mapping[str, Any], names: ToolNames) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        system.append(body["instructions"])
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return  # Anthropic rejects empty content
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)  # Anthropic requires alternating roles
        else:
            turns.append({"role": role, "content": blocks})

    for param, kind, item in input_items(body):
        if kind == "message":
            role = message_role(item, param)
            if role in ("system", "developer"):
                system.extend(content_texts(item.get("content"), param))
            elif role == "user":
                add("user", _blocks(item.get("content"), param))
            else:
                texts = content_texts(item.get("content"), param)
                add("assistant", [{"type": "text", "text": t} for t in texts])
        elif kind in CALLS:
            tool_use = {
                "type": "tool_use",
                "id": call_id_of(item, param),
                "name": upstream_call_name(item, names, param),
                "input": call_arguments(item, kind, param),
            }
            add("assistant", [tool_use])
        elif kind in OUTPUTS:
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id_of(item, param)}
            output = item.get("output")
            if isinstance(output, str):
                result["content"] = output
            elif output is not None:
                result["content"] = _blocks(output, f"{param}.output")
            add("user", [result])
        elif kind == "reasoning":
            add("assistant", _thinking(item))
        else:
            raise unsupported_item(param, kind)
    if not turns:
        raise InvalidRequest("input: a user or assistant message is required", param="input")
    return system, [finish_turn(turn) for turn in turns]


def _tools(body: Mapping[str, Any], names: ToolNames, out: dict[str, Any]) -> None:
    specs = tool_specs(body)
    if not specs:
        return  # tool_choice goes only with tools: Anthropic rejects it alone
    tools = []
    for spec in specs:
        tool: dict[str, Any] = {"name": spec.upstream_name, "input_schema": spec.parameters}
        if spec.description is not None:
            tool["description"] = spec.description
        if spec.strict:
            tool["strict"] = True
        tools.append(tool)
    out["tools"] = tools
    choice = body.get("tool_choice")
    parallel = body.get("parallel_tool_calls")
    if choice is None and parallel is not False:
        return
    forced = chosen_tool(choice if choice is not None else "auto", names)
    picked: dict[str, Any]
    if forced is not None:
        picked = {"type": "tool", "name": forced}
    else:  # chosen_tool let only "auto", "required" and "none" through
        picked = {"type": _CHOICE[choice if isinstance(choice, str) else "auto"]}
    if parallel is False and picked["type"] != "none":
        picked["disable_parallel_tool_use"] = True
    out["tool_choice"] = picked


def _thinking_budget(body: Mapping[str, Any], max_tokens: int) -> int | None:
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, Mapping) else None
    budget = _THINKING_BUDGET.get(effort) if isinstance(effort, str) else None
    if budget is None:
        return None
    budget = min(budget, max_tokens - 1)
    return budget if budget >= _MIN_BUDGET else None  # too few tokens left to think in


def responses_to_messages_request(
    body: Mapping[str, Any], *, upstream_model: str, default_max_tokens: int = 4096
) -> dict[str, Any]:
    """A Responses body (through ``validate_responses_request``) as an Anthropic body."""
    refuse_stored(body)
    names = tool_names(body)
    system, messages = _turns(body, names)
    max_tokens = body.get("max_output_tokens") or default_max_tokens
    out: dict[str, Any] = {"model": upstream_model, "max_tokens": max_tokens, "messages": messages}
    if system:
        out["system"] = "\n\n".join(system)
    budget = _thinking_budget(body, max_tokens)
    if budget is not None:
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    elif body.get("temperature") is not None:
        # OpenAI allows 0..2, Anthropic 0..1 (and no temperature with thinking): clamped.
        out["temperature"] = min(max(body["temperature"], 0), 1)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    _tools(body, names, out)
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
        if not isinstance(fmt.get("schema"), Mapping):
            raise InvalidRequest("a schema is required", param="text.format.schema")
        out["output_config"] = {"format": {"type": "json_schema", "schema": fmt["schema"]}}
    user = body.get("safety_identifier", body.get("user"))
    if isinstance(user, str):
        out["metadata"] = {"user_id": user}
    if body.get("stream"):
        out["stream"] = True
    return out
