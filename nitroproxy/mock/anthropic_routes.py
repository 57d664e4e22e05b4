"""The Anthropic Messages route of the mock (``POST /v1/messages``).

The stream follows Anthropic's real event order: message_start, content_block_start, ping,
content_block_delta per token, content_block_stop, message_delta, message_stop.
"""

from typing import Any

import orjson
from aiohttp import web

from nitroproxy.mock.content import (
    MOCK_TOOL_CALL,
    WORDS,
    chat_prompt_tokens,
    completion_text,
    echo_words,
    last_user_text,
)
from nitroproxy.mock.errors import InvalidRequest
from nitroproxy.mock.exchange import Call, StreamPlan, send_json, send_stream
from nitroproxy.mock.tools import plan_tool_call


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _delta(delta: dict[str, str]) -> bytes:
    payload = {"type": "content_block_delta", "index": 0, "delta": delta}
    return _event("content_block_delta", payload)


def _text_delta(word: str) -> bytes:
    return _delta({"type": "text_delta", "text": word})


def _json_delta(fragment: str) -> bytes:
    return _delta({"type": "input_json_delta", "partial_json": fragment})


# Every token event is the same bytes in every response, so they are all encoded once here
# (``echo`` answers encode theirs per request).
_TEXT_DELTAS = tuple(_text_delta(word) for word in WORDS)
_JSON_DELTAS = tuple(_json_delta(part) for part in MOCK_TOOL_CALL.fragments)
_PING = _event("ping", {"type": "ping"})
_BLOCK_STOP = _event("content_block_stop", {"type": "content_block_stop", "index": 0})
_MESSAGE_STOP = _event("message_stop", {"type": "message_stop"})
_GARBAGE = b'event: content_block_delta\ndata: {not json\n\ndata: {"type": \n\n'


async def messages(call: Call) -> web.StreamResponse:
    body, script = call.body, call.script
    turns = body["messages"]
    if not isinstance(turns, list) or not turns:
        raise InvalidRequest("messages: must be a non-empty list", "messages")
    prompt = chat_prompt_tokens(turns, body.get("system"))
    cached = min(script.cached, prompt)
    ident = call.state.next_id()
    echo = last_user_text(turns) if call.echoes else None
    planned = plan_tool_call(call, *_offered_tools(body), echo)
    tool = planned.name if planned is not None else None
    words = echo_words(echo) if echo is not None and tool is None else None
    arguments = planned.call if planned is not None else MOCK_TOOL_CALL
    block: dict[str, Any]
    if tool is None:
        available = script.tokens if words is None else len(words)
        output, stop = _output_length(body, available)
        text = completion_text(output) if words is None else "".join(words[:output])
        block = {"type": "text", "text": text}
    else:
        output, stop = len(arguments.fragments), "tool_use"
        block = {
            "type": "tool_use",
            "id": f"toolu_mock_{ident}",
            "name": tool,
            "input": arguments.input,
        }
    # Anthropic's input_tokens excludes the tokens read from the cache.
    # Cache writes are reported outside input_tokens too, with their split by cache lifetime.
    writes = script.write_5m + script.write_1h
    usage: dict[str, Any] = {
        "input_tokens": prompt - cached,
        "output_tokens": output,
        "cache_creation_input_tokens": writes,
        "cache_read_input_tokens": cached,
    }
    if writes:
        usage["cache_creation"] = {
            "ephemeral_5m_input_tokens": script.write_5m,
            "ephemeral_1h_input_tokens": script.write_1h,
        }
    message: dict[str, Any] = {
        "id": f"msg_mock_{ident}",
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": [block],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }
    if not call.stream:
        if not call.reports_usage:
            del message["usage"]
        return await send_json(call, message, output)
    opening = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": {**usage, "output_tokens": 1},
    }
    start_block = {**block, "text": ""} if tool is None else {**block, "input": {}}
    head = (
        _event("message_start", {"type": "message_start", "message": opening})
        + _event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": start_block},
        )
        + _PING
    )
    if tool is not None:
        echoed = arguments is not MOCK_TOOL_CALL
        tokens = list(map(_json_delta, arguments.fragments) if echoed else _JSON_DELTAS)
    elif words is None:
        tokens = [_TEXT_DELTAS[index % len(_TEXT_DELTAS)] for index in range(output)]
    else:
        tokens = [_text_delta(word) for word in words[:output]]
    final: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": None},
    }
    # Anthropic reports the final output count here, not in message_stop.
    if call.reports_usage:
        final["usage"] = {"output_tokens": output}
    tail = _BLOCK_STOP + _event("message_delta", final) + _MESSAGE_STOP
    return await send_stream(call, StreamPlan(head, tokens, tail, _GARBAGE))


def _output_length(body: dict[str, Any], tokens: int) -> tuple[int, str]:
    limit = body.get("max_tokens")
    if limit is None:
        return tokens, "end_turn"
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidRequest("max_tokens: must be an integer >= 1", "max_tokens")
    return (limit, "max_tokens") if tokens > limit else (tokens, "end_turn")


def _offered_tools(body: dict[str, Any]) -> tuple[list[str], str | None]:
    """The tools offered, and the one tool_choice names (``mock.tools`` picks)."""
    tools, choice = body.get("tools"), body.get("tool_choice")
    if not tools or (isinstance(choice, dict) and choice.get("type") == "none"):
        return [], None
    if not isinstance(tools, list):
        raise InvalidRequest("tools: must be a list", "tools")
    names = [t["name"] for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]
    forced = None
    if isinstance(choice, dict) and choice.get("type") == "tool":
        forced = choice.get("name")
        if not isinstance(forced, str):
            raise InvalidRequest("tool_choice.name: must be a string", "tool_choice")
    elif not (isinstance(tools[0], dict) and isinstance(tools[0].get("name"), str)):
        raise InvalidRequest("tools.0.name: must be a string", "tools")
    return names, forced
