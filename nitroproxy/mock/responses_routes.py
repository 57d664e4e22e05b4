"""The OpenAI Responses API of the mock (``POST /v1/responses``, ``/v1/responses/input_tokens``)
and Anthropic's ``POST /v1/messages/count_tokens``: what a proxy passes Codex and the
OpenAI SDK's ``responses.create`` through to, and where it forwards token counting.

A stream follows the API's event order with ``sequence_number``s: response.created,
response.in_progress, [a reasoning item's added/done under ``reasoning=N``], the message's
output_item.added and content_part.added, one output_text.delta per token, output_text.done,
content_part.done, output_item.done, response.completed (``response.incomplete`` when
``max_output_tokens`` cut it). A tool call streams function_call_arguments.delta fragments
instead. Usage: ``input_tokens`` by the formula of ``mock.content``, ``output_tokens`` the
tokens sent plus the reasoning ones, ``cached_tokens`` under ``cached=N``.
"""

import time
from typing import Any

import orjson
from aiohttp import web

from nitroproxy.mock.content import WORDS, chat_prompt_tokens, echo_words, last_user_text
from nitroproxy.mock.errors import InvalidRequest
from nitroproxy.mock.exchange import Call, StreamPlan, send_json, send_stream
from nitroproxy.mock.tools import plan_tool_call

_GARBAGE = b'event: response.output_text.delta\ndata: {not json\n\ndata: {"type": \n\n'


def _messages(body: dict[str, Any]) -> list[Any]:
    value = body.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest("'input' must be a string or an array.", "input")
    return value


def prompt_tokens(body: dict[str, Any]) -> int:
    return chat_prompt_tokens(_messages(body), body.get("instructions"))


def _offered_tools(body: dict[str, Any]) -> tuple[list[str], str | None]:
    tools, choice = body.get("tools"), body.get("tool_choice")
    if not tools or choice == "none":
        return [], None
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array.", "tools")
    names = []
    for tool in tools:
        members = tool.get("tools") if tool.get("type") == "namespace" else [tool]
        for member in members if isinstance(members, list) else []:
            if member.get("type") in ("function", "custom") and isinstance(member.get("name"), str):
                names.append(member["name"])
    forced = choice.get("name") if isinstance(choice, dict) else None
    return names, forced if isinstance(forced, str) else None


class _Events:
    """Encodes events with consecutive sequence numbers."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, **fields, "sequence_number": self.seq}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def responses(call: Call) -> web.StreamResponse:
    body, script = call.body, call.script
    messages = _messages(body)
    ident = call.state.next_id()
    echo = last_user_text(messages) if call.echoes else None
    planned = plan_tool_call(call, *_offered_tools(body), echo)
    output: list[dict[str, Any]] = []
    if script.reasoning:
        reasoning = {"id": f"rs_mock_{ident}", "type": "reasoning", "summary": []}
        output.append({**reasoning, "encrypted_content": f"mock-reasoning-{ident}"})
    status, incomplete = "completed", None
    item: dict[str, Any]
    if planned is None:
        words = echo_words(echo) if echo is not None else None
        available = script.tokens if words is None else len(words)
        limit = body.get("max_output_tokens")
        tokens = available
        if isinstance(limit, int) and not isinstance(limit, bool) and available > limit >= 1:
            tokens, status, incomplete = limit, "incomplete", {"reason": "max_output_tokens"}
        cycle = [WORDS[i % len(WORDS)] for i in range(tokens)]
        pieces = cycle if words is None else list(words[:tokens])
        part = {"type": "output_text", "text": "".join(pieces), "annotations": [], "logprobs": []}
        item = {
            "id": f"msg_mock_{ident}",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [part],
        }
    else:
        pieces = list(planned.call.fragments)
        tokens = len(pieces)
        item = {
            "id": f"fc_mock_{ident}",
            "type": "function_call",
            "status": "completed",
            "call_id": f"call_mock_{ident}",
            "name": planned.name,
            "arguments": planned.call.arguments,
        }
    output.append(item)
    prompt = prompt_tokens(body)
    out_tokens = tokens + script.reasoning
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": min(script.cached, prompt)},
        "output_tokens": out_tokens,
        "output_tokens_details": {"reasoning_tokens": script.reasoning},
        "total_tokens": prompt + out_tokens,
    }
    response: dict[str, Any] = {
        "id": f"resp_mock_{ident}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "model": call.model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "store": body.get("store", True),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "usage": usage if call.reports_usage else None,
    }
    if not call.stream:
        return await send_json(call, response, tokens)
    return await send_stream(call, _stream_plan(response, planned is None, pieces))


def _stream_plan(response: dict[str, Any], text: bool, pieces: list[str]) -> StreamPlan:
    event = _Events()
    *before, item = response["output"]
    opening = {**response, "status": "in_progress", "output": [], "usage": None}
    head = event("response.created", response=opening)
    head += event("response.in_progress", response=opening)
    for index, extra in enumerate(before):
        head += event("response.output_item.added", output_index=index, item=extra)
        head += event("response.output_item.done", output_index=index, item=extra)
    where = {"item_id": item["id"], "output_index": len(before)}
    if text:
        part = item["content"][0]
        empty = {**part, "text": ""}
        added = {**item, "status": "in_progress", "content": []}
        head += event("response.output_item.added", output_index=len(before), item=added)
        head += event("response.content_part.added", **where, content_index=0, part=empty)
        tokens = [
            event("response.output_text.delta", **where, content_index=0, delta=p, logprobs=[])
            for p in pieces
        ]
        tail = event(
            "response.output_text.done", **where, content_index=0, text=part["text"], logprobs=[]
        )
        tail += event("response.content_part.done", **where, content_index=0, part=part)
    else:
        added = {**item, "status": "in_progress", "arguments": ""}
        head += event("response.output_item.added", output_index=len(before), item=added)
        tokens = [event("response.function_call_arguments.delta", **where, delta=p) for p in pieces]
        tail = event(
            "response.function_call_arguments.done",
            **where,
            name=item["name"],
            arguments=item["arguments"],
        )
    tail += event("response.output_item.done", output_index=len(before), item=item)
    final = f"response.{response['status']}"
    tail += event(final, response=response)
    return StreamPlan(head, tokens, tail, _GARBAGE)


async def input_tokens(call: Call) -> web.StreamResponse:
    payload = {"object": "response.input_tokens", "input_tokens": prompt_tokens(call.body)}
    return await send_json(call, payload, 0)


async def count_tokens(call: Call) -> web.StreamResponse:
    messages = call.body["messages"]
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: must be a non-empty list", "messages")
    tokens = chat_prompt_tokens(messages, call.body.get("system"))
    return await send_json(call, {"input_tokens": tokens}, 0)
