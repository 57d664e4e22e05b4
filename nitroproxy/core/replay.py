"""Stored responses replayed as client streams, sans I/O.

A cached entry holds a non-stream response in the client's format (an OpenAI
``chat.completion`` or ``text_completion``, or an Anthropic ``message``); a streaming request
served from it gets the SSE events the API would have sent. For a body of the shape
``StreamAssembler.assembled()`` returns, assembling the replay gives the body back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from nitroproxy.core import sse
from nitroproxy.core.assembler import OPENAI_TOP_EXTRAS, StreamAssembler
from nitroproxy.core.types import Endpoint

__all__ = [
    "CHUNK_CHARS",
    "StreamAssembler",
    "is_complete",
    "replay_anthropic_stream",
    "replay_completion_stream",
    "replay_openai_stream",
    "replay_stream",
]

CHUNK_CHARS = 64


def is_complete(endpoint: Endpoint, body: Mapping[str, Any]) -> bool:
    """A successful, finished response that can be stored (and replayed as a stream)."""
    if body.get("error") is not None:
        return False
    if endpoint is Endpoint.MESSAGES:
        content = body.get("content")
        return isinstance(content, list) and isinstance(body.get("stop_reason"), str)
    if endpoint is Endpoint.EMBEDDINGS:
        return isinstance(body.get("data"), list)
    choices = body.get("choices")
    return (
        isinstance(choices, list)
        and bool(choices)
        and all(isinstance(c, dict) and isinstance(c.get("finish_reason"), str) for c in choices)
    )


def replay_stream(
    endpoint: Endpoint,
    body: Mapping[str, Any],
    *,
    include_usage: bool,
    chunk_chars: int = CHUNK_CHARS,
) -> list[bytes]:
    """The SSE events a streaming client gets for a stored response of ``endpoint``."""
    if endpoint is Endpoint.MESSAGES:
        return replay_anthropic_stream(body, chunk_chars=chunk_chars)
    if endpoint is Endpoint.COMPLETIONS:
        return replay_completion_stream(body, include_usage=include_usage, chunk_chars=chunk_chars)
    if endpoint is Endpoint.CHAT:
        return replay_openai_stream(body, include_usage=include_usage, chunk_chars=chunk_chars)
    raise ValueError(f"{endpoint.value} responses do not stream")


def replay_openai_stream(
    response: Mapping[str, Any], *, include_usage: bool, chunk_chars: int = CHUNK_CHARS
) -> list[bytes]:
    """role chunk, content/refusal/tool-call chunks and a finish chunk per choice, then the
    usage chunk (only with ``include_usage``, and then ``"usage": null`` on the others) and
    ``[DONE]``."""
    out = _OpenAIChunks(response, "chat.completion.chunk", include_usage)
    for choice in response.get("choices") or []:
        i = choice.get("index", 0)
        m = choice.get("message") or {}
        content, refusal = _content_text(m.get("content")), m.get("refusal")
        out.choice(
            i,
            {
                "role": m.get("role") or "assistant",
                "content": "" if isinstance(content, str) else None,
                "refusal": "" if isinstance(refusal, str) else None,
            },
        )
        for piece in _pieces(content, chunk_chars):
            out.choice(i, {"content": piece})
        for piece in _pieces(refusal, chunk_chars):
            out.choice(i, {"refusal": piece})
        for k, call in enumerate(m.get("tool_calls") or []):
            fn = call.get("function") or {}
            head = {"index": k, "id": call.get("id"), "type": call.get("type") or "function"}
            head["function"] = {"name": fn.get("name") or "", "arguments": ""}
            out.choice(i, {"tool_calls": [head]})
            for piece in _pieces(fn.get("arguments"), chunk_chars):
                out.choice(i, {"tool_calls": [{"index": k, "function": {"arguments": piece}}]})
        fc = m.get("function_call")
        if isinstance(fc, dict):
            out.choice(i, {"function_call": {"name": fc.get("name") or "", "arguments": ""}})
            for piece in _pieces(fc.get("arguments"), chunk_chars):
                out.choice(i, {"function_call": {"arguments": piece}})
        out.choice(i, {}, choice.get("finish_reason") or "stop")
    return out.finish()


def replay_completion_stream(
    response: Mapping[str, Any], *, include_usage: bool, chunk_chars: int = CHUNK_CHARS
) -> list[bytes]:
    """Legacy ``/v1/completions``: text chunks and a finish chunk per choice, then as chat."""
    out = _OpenAIChunks(response, "text_completion", include_usage)
    for choice in response.get("choices") or []:
        i = choice.get("index", 0)
        for piece in _pieces(choice.get("text"), chunk_chars):
            out.text(i, piece, None)
        out.text(i, "", choice.get("finish_reason") or "stop")
    return out.finish()


class _OpenAIChunks:
    def __init__(self, response: Mapping[str, Any], kind: str, include_usage: bool) -> None:
        self._response = response
        self._include_usage = include_usage
        self._base = {
            "id": response.get("id", ""),
            "object": kind,
            "created": response.get("created", 0),
            "model": response.get("model", ""),
        }
        self._base.update(
            (k, response[k]) for k in OPENAI_TOP_EXTRAS if response.get(k) is not None
        )
        self._out: list[bytes] = []

    def choice(self, index: int, delta: dict[str, Any], finish: str | None = None) -> None:
        self._emit([{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}])

    def text(self, index: int, text: str, finish: str | None) -> None:
        self._emit([{"text": text, "index": index, "logprobs": None, "finish_reason": finish}])

    def _emit(self, choices: list[dict[str, Any]], usage: Any = None) -> None:
        chunk = {**self._base, "choices": choices}
        if self._include_usage:
            chunk["usage"] = usage
        self._out.append(sse.encode(orjson.dumps(chunk)))

    def finish(self) -> list[bytes]:
        usage = self._response.get("usage")
        if self._include_usage and isinstance(usage, dict):
            self._emit([], usage)
        self._out.append(sse.DONE)
        return self._out


def replay_anthropic_stream(
    message: Mapping[str, Any], *, chunk_chars: int = CHUNK_CHARS
) -> list[bytes]:
    """message_start, then per block content_block_start / deltas / content_block_stop, then
    message_delta (stop reason, cumulative usage) and message_stop."""
    usage = dict(message.get("usage") or {})
    start = {k: v for k, v in message.items() if k not in ("content", "usage")}
    start.update(content=[], stop_reason=None, stop_sequence=None)
    start["usage"] = {**usage, "output_tokens": min(_int(usage.get("output_tokens")), 1)}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start})
    ]
    for index, block in enumerate(message.get("content") or []):
        head, deltas = _block_replay(block, chunk_chars)
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": head},
            )
        )
        events.extend(
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta = {
        "stop_reason": message.get("stop_reason"),
        "stop_sequence": message.get("stop_sequence"),
    }
    events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
    events.append(("message_stop", {"type": "message_stop"}))
    return [sse.encode(orjson.dumps(data), name) for name, data in events]


def _block_replay(
    block: Mapping[str, Any], chunk_chars: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    head = dict(block)
    deltas: list[dict[str, Any]] = []
    kind = block.get("type")
    if kind == "text":
        head["text"] = ""
        deltas = [
            {"type": "text_delta", "text": p} for p in _pieces(block.get("text"), chunk_chars)
        ]
        citations = block.get("citations")
        if isinstance(citations, list) and citations:
            del head["citations"]
            deltas += [{"type": "citations_delta", "citation": c} for c in citations]
    elif kind == "thinking":
        head["thinking"] = ""
        deltas = [
            {"type": "thinking_delta", "thinking": p}
            for p in _pieces(block.get("thinking"), chunk_chars)
        ]
        if "signature" in block:
            head["signature"] = ""
            if block["signature"]:
                deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif isinstance(block.get("input"), dict):  # tool_use, server_tool_use, mcp_tool_use
        head["input"] = {}
        text = json.dumps(block["input"], separators=(",", ":"), ensure_ascii=False)
        if block["input"]:
            deltas = [
                {"type": "input_json_delta", "partial_json": p} for p in _pieces(text, chunk_chars)
            ]
    return head, deltas


def _content_text(content: Any) -> Any:
    # Some OpenAI-compatible servers answer with a list of text parts.
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return content


def _pieces(text: Any, size: int) -> Iterator[str]:
    size = max(size, 1)
    if isinstance(text, str):
        for start in range(0, len(text), size):
            yield text[start : start + size]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
