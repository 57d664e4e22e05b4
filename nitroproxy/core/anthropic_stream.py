"""Stream translation between Anthropic Messages events and OpenAI chat.completion.chunks.

Both directions are small state machines: ``feed`` returns what to send to the client now,
so nothing is held back until the end of the stream.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from nitroproxy.core import openai_wire
from nitroproxy.core.anthropic_wire import (
    finish_reason_from_stop_reason,
    parse_anthropic_error,
    stop_reason_from_finish_reason,
    usage_from_anthropic,
    usage_to_anthropic,
    usage_to_openai,
)
from nitroproxy.core.errors import UpstreamStatusError
from nitroproxy.core.types import Usage

Event = tuple[str, dict[str, Any]]

_STATUS_BY_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def stream_error(data: Mapping[str, Any]) -> UpstreamStatusError:
    """An Anthropic ``error`` event as the error it stands for (the HTTP status it would have
    had before the stream started, e.g. 529 for overloaded_error)."""
    error_type, message = parse_anthropic_error(data)
    return UpstreamStatusError(
        _STATUS_BY_ERROR_TYPE.get(error_type or "", 500),
        message or "upstream reported an error mid-stream",
        body=json.dumps(dict(data)).encode(),
        body_format="anthropic",
        error_type=error_type,
    )


def openai_stream_error(data: Mapping[str, Any]) -> UpstreamStatusError:
    error_type, message, code, param = openai_wire.parse_error(data)
    return UpstreamStatusError(
        # The real status is lost once a stream has started; 500 reads as a server fault.
        500,
        message or "upstream reported an error mid-stream",
        body=json.dumps(dict(data)).encode(),
        body_format="openai",
        error_type=error_type,
        code=code,
        param=param,
    )


class MessagesToChatStream:
    """Anthropic stream events -> OpenAI chat.completion.chunk dicts.

    An ``error`` event raises UpstreamStatusError (see ``stream_error``); the caller turns it
    into an in-band error, since the HTTP status has already been sent.
    """

    def __init__(self, *, model: str, created: int, include_usage: bool) -> None:
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._id = "chatcmpl-"
        self._usage: dict[str, Any] = {}
        self._finish_reason: str | None = None
        self._done = False
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool index

    @property
    def usage(self) -> Usage:
        return usage_from_anthropic(self._usage)

    @property
    def finish_reason(self) -> str | None:
        return self._finish_reason

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: str | None, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        match data.get("type", event):
            case "message_start":
                message = data.get("message") or {}
                self._id = f"chatcmpl-{message.get('id', '')}"
                self._usage = dict(message.get("usage") or {})
                return [self._chunk({"role": "assistant", "content": ""})]
            case "content_block_start":
                return self._block_start(data.get("index"), data.get("content_block") or {})
            case "content_block_delta":
                return self._block_delta(data.get("index"), data.get("delta") or {})
            case "message_delta":
                # Anthropic's message_delta usage is cumulative; fields it omits keep the
                # message_start value.
                usage = data.get("usage") or {}
                self._usage.update({k: v for k, v in usage.items() if v is not None})
                stop_reason = (data.get("delta") or {}).get("stop_reason")
                self._finish_reason = finish_reason_from_stop_reason(stop_reason)
                return [self._chunk({}, self._finish_reason)]
            case "message_stop":
                self._done = True
                if not self._include_usage:
                    return []
                return [self._envelope([], usage_to_openai(self.usage))]
            case "error":
                raise stream_error(data)
            case _:
                # ping, content_block_stop and event types added later say nothing to an
                # OpenAI client (Anthropic asks clients to ignore unknown events).
                return []

    def _block_start(self, index: Any, block: Mapping[str, Any]) -> list[dict[str, Any]]:
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if block.get("type") != "tool_use" or not isinstance(index, int):
            return []  # thinking and server tool blocks have no OpenAI form
        tool_index = self._tool_index[index] = len(self._tool_index)
        function = {"name": block.get("name"), "arguments": ""}
        call = {
            "index": tool_index,
            "id": block.get("id"),
            "type": "function",
            "function": function,
        }
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, index: Any, delta: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if kind == "input_json_delta" and delta.get("partial_json") and index in self._tool_index:
            function = {"arguments": delta["partial_json"]}
            return [
                self._chunk(
                    {"tool_calls": [{"index": self._tool_index[index], "function": function}]}
                )
            ]
        return []

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {
            "index": 0,
            "delta": delta,
            "finish_reason": finish_reason,
            "logprobs": None,
        }
        # With include_usage, OpenAI sends "usage": null on every chunk but the last.
        return self._envelope([choice], None)

    def _envelope(self, choices: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
        chunk = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if self._include_usage:
            chunk["usage"] = usage
        return chunk


class ChatToMessagesStream:
    """OpenAI chat chunks -> Anthropic (event name, data) pairs.

    Only choice 0 is read (Anthropic has one). Tool call deltas are expected one call at a
    time, as OpenAI sends them; a delta with a new index or a new id starts a new block.
    """

    def __init__(self, *, model: str, message_id: str, prompt_tokens: int) -> None:
        self._model = model
        self._message_id = message_id
        # OpenAI reports usage only at the end; until then the caller's estimate stands.
        self._usage = Usage(prompt_tokens=prompt_tokens)
        self._started = False
        self._finished = False
        self._blocks = 0  # content blocks started so far; the open one is _blocks - 1
        self._open: str | None = None  # "text" or "tool_use"
        self._tool_key: tuple[Any, Any] = (
            None,
            None,
        )  # (index, id) of the open tool call
        self._saw_tool_use = False
        self._finish_reason: str | None = None

    @property
    def usage(self) -> Usage:
        return self._usage

    def feed(self, chunk: Mapping[str, Any]) -> list[Event]:
        """Events for one chunk. A ``{"error": ...}`` object, which OpenAI-compatible servers
        send mid-stream instead of a chunk, raises UpstreamStatusError."""
        if chunk.get("error") is not None:
            raise openai_stream_error(chunk)
        events = self._start()
        if isinstance(chunk.get("usage"), Mapping):
            self._usage = openai_wire.usage_from(chunk["usage"]) or Usage()
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            for text in (delta.get("content"), delta.get("refusal")):
                if isinstance(text, str) and text:
                    events += self._text(text)
            for call in delta.get("tool_calls") or []:
                events += self._tool_call(call)
            self._finish_reason = choice.get("finish_reason") or self._finish_reason
        return events

    def finish(self, *, usage: Usage | None = None) -> list[Event]:
        """The closing events, once the upstream has sent [DONE]. ``usage`` replaces what the
        upstream reported, e.g. a local count when it reported none."""
        if self._finished:
            return []
        self._finished = True
        self._usage = usage if usage is not None else self._usage
        events = self._start() + self._close()
        stop_reason = stop_reason_from_finish_reason(
            self._finish_reason, has_tool_use=self._saw_tool_use
        )
        # Cumulative input and cache counts go here too: message_start only had an estimate,
        # and the SDK lets message_delta values replace it.
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        usage_out = usage_to_anthropic(self._usage)
        events.append(
            (
                "message_delta",
                {"type": "message_delta", "delta": delta, "usage": usage_out},
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def _start(self) -> list[Event]:
        if self._started:
            return []
        self._started = True
        message: dict[str, Any] = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_to_anthropic(Usage(prompt_tokens=self._usage.prompt_tokens)),
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _open_block(self, kind: str, block: dict[str, Any]) -> list[Event]:
        events = self._close()
        self._open = kind
        self._blocks += 1
        data = {
            "type": "content_block_start",
            "index": self._blocks - 1,
            "content_block": block,
        }
        return [*events, ("content_block_start", data)]

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        self._open = None
        return [
            (
                "content_block_stop",
                {"type": "content_block_stop", "index": self._blocks - 1},
            )
        ]

    def _delta(self, delta: dict[str, Any]) -> Event:
        data = {
            "type": "content_block_delta",
            "index": self._blocks - 1,
            "delta": delta,
        }
        return ("content_block_delta", data)

    def _text(self, text: str) -> list[Event]:
        events = (
            [] if self._open == "text" else self._open_block("text", {"type": "text", "text": ""})
        )
        return [*events, self._delta({"type": "text_delta", "text": text})]

    def _tool_call(self, call: Mapping[str, Any]) -> list[Event]:
        index, call_id = call.get("index"), call.get("id")
        function = call.get("function") or {}
        events: list[Event] = []
        same_index = index is None or index == self._tool_key[0]
        same_id = not call_id or call_id == self._tool_key[1]
        if self._open != "tool_use" or not (same_index and same_id):
            self._tool_key = (index, call_id)
            self._saw_tool_use = True
            block: dict[str, Any] = {
                "type": "tool_use",
                # Some OpenAI-compatible servers omit ids; Anthropic clients need one.
                "id": call_id or f"toolu_{self._message_id}_{self._blocks}",
                "name": function.get("name") or "",
                "input": {},
            }
            events = self._open_block("tool_use", block)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            events.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        return events
