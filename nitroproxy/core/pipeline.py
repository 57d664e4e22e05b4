"""One upstream stream to one client stream, sans I/O: upstream bytes in, client bytes out.

While bytes pass, it meters them: completion text is counted as it arrives, the
provider's usage is kept when it comes, and the end of the stream is recognized, so the
caller knows whether the stream completed and what it cost even if it is cut short.

When client and upstream speak the same format the upstream's event bytes are forwarded
as they are; only the proxy's own usage request is taken back out.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from nitroproxy.core import anthropic_wire, openai_wire, sse
from nitroproxy.core.anthropic_stream import ChatToMessagesStream, MessagesToChatStream
from nitroproxy.core.errors import UpstreamError
from nitroproxy.core.types import ApiFormat, Usage


class Counter(Protocol):
    def feed(self, text: str) -> None: ...

    @property
    def total(self) -> int: ...


class MalformedStream(UpstreamError):
    default_code = "malformed_upstream_stream"


# OpenAI adds ``"usage":null`` to every chunk once include_usage is on; a client that did not
# ask for usage never saw it, so it is taken out again (compact JSON, as OpenAI sends it).
_USAGE_NULL = b',"usage":null'


class StreamPipeline:
    __slots__ = (
        "_anthropic_out",
        "_client",
        "_counter",
        "_decoder",
        "_openai_out",
        "_strip_usage",
        "_upstream",
        "completed",
        "finish_reason",
        "output_started",
        "usage",
    )

    def __init__(
        self,
        *,
        upstream: ApiFormat,
        client: ApiFormat,
        counter: Counter | None,
        strip_usage: bool = False,
        model: str = "",
        created: int = 0,
        message_id: str = "",
        prompt_tokens: int = 0,
        include_usage: bool = False,
    ) -> None:
        self._upstream = upstream
        self._client = client
        self._counter = counter
        self._strip_usage = strip_usage
        self._decoder = sse.SSEDecoder()
        self._openai_out: MessagesToChatStream | None = None
        self._anthropic_out: ChatToMessagesStream | None = None
        if upstream is ApiFormat.ANTHROPIC and client is ApiFormat.OPENAI:
            self._openai_out = MessagesToChatStream(
                model=model, created=created, include_usage=include_usage
            )
        elif upstream is ApiFormat.OPENAI and client is ApiFormat.ANTHROPIC:
            self._anthropic_out = ChatToMessagesStream(
                model=model, message_id=message_id, prompt_tokens=prompt_tokens
            )
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.completed = False
        self.output_started = False

    def feed(self, data: bytes) -> bytes:
        """Bytes for the client from one upstream read (possibly empty). Raises
        ``MalformedStream`` when the upstream sends something that is not its format."""
        out: list[bytes] = []
        for event in self._decoder.feed(data):
            self._event(event, out)
        return b"".join(out)

    def end(self) -> bytes:
        """The upstream closed: dispatch a final unterminated event, if any."""
        out: list[bytes] = []
        for event in self._decoder.flush():
            self._event(event, out)
        return b"".join(out)

    @property
    def counted_completion_tokens(self) -> int:
        return self._counter.total if self._counter is not None else 0

    def _event(self, event: sse.Event, out: list[bytes]) -> None:
        if event.data is None:
            if self._upstream is self._client:
                out.append(event.raw)  # comments and keep-alives pass through
            return
        if self.completed:
            return  # nothing after the end marker is meaningful
        if self._upstream is ApiFormat.OPENAI:
            self._openai_event(event, out)
        else:
            self._anthropic_event(event, out)

    def _openai_event(self, event: sse.Event, out: list[bytes]) -> None:
        data = event.data
        assert data is not None
        if data == b"[DONE]":
            self.completed = True
            if self._anthropic_out is not None:
                out.extend(_encode_anthropic(self._anthropic_out.finish()))
            else:
                out.append(event.raw)
            return
        chunk = _loads(data)
        if "error" in chunk:
            raise UpstreamError(_error_message(chunk), code="upstream_stream_error")
        usage_only = False
        raw_usage = chunk.get("usage")
        if raw_usage is not None:
            self.usage = openai_wire.usage_from(raw_usage)
            choices = chunk.get("choices")
            usage_only = not choices
        self._meter_openai(chunk)
        if self._anthropic_out is not None:
            out.extend(_encode_anthropic(self._anthropic_out.feed(chunk)))
        elif self._strip_usage:
            if not usage_only:
                out.append(event.raw.replace(_USAGE_NULL, b"", 1))
        else:
            out.append(event.raw)

    def _meter_openai(self, chunk: dict[str, Any]) -> None:
        for text in openai_wire.chunk_texts(chunk):
            if text:
                self.output_started = True
                if self._counter is not None:
                    self._counter.feed(text)
        reason = openai_wire.finish_reason(chunk)
        if reason is not None:
            self.finish_reason = reason

    def _anthropic_event(self, event: sse.Event, out: list[bytes]) -> None:
        data = event.data
        assert data is not None
        payload = _loads(data)
        kind = event.event or payload.get("type")
        if kind == "error":
            _, message = anthropic_wire.parse_anthropic_error(payload)
            raise UpstreamError(message or "upstream stream error", code="upstream_stream_error")
        self._meter_anthropic(kind, payload)
        if self._openai_out is not None:
            for chunk in self._openai_out.feed(kind, payload):
                out.append(sse.encode(orjson.dumps(chunk)))
            if kind == "message_stop":
                out.append(sse.DONE)
        else:
            out.append(event.raw)
        if kind == "message_stop":
            self.completed = True

    def _meter_anthropic(self, kind: str | None, payload: dict[str, Any]) -> None:
        if kind == "content_block_delta":
            delta = payload.get("delta") or {}
            text = delta.get("text") or delta.get("partial_json") or delta.get("thinking")
            if isinstance(text, str) and text:
                self.output_started = True
                if self._counter is not None:
                    self._counter.feed(text)
        elif kind == "content_block_start":
            block = payload.get("content_block") or {}
            if block.get("type") == "tool_use":
                self.output_started = True
                if self._counter is not None and isinstance(block.get("name"), str):
                    self._counter.feed(block["name"])
        elif kind == "message_start":
            message = payload.get("message") or {}
            if isinstance(message.get("usage"), dict):
                self.usage = anthropic_wire.usage_from_anthropic(message["usage"])
        elif kind == "message_delta":
            delta = payload.get("delta") or {}
            if isinstance(delta.get("stop_reason"), str):
                self.finish_reason = delta["stop_reason"]
            usage = payload.get("usage")
            if isinstance(usage, dict) and isinstance(usage.get("output_tokens"), int):
                # Anthropic reports the cumulative output count here, not in message_stop.
                base = self.usage or Usage()
                base.completion_tokens = usage["output_tokens"]
                self.usage = base


def _loads(data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise MalformedStream("the upstream sent a malformed stream event") from None
    if not isinstance(value, dict):
        raise MalformedStream("the upstream sent a stream event that is not an object")
    return value


def _error_message(chunk: dict[str, Any]) -> str:
    _, message, _, _ = openai_wire.parse_error(chunk)
    return message or "upstream stream error"


def _encode_anthropic(events: list[tuple[str, dict[str, Any]]]) -> list[bytes]:
    return [sse.encode(orjson.dumps(data), name) for name, data in events]
