"""The OpenAI-compatible routes of the mock: chat, legacy completions, embeddings, models."""

import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from aiohttp import web

from nitroproxy.mock.content import (
    MOCK_TOOL_CALL,
    chat_prompt_tokens,
    completion_text,
    echo_words,
    embedding_base64,
    embedding_items,
    embedding_vector,
    last_user_text,
    prompt_text,
    text_prompt_tokens,
    word_json,
)
from nitroproxy.mock.errors import InvalidRequest
from nitroproxy.mock.exchange import Call, StreamPlan, send_json, send_stream
from nitroproxy.mock.script import Script
from nitroproxy.mock.tools import plan_tool_call

MODEL_IDS = ("mock-gpt", "mock-gpt-mini", "mock-claude", "mock-embedding")
MODELS_BODY = orjson.dumps(
    {
        "object": "list",
        "data": [
            {
                "id": name,
                "object": "model",
                "created": 1700000000,
                "owned_by": "nitroproxy-mock",
            }
            for name in MODEL_IDS
        ],
    }
)
_FINGERPRINT = "fp_nitroproxy_mock"
_DONE = b"data: [DONE]\n\n"
_GARBAGE = b'data: {not json\n\ndata: {"choices": [{"delta": \n\n'
# A token chunk is encoded once per response around this marker, then each token's JSON string
# is spliced in: no JSON encoding per token.
_MARK = "\x00token\x00"
_MARK_JSON = orjson.dumps(_MARK)

_Chunk = Callable[..., bytes]


async def chat(call: Call) -> web.StreamResponse:
    body = call.body
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", "messages")
    echo = last_user_text(messages) if call.echoes else None
    planned = plan_tool_call(call, *_offered_tools(body), echo)
    tool = planned.name if planned is not None else None
    words = echo_words(echo) if echo is not None and tool is None else None
    arguments = planned.call if planned is not None else MOCK_TOOL_CALL
    if tool is None:
        tokens, finish = _completion_length(call, words)
    else:
        tokens, finish = len(arguments.fragments), "tool_calls"
    usage = _chat_usage(chat_prompt_tokens(messages), tokens, call.script)
    ident = call.state.next_id()
    base: dict[str, Any] = {
        "id": f"chatcmpl-mock-{ident}",
        "object": "chat.completion.chunk" if call.stream else "chat.completion",
        "created": int(time.time()),
        "model": call.model,
        "system_fingerprint": _FINGERPRINT,
    }
    tool_call = None
    if tool is not None:
        function = {"name": tool, "arguments": arguments.arguments}
        tool_call = {
            "id": f"call_mock_{ident}",
            "type": "function",
            "function": function,
        }
    if not call.stream:
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if tool_call is None:
            message["content"] = _text(tokens, words)
        else:
            message["tool_calls"] = [tool_call]
        message["refusal"] = None
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": finish,
        }
        payload = {**base, "choices": [choice]}
        if call.reports_usage:
            payload["usage"] = usage
        return await send_json(call, payload, tokens)
    include_usage = _include_usage(call)
    chunk = _chunk_encoder(base, include_usage)
    if tool_call is None:
        head = chunk({"role": "assistant", "content": "", "refusal": None})
        token_events = _text_events(chunk({"content": _MARK}), tokens, words)
    else:
        opening = {"index": 0, **tool_call, "function": {"name": tool, "arguments": ""}}
        head = chunk({"role": "assistant", "content": None, "tool_calls": [opening]})
        token_events = [
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})
            for fragment in arguments.fragments
        ]
    tail = chunk({}, finish) + _usage_chunk(base, usage, include_usage) + _DONE
    return await send_stream(call, StreamPlan(head, token_events, tail, _GARBAGE))


