"""Chat completions and Anthropic Messages answers as Responses API answers, sans I/O.

Both directions feed a ``ResponsesBuilder``: the stream classes per upstream chunk or event
(``feed`` returns what the client is owed now, nothing is held back), the ``*_to_response``
functions with a whole answer. An upstream error mid-stream raises ``UpstreamStatusError``
as the other stream translators do; the caller ends the client's stream with the builder's
``fail`` event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nitroproxy.core import openai_wire
from nitroproxy.core.anthropic_stream import openai_stream_error, stream_error
from nitroproxy.core.anthropic_wire import usage_from_anthropic
from nitroproxy.core.json_values import compact
from nitroproxy.core.responses_output import Event, ResponsesBuilder
from nitroproxy.core.responses_request import REDACTED_MARK, SIGNATURE_MARK
from nitroproxy.core.types import Usage

# finish_reason / stop_reason to the reason a Response is incomplete (None: it completed).
_CHAT_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
_ANTHROPIC_INCOMPLETE = {
    "max_tokens": "max_output_tokens",
    "model_context_window_exceeded": "max_output_tokens",
    "refusal": "content_filter",
}


# --- chat completions ------------------------------------------------------------------------


def _chat_reasoning(part: Mapping[str, Any]) -> str | None:
    # DeepSeek, vLLM and others stream a model's reasoning as ``reasoning_content``.
    for name in ("reasoning_content", "reasoning"):
        if isinstance(part.get(name), str):
            return str(part[name])
    return None


class ChatToResponsesStream:
    """OpenAI chat chunks (choice 0) -> Responses events. Tool-call deltas carry an index;
    a new index or a new id starts a new function call, as OpenAI sends them one by one."""

    def __init__(self, builder: ResponsesBuilder) -> None:
        self.builder = builder
        self._usage: Usage | None = None
        self._finish_reason: str | None = None
        self._call: tuple[Any, Any] = (None, None)  # (index, id) of the open tool call

    @property
    def usage(self) -> Usage | None:
        return self._usage

    def feed(self, chunk: Mapping[str, Any]) -> list[Event]:
        if chunk.get("error") is not None:
            raise openai_stream_error(chunk)
        events = self.builder.start()
        if isinstance(chunk.get("usage"), Mapping):
            self._usage = openai_wire.usage_from(chunk["usage"])
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = _chat_reasoning(delta)
            if reasoning:
                events += self.builder.reasoning(reasoning)
            if isinstance(delta.get("content"), str) and delta["content"]:
                events += self.builder.text(delta["content"])
            if isinstance(delta.get("refusal"), str) and delta["refusal"]:
                events += self.builder.refusal(delta["refusal"])
            for call in delta.get("tool_calls") or []:
                events += self._tool_call(call)
            self._finish_reason = choice.get("finish_reason") or self._finish_reason
        return events

    def finish(self, *, usage: Usage | None = None) -> list[Event]:
        """The closing events once the upstream sent [DONE]; ``usage`` stands in when the
        upstream reported none."""
        final = self._usage if self._usage is not None else usage
        incomplete = _CHAT_INCOMPLETE.get(self._finish_reason or "")
        return self.builder.finish(incomplete=incomplete, usage=final)

    def _tool_call(self, call: Mapping[str, Any]) -> list[Event]:
        index, call_id = call.get("index"), call.get("id")
        function = call.get("function") or {}
        events: list[Event] = []
        same = (index is None or index == self._call[0]) and (
            not call_id or call_id == self._call[1]
        )
        if not same or self._call == (None, None):
            self._call = (index, call_id)
            events = self.builder.tool_call(call_id, str(function.get("name") or ""))
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            events += self.builder.arguments(arguments)
        return events


def chat_to_response(body: Mapping[str, Any], builder: ResponsesBuilder) -> dict[str, Any]:
    """A chat.completion (choice 0) as a Response."""
    choices = body.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], Mapping) else {}
    message = choice.get("message") or {}
    reasoning = _chat_reasoning(message)
    if reasoning:
        builder.reasoning(reasoning)
    content = message.get("content")
    if isinstance(content, list):  # some OpenAI-compatible servers answer with parts
        content = "".join(p.get("text") or "" for p in content if isinstance(p, Mapping))
    if isinstance(content, str) and content:
        builder.text(content)
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        builder.refusal(message["refusal"])
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        builder.tool_call(call.get("id"), str(function.get("name") or ""))
        builder.arguments(str(function.get("arguments") or ""))
    usage = openai_wire.usage_from(body.get("usage"))
    builder.finish(incomplete=_CHAT_INCOMPLETE.get(choice.get("finish_reason") or ""), usage=usage)
    return builder.response()


# --- Anthropic Messages ----------------------------------------------------------------------


class MessagesToResponsesStream:
    """Anthropic stream events -> Responses events. Thinking becomes a reasoning item whose
    ``encrypted_content`` carries the block's signature (marked), so that a client sending
    the item back gives Claude its thinking block again."""

    def __init__(self, builder: ResponsesBuilder) -> None:
        self.builder = builder
        self._usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._blocks: dict[int, str] = {}  # index -> block type, for the blocks we follow

    @property
    def usage(self) -> Usage | None:
        return usage_from_anthropic(self._usage) if self._usage else None

    def feed(self, event: str | None, data: Mapping[str, Any]) -> list[Event]:
        match data.get("type", event):
            case "message_start":
                message = data.get("message") or {}
                self._usage = dict(message.get("usage") or {})
                return self.builder.start()
            case "content_block_start":
                return self._block_start(data.get("index"), data.get("content_block") or {})
            case "content_block_delta":
                return self._block_delta(data.get("index"), data.get("delta") or {})
            case "content_block_stop":
                index = data.get("index")
                kind = self._blocks.pop(index, "") if isinstance(index, int) else ""
                # Text blocks stay open: consecutive ones (split around citations) are one
                # message, as Anthropic shows them.
                return self.builder.close() if kind in ("thinking", "tool_use") else []
            case "message_delta":
                # Cumulative counts; a field the delta leaves out keeps its earlier value.
                usage = data.get("usage") or {}
                self._usage.update({k: v for k, v in usage.items() if v is not None})
                self._stop_reason = (data.get("delta") or {}).get("stop_reason")
                return []
            case "message_stop":
                return self.finish()
            case "error":
                raise stream_error(data)
            case _:
                return []  # ping, and event types added later

    def finish(self, *, usage: Usage | None = None) -> list[Event]:
        final = self.usage if self._usage else usage
        incomplete = _ANTHROPIC_INCOMPLETE.get(self._stop_reason or "")
        return self.builder.finish(incomplete=incomplete, usage=final)

    def _block_start(self, index: Any, block: Mapping[str, Any]) -> list[Event]:
        kind = block.get("type")
        if isinstance(index, int) and kind in ("text", "thinking", "tool_use"):
            self._blocks[index] = str(kind)
        if kind == "text":
            return self.builder.text(block["text"]) if block.get("text") else []
        if kind == "thinking":
            return self.builder.open_reasoning()
        if kind == "redacted_thinking":
            events = self.builder.seal_reasoning(REDACTED_MARK + str(block.get("data") or ""))
            return events + self.builder.close()
        if kind == "tool_use":
            return self.builder.tool_call(block.get("id"), str(block.get("name") or ""))
        return []  # server tool blocks: never asked for by a translated request

    def _block_delta(self, index: Any, delta: Mapping[str, Any]) -> list[Event]:
        kind = delta.get("type")
        followed = self._blocks.get(index)
        if kind == "text_delta" and delta.get("text") and followed == "text":
            return self.builder.text(str(delta["text"]))
        if kind == "thinking_delta" and followed == "thinking":
            return self.builder.reasoning(str(delta.get("thinking") or ""))
        if kind == "signature_delta" and followed == "thinking":
            return self.builder.seal_reasoning(SIGNATURE_MARK + str(delta.get("signature") or ""))
        if kind == "input_json_delta" and followed == "tool_use":
            return self.builder.arguments(str(delta.get("partial_json") or ""))
        return []  # citations and delta kinds added later


def message_to_response(body: Mapping[str, Any], builder: ResponsesBuilder) -> dict[str, Any]:
    """An Anthropic message as a Response."""
    for block in body.get("content") or []:
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text" and isinstance(block.get("text"), str):
            builder.text(block["text"])
        elif kind == "thinking":
            builder.reasoning(str(block.get("thinking") or ""))
            builder.seal_reasoning(SIGNATURE_MARK + str(block.get("signature") or ""))
            builder.close()
        elif kind == "redacted_thinking":
            builder.seal_reasoning(REDACTED_MARK + str(block.get("data") or ""))
            builder.close()
        elif kind == "tool_use":
            builder.tool_call(block.get("id"), str(block.get("name") or ""))
            builder.arguments(compact(block.get("input") or {}))
            builder.close()
    raw_usage = body.get("usage")
    usage = usage_from_anthropic(raw_usage) if isinstance(raw_usage, Mapping) else None
    incomplete = _ANTHROPIC_INCOMPLETE.get(body.get("stop_reason") or "")
    builder.finish(incomplete=incomplete, usage=usage)
    return builder.response()
