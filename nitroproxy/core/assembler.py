"""A client stream assembled into the equivalent non-stream response, sans I/O.

The assembler reads what the client was sent (after any format translation), so the result
is in the client's format: an OpenAI ``chat.completion`` or ``text_completion``, or an
Anthropic ``message``. What it cannot rebuild faithfully (logprobs, audio, unknown delta
kinds, an error, a stream without its end marker) makes ``assembled()`` return None, and the
response is not cached. ``core.replay`` is the inverse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

from nitroproxy.core import sse
from nitroproxy.core.anthropic_wire import usage_to_anthropic, usage_to_openai
from nitroproxy.core.types import Endpoint, Usage

OPENAI_TOP_EXTRAS = ("system_fingerprint", "service_tier")
_TEXT_DELTAS = {"text_delta": "text", "thinking_delta": "thinking"}


class _Lossy(Exception):
    """The stream holds something the assembled response could not reproduce."""


class StreamAssembler:
    """Fed the client-format stream as it is sent; ``assembled()`` is the non-stream body.

    ``feed_bytes`` takes the SSE bytes written to the client (comments and keep-alives are
    ignored); ``feed_chunk``/``feed_done`` (OpenAI) and ``feed_event`` (Anthropic) take
    decoded events. Never raises: input it does not understand only makes the stream
    uncacheable. Past ``max_bytes`` of input it stops collecting, for the same reason.
    """

    def __init__(self, endpoint: Endpoint, *, max_bytes: int | None = None) -> None:
        if endpoint is Endpoint.EMBEDDINGS:
            raise ValueError("embeddings do not stream")
        self._endpoint = endpoint
        self._max_bytes = max_bytes
        self._seen = 0
        self._decoder = sse.SSEDecoder()
        self._failed = False
        self._done = False
        self._top: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._usage: dict[str, Any] | None = None
        self._message: dict[str, Any] | None = None
        self._blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, list[str]] = {}

    @property
    def failed(self) -> bool:
        return self._failed

    def feed_bytes(self, data: bytes) -> None:
        if self._failed:
            return
        self._seen += len(data)
        if self._max_bytes is not None and self._seen > self._max_bytes:
            self._fail()
            return
        for event in self._decoder.feed(data):
            if event.data is None:
                continue
            if event.data == b"[DONE]":
                self.feed_done()
                continue
            try:
                payload = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                payload = None
            if not isinstance(payload, dict):
                self._fail()
            elif self._endpoint is Endpoint.MESSAGES:
                self.feed_event(event.event, payload)
            else:
                self.feed_chunk(payload)

    def feed_chunk(self, chunk: Mapping[str, Any]) -> None:
        if not self._failed and not self._done:
            self._guard(self._chunk, chunk)

    def feed_done(self) -> None:
        if self._endpoint is not Endpoint.MESSAGES:  # Anthropic streams end at message_stop
            self._done = True

    def feed_event(self, event: str | None, data: Mapping[str, Any]) -> None:
        if not self._failed and not self._done:
            self._guard(self._event, event, data)

    def assembled(self, *, usage: Usage | None = None) -> dict[str, Any] | None:
        """The full response, or None. ``usage`` stands in when the stream carried none (a
        client that did not ask for the usage chunk never saw it)."""
        if self._failed or not self._done:
            return None
        try:
            if self._endpoint is Endpoint.MESSAGES:
                return self._message_body(usage)
            return self._openai_body(usage)
        except _Lossy:
            return None

    # -- OpenAI ---------------------------------------------------------------------------

    def _chunk(self, chunk: Mapping[str, Any]) -> None:
        if chunk.get("error") is not None:
            raise _Lossy
        for key in ("id", "object", "created", "model"):
            if key in chunk:
                self._top.setdefault(key, chunk[key])
        for key in OPENAI_TOP_EXTRAS:
            if chunk.get(key) is not None:
                self._top[key] = chunk[key]
        if isinstance(chunk.get("usage"), dict):
            self._usage = dict(chunk["usage"])
        for choice in chunk.get("choices") or []:
            if choice.get("logprobs") is not None:
                raise _Lossy
            state = self._choices.setdefault(int(choice.get("index", 0)), _new_choice())
            if self._endpoint is Endpoint.COMPLETIONS:
                state["text"] += _text(choice.get("text") or "")
            else:
                _apply_delta(state, choice.get("delta") or {})
            if choice.get("finish_reason") is not None:
                state["finish_reason"] = choice["finish_reason"]

    def _openai_body(self, usage: Usage | None) -> dict[str, Any]:
        if not self._choices or any(c["finish_reason"] is None for c in self._choices.values()):
            raise _Lossy
        chat = self._endpoint is Endpoint.CHAT
        body: dict[str, Any] = {
            "id": self._top.get("id", ""),
            "object": "chat.completion" if chat else "text_completion",
            "created": self._top.get("created", 0),
            "model": self._top.get("model", ""),
            "choices": [_choice_body(i, self._choices[i], chat) for i in sorted(self._choices)],
        }
        body.update((k, self._top[k]) for k in OPENAI_TOP_EXTRAS if k in self._top)
        if self._usage is not None:
            body["usage"] = self._usage
        elif usage is not None:
            body["usage"] = usage_to_openai(usage)
        return body

    # -- Anthropic ------------------------------------------------------------------------

    def _event(self, event: str | None, data: Mapping[str, Any]) -> None:
        kind = data.get("type", event)
        if kind == "message_start":
            self._message = dict(data["message"])
            self._usage = dict(self._message.get("usage") or {})
        elif kind == "content_block_start":
            self._blocks[int(data["index"])] = dict(data["content_block"])
        elif kind == "content_block_delta":
            self._block_delta(int(data["index"]), data["delta"])
        elif kind == "content_block_stop":
            self._close_block(int(data["index"]))
        elif kind == "message_delta":
            if self._message is None:
                raise _Lossy
            delta = data.get("delta") or {}
            for key in ("stop_reason", "stop_sequence"):
                if key in delta:
                    self._message[key] = delta[key]
            usage = data.get("usage") or {}
            # Cumulative counts; a field the delta leaves out keeps its message_start value.
            self._usage = {
                **(self._usage or {}),
                **{k: v for k, v in usage.items() if v is not None},
            }
        elif kind == "message_stop":
            self._done = True
        elif kind == "error":
            raise _Lossy
        # ping and event kinds added later carry nothing for the message.

    def _block_delta(self, index: int, delta: Mapping[str, Any]) -> None:
        block = self._blocks[index]
        kind = delta.get("type")
        if kind in _TEXT_DELTAS:
            field = _TEXT_DELTAS[str(kind)]
            block[field] = _text(block.get(field) or "") + _text(delta[field])
        elif kind == "input_json_delta":
            self._json.setdefault(index, []).append(_text(delta["partial_json"]))
        elif kind == "signature_delta":
            block["signature"] = _text(delta["signature"])
        elif kind == "citations_delta":
            if not isinstance(block.get("citations"), list):
                block["citations"] = []
            block["citations"].append(delta["citation"])
        else:
            raise _Lossy

    def _close_block(self, index: int) -> None:
        pieces = self._json.pop(index, None)
        if pieces is not None and "".join(pieces):
            value = json.loads("".join(pieces))
            if not isinstance(value, dict):
                raise _Lossy
            self._blocks[index]["input"] = value

    def _message_body(self, usage: Usage | None) -> dict[str, Any]:
        for index in list(self._json):
            self._close_block(index)
        message = self._message
        if message is None or message.get("stop_reason") is None:
            raise _Lossy
        body = {**message, "content": [self._blocks[i] for i in sorted(self._blocks)]}
        if self._usage:
            body["usage"] = self._usage
        elif usage is not None:
            body["usage"] = usage_to_anthropic(usage)
        return body

    # -- plumbing -------------------------------------------------------------------------

    def _guard(self, method: Any, *args: Any) -> None:
        try:
            method(*args)
        except (_Lossy, LookupError, TypeError, ValueError, AttributeError):
            self._fail()

    def _fail(self) -> None:
        self._failed = True
        self._choices.clear()
        self._blocks.clear()
        self._json.clear()
        self._message = None


def _new_choice() -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": {},
        "function_call": None,
        "text": "",
        "finish_reason": None,
    }


def _apply_delta(state: dict[str, Any], delta: Mapping[str, Any]) -> None:
    for key, value in delta.items():
        if value is None:
            continue
        if key == "role":
            state["role"] = _text(value)
        elif key in ("content", "refusal"):
            state[key] = (state[key] or "") + _text(value)
        elif key == "tool_calls":
            for call in value:
                _apply_tool_call(state["tool_calls"], call)
        elif key == "function_call":
            current = state["function_call"] or {"name": "", "arguments": ""}
            _merge_function(current, value)
            state["function_call"] = current
        elif value not in ("", [], {}):
            raise _Lossy  # annotations, audio, ...: not reproduced, so not cached


def _apply_tool_call(calls: dict[int, dict[str, Any]], delta: Mapping[str, Any]) -> None:
    call = calls.setdefault(
        int(delta.get("index", len(calls))),
        {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
    )
    if delta.get("id"):
        call["id"] = delta["id"]  # some servers repeat the id on every delta
    if delta.get("type"):
        call["type"] = delta["type"]
    _merge_function(call["function"], delta.get("function") or {})


def _merge_function(function: dict[str, Any], delta: Mapping[str, Any]) -> None:
    name = delta.get("name")
    if name and name != function["name"]:
        function["name"] += _text(name)
    function["arguments"] += _text(delta.get("arguments") or "")


def _choice_body(index: int, state: dict[str, Any], chat: bool) -> dict[str, Any]:
    if not chat:
        return {
            "text": state["text"],
            "index": index,
            "logprobs": None,
            "finish_reason": state["finish_reason"],
        }
    message: dict[str, Any] = {
        "role": state["role"],
        "content": state["content"],
        "refusal": state["refusal"],
    }
    if state["tool_calls"]:
        message["tool_calls"] = [state["tool_calls"][i] for i in sorted(state["tool_calls"])]
    if state["function_call"] is not None:
        message["function_call"] = state["function_call"]
    return {
        "index": index,
        "message": message,
        "logprobs": None,
        "finish_reason": state["finish_reason"],
    }


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Lossy
    return value