async def completions(call: Call) -> web.StreamResponse:
    try:
        prompt_tokens = text_prompt_tokens(call.body["prompt"])
    except ValueError as exc:
        raise InvalidRequest(f"'prompt': {exc}.", "prompt") from exc
    words = echo_words(prompt_text(call.body["prompt"])) if call.echoes else None
    tokens, finish = _completion_length(call, words)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": tokens,
        "total_tokens": prompt_tokens + tokens,
    }
    base: dict[str, Any] = {
        "id": f"cmpl-mock-{call.state.next_id()}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": call.model,
    }
    if not call.stream:
        text = _text(tokens, words)
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        payload = {**base, "choices": [choice]}
        if call.reports_usage:
            payload["usage"] = usage
        return await send_json(call, payload, tokens)
    include_usage = _include_usage(call)
    extra: dict[str, Any] = {"usage": None} if include_usage else {}

    def chunk(text: str, finish_reason: str | None = None) -> bytes:
        choice = {
            "text": text,
            "index": 0,
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        return _sse({**base, "choices": [choice], **extra})

    tail = chunk("", finish) + _usage_chunk(base, usage, include_usage)
    events = _text_events(chunk(_MARK), tokens, words)
    plan = StreamPlan(b"", events, tail + _DONE, _GARBAGE)
    return await send_stream(call, plan)


async def embeddings(call: Call) -> web.StreamResponse:
    body = call.body
    try:
        items = embedding_items(body["input"])
    except ValueError as exc:
        raise InvalidRequest(f"'input': {exc}.", "input") from exc
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    data = []
    for index, item in enumerate(items):
        vector = embedding_vector(item)
        embedding = embedding_base64(vector) if encoding == "base64" else list(vector)
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    payload: dict[str, Any] = {"object": "list", "data": data, "model": call.model}
    if call.reports_usage:
        tokens = text_prompt_tokens(items)
        payload["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return await send_json(call, payload, 0)


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _chunk_encoder(base: dict[str, Any], include_usage: bool) -> _Chunk:
    # With include_usage, OpenAI puts "usage": null on every chunk but the usage chunk.
    extra: dict[str, Any] = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {
            "index": 0,
            "delta": delta,
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        return _sse({**base, "choices": [choice], **extra})

    return chunk


def _usage_chunk(base: dict[str, Any], usage: dict[str, Any], include_usage: bool) -> bytes:
    """The chunk after the finish_reason one: ``choices: []`` and the usage."""
    return _sse({**base, "choices": [], "usage": usage}) if include_usage else b""


def _text(tokens: int, words: Sequence[str] | None) -> str:
    """The completion text: ``tokens`` cyclic ``WORDS``, or the first ``tokens`` echo words."""
    return completion_text(tokens) if words is None else "".join(words[:tokens])


def _text_events(template: bytes, tokens: int, words: Sequence[str] | None) -> list[bytes]:
    before, _, after = template.rpartition(_MARK_JSON)
    if words is None:
        return [before + word_json(index) + after for index in range(tokens)]
    return [before + orjson.dumps(word) + after for word in words[:tokens]]


def _include_usage(call: Call) -> bool:
    options = call.body.get("stream_options")
    return call.reports_usage and isinstance(options, dict) and options.get("include_usage") is True


def _completion_length(call: Call, words: Sequence[str] | None) -> tuple[int, str]:
    """Tokens to send and the finish reason, honouring ``max_completion_tokens``/``max_tokens``.

    The tokens are the script's, or with ``echo`` one per word of ``words``.
    """
    body = call.body
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    tokens = call.script.tokens if words is None else len(words)
    if isinstance(limit, int) and not isinstance(limit, bool) and tokens > limit >= 0:
        return limit, "length"
    return tokens, "stop"


def _chat_usage(prompt: int, completion: int, script: Script) -> dict[str, Any]:
    # OpenAI counts reasoning tokens inside completion_tokens.
    completion += script.reasoning
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": min(script.cached, prompt)},
        "completion_tokens_details": {"reasoning_tokens": script.reasoning},
    }


def _function_name(tool: Any) -> str | None:
    function = tool.get("function") if isinstance(tool, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else None


def _offered_tools(body: dict[str, Any]) -> tuple[list[str], str | None]:
    """The functions offered, and the one tool_choice names (``mock.tools`` picks)."""
    tools, choice = body.get("tools"), body.get("tool_choice")
    if not tools or choice == "none":
        return [], None
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array.", "tools")
    names = [name for name in map(_function_name, tools) if name is not None]
    forced = None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        forced = choice["function"].get("name")
        if not isinstance(forced, str):
            raise InvalidRequest("'tool_choice.function.name' must be a string.", "tool_choice")
    elif _function_name(tools[0]) is None:
        raise InvalidRequest("'tools[0].function.name' must be a string.", "tools")
    return names, forced
