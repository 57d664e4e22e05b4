"""OpenAI Responses API wire format: request validation, usage, the response object, and the
texts a response or stream event holds (for counting when an upstream reports no usage).

The Responses API (``POST /v1/responses``) is what Codex CLI and ``client.responses.create``
speak. Like chat bodies, a Responses body bound for an upstream that speaks it is forwarded
as it came: this module checks only what routing, limits and accounting depend on.
``param`` in errors is OpenAI's spelling for this API: ``input[2].content``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from nitroproxy.core.errors import InvalidRequest
from nitroproxy.core.json_values import count, is_int, is_number
from nitroproxy.core.types import Usage

# Events that end a Responses stream: nothing meaningful follows them.
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
# Stream events whose ``delta`` is generated text, counted while it streams.
TEXT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
    }
)

_OPTIONAL: tuple[tuple[str, Any, str], ...] = (
    ("instructions", str, "a string"),
    ("stream", bool, "a boolean"),
    ("store", bool, "a boolean"),
    ("background", bool, "a boolean"),
    ("parallel_tool_calls", bool, "a boolean"),
    ("previous_response_id", str, "a string"),
    ("tools", list, "an array"),
    ("tool_choice", (str, dict), "a string or an object"),
    ("text", dict, "an object"),
    ("reasoning", dict, "an object"),
    ("metadata", dict, "an object"),
)


def validate_responses_request(raw: Any, *, counting: bool = False) -> Mapping[str, Any]:
    """Check a /v1/responses (or, with ``counting``, /v1/responses/input_tokens) body.

    ``model`` is required even for counting, where OpenAI makes it optional: it is what
    chooses the upstream."""
    if not isinstance(raw, dict):
        raise InvalidRequest("the request body must be a JSON object")
    model = raw.get("model")
    if model is None:
        raise InvalidRequest("you must provide a model parameter", param="model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' must be a non-empty string", param="model")
    value = raw.get("input")
    if value is not None and not isinstance(value, str | list):
        raise InvalidRequest("'input' must be a string or an array of items", param="input")
    for i, item in enumerate(value if isinstance(value, list) else ()):
        if not isinstance(item, dict):
            raise InvalidRequest(f"'input[{i}]' must be an object", param=f"input[{i}]")
    if value is None and not counting and not _refers_to_stored_input(raw):
        raise InvalidRequest("you must provide an input parameter", param="input")
    for name, kinds, what in _OPTIONAL:
        field = raw.get(name)
        if field is None:
            continue
        # bool is an int to Python, and JSON true is no number, so it is checked apart.
        if isinstance(field, bool) != (kinds is bool) or not isinstance(field, kinds):
            raise InvalidRequest(f"'{name}' must be {what}", param=name)
    max_output = raw.get("max_output_tokens")
    if max_output is not None and (not is_int(max_output) or max_output < 1):
        raise InvalidRequest(
            "'max_output_tokens' must be a positive integer", param="max_output_tokens"
        )
    for name in ("temperature", "top_p"):
        if raw.get(name) is not None and not is_number(raw[name]):
            raise InvalidRequest(f"'{name}' must be a number", param=name)
    return raw


def _refers_to_stored_input(body: Mapping[str, Any]) -> bool:
    return any(
        body.get(name) is not None for name in ("previous_response_id", "conversation", "prompt")
    )


# --- usage ---------------------------------------------------------------------------------


def usage_from_responses(raw: Any) -> Usage | None:
    """Usage from a Response's ``usage``; None when absent. ``input_tokens`` include the
    cached ones (as chat's ``prompt_tokens`` do), and ``output_tokens`` the reasoning ones."""
    if not isinstance(raw, Mapping):
        return None
    details = raw.get("input_tokens_details")
    details = details if isinstance(details, Mapping) else {}
    out_details = raw.get("output_tokens_details")
    out_details = out_details if isinstance(out_details, Mapping) else {}
    return Usage(
        prompt_tokens=count(raw.get("input_tokens")),
        completion_tokens=count(raw.get("output_tokens")),
        cached_tokens=count(details.get("cached_tokens")),
        cache_write_tokens=count(details.get("cache_write_tokens")),
        reasoning_tokens=count(out_details.get("reasoning_tokens")),
    )


def usage_to_responses(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def failure_error(status: int, message: str) -> dict[str, str]:
    """A failed Response's ``error``: its ``code`` is one of the API's own few (the SDK checks
    it), so the proxy's finer code stays out and the status picks between the two that fit."""
    return {"code": "rate_limit_exceeded" if status == 429 else "server_error", "message": message}


def input_tokens_body(tokens: int) -> dict[str, Any]:
    """The answer of /v1/responses/input_tokens."""
    return {"object": "response.input_tokens", "input_tokens": tokens}


# --- the response object ---------------------------------------------------------------------


def response_object(
    request: Mapping[str, Any],
    *,
    response_id: str,
    created_at: int,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None,
    incomplete_reason: str | None = None,
    error: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A Response as the API returns it, echoing the request's settings as OpenAI does.

    ``store`` is always false here: a translated response is kept nowhere (the proxy keeps no
    conversation content, and the upstream that answered has no Responses store)."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": dict(error) if error is not None else None,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": request.get("reasoning") or {"effort": None, "summary": None},
        "store": False,
        "temperature": request.get("temperature", 1.0),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p", 1.0),
        "truncation": request.get("truncation", "disabled"),
        "usage": usage_to_responses(usage) if usage is not None else None,
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


# --- texts -----------------------------------------------------------------------------------


def response_texts(body: Mapping[str, Any]) -> Iterator[str]:
    """Every piece of generated text in a Response (messages, refusals, tool-call names and
    arguments, reasoning summaries), for counting output tokens when usage is missing."""
    for item in _dicts(body.get("output")):
        for name in ("name", "arguments", "input"):
            if isinstance(item.get(name), str):
                yield item[name]
        for part in _dicts(item.get("content")):
            for name in ("text", "refusal"):
                if isinstance(part.get(name), str):
                    yield part[name]
        for part in _dicts(item.get("summary")):
            if isinstance(part.get("text"), str):
                yield part["text"]


def event_text(event: Mapping[str, Any]) -> str | None:
    """The generated text a stream event carries, if any (a function call's name counts)."""
    kind = event.get("type")
    if kind in TEXT_DELTAS:
        delta = event.get("delta")
        return delta if isinstance(delta, str) else None
    if kind == "response.output_item.added":
        item = event.get("item")
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            return str(item["name"])
    return None


def chat_view(body: Mapping[str, Any]) -> dict[str, Any]:
    """A lenient chat-shaped view of a Responses body, only for counting its prompt locally
    (``tokens.count_chat_prompt``); it is never sent anywhere, so nothing in it is refused."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    value = body.get("input")
    if isinstance(value, str):
        messages.append({"role": "user", "content": value})
    for item in _dicts(value):
        kind = item.get("type", "message")
        if kind == "message":
            messages.append({"role": item.get("role"), "content": _chat_parts(item.get("content"))})
        elif kind in ("function_call", "custom_tool_call"):
            arguments = item.get("arguments", item.get("input"))
            function = {"name": item.get("name"), "arguments": arguments}
            messages.append({"role": "assistant", "tool_calls": [{"function": function}]})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            messages.append({"role": "tool", "content": _chat_parts(item.get("output"))})
        elif kind == "reasoning":
            summary = [p.get("text") for p in _dicts(item.get("summary"))]
            messages.append({"role": "assistant", "content": "".join(filter(None, summary))})
    tools = []
    for tool in _dicts(body.get("tools")):
        for inner in _dicts(tool.get("tools")) if tool.get("type") == "namespace" else [tool]:
            function = {k: inner.get(k) for k in ("name", "description", "parameters")}
            tools.append({"type": "function", "function": function})
    return {"messages": messages, "tools": tools}


def _chat_parts(content: Any) -> Any:
    if not isinstance(content, list):
        return content
    parts: list[dict[str, Any]] = []
    for part in _dicts(content):
        if isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif part.get("type") == "input_image":
            parts.append({"type": "image_url", "image_url": {"detail": part.get("detail")}})
    return parts


def _dicts(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, Mapping))
