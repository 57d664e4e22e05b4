"""One upstream stream to one client stream, sans I/O: upstream bytes in, client bytes out.

There is one class per *upstream* format (``upstream/openai`` and ``upstream/anthropic``
choose theirs, and the OpenAI adapter ``ResponsesStream`` for an upstream with the Responses
API); each knows how to relay its events to a client that speaks the same format and how to
translate them for one that speaks another (a Responses client's stream is built by a
``ResponsesBuilder`` that the adapter hands in).

While bytes pass, the stream is metered: completion text is counted as it arrives, the
provider's usage is kept when it comes, and the end of the stream is recognised, so the
caller knows whether the stream completed and what it cost even if it is cut short.

When client and upstream speak the same format the upstream's event bytes are forwarded as
they are; only the proxy's own usage request is taken back out.

A read that holds good events and then a bad one yields the good events' bytes; the error
waits in ``failure`` for the caller to raise once those bytes are delivered.

Counting follows delivery: the text of what ``feed`` returned is counted only when the
caller ``commit()``s it, after writing it to the client, so a write that fails (the client
left) is not counted. Recorded completion tokens are the tokens the client was sent.

When the client asked for usage and the upstream sent none, the end of the stream is held
back (``awaiting_usage``); the caller then passes the proxy's own counts to ``usage_tail``,
which writes the usage the client asked for and the end marker.
"""

from __future__ import annotations

import abc
from typing import Any, Protocol

import orjson

from nitroproxy.core import anthropic_wire, openai_wire, responses_wire, sse
from nitroproxy.core.anthropic_stream import ChatToMessagesStream, MessagesToChatStream
from nitroproxy.core.error_shapes import stream_error_event
from nitroproxy.core.errors import ProxyError, UpstreamError
from nitroproxy.core.responses_output import Event, ResponsesBuilder
from nitroproxy.core.responses_stream import ChatToResponsesStream, MessagesToResponsesStream
from nitroproxy.core.types import ApiFormat, Usage


class Counter(Protocol):
    def feed(self, text: str) -> None: ...


class TextLog:
    """The ``Counter`` streams use: the delivered text, kept until someone needs its tokens.

    A completed stream whose provider reported usage never needs them, so nothing is
    encoded on the way (no tokenizer loaded, no CPU per chunk); a stream cut short, or one
    whose upstream sent no usage, is counted once at its end, exactly, from this text. The
    text is at most what the model wrote, so memory stays within its output limit."""

    __slots__ = ("_parts", "chars")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self.chars = 0

    def feed(self, text: str) -> None:
        self._parts.append(text)
        self.chars += len(text)

    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""


class MalformedStream(UpstreamError):
    default_code = "malformed_upstream_stream"


# A delta with only these keys holds no text but ``content`` (the fast path of _meter_chunk).
_PLAIN_DELTA = frozenset({"content", "role"})

# OpenAI adds ``"usage":null`` to every chunk once include_usage is on; a client that did not
# ask for usage never saw it, so it is taken out again (compact JSON, as OpenAI sends it).
_USAGE_NULL = b',"usage":null'


class UpstreamStream(abc.ABC):
    """What both upstream formats share: the SSE decoder, the meter and the end marker."""

    __slots__ = (
        "_counter",
        "_decoder",
        "_pending",
        "awaiting_usage",
        "completed",
        "failure",
        "finish_reason",
        "output_started",
        "same_format",
        "usage",
    )

    def __init__(self, *, same_format: bool, counter: Counter | None) -> None:
        self.same_format = same_format
        self._counter = counter
        self._decoder = sse.SSEDecoder()
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.completed = False
        self.output_started = False
        self.failure: ProxyError | None = None
        self.awaiting_usage = False
        self._pending: list[str] = []

    def feed(self, data: bytes) -> bytes:
        """Bytes for the client from one upstream read (possibly empty). An event that is not
        this format's stops the stream: ``failure`` holds the error, later reads add nothing."""
        return self._dispatch(self._decoder.feed(data))

    def end(self) -> bytes:
        """The upstream closed: dispatch a final unterminated event, if any."""
        return self._dispatch(self._decoder.flush())

    @property
    def counting(self) -> bool:
        return self._counter is not None

    @property
    def counter(self) -> Counter | None:
        return self._counter

    def commit(self) -> None:
        """The bytes of the last ``feed`` reached the client: count their text."""
        counter = self._counter
        if counter is not None and self._pending:
            for text in self._pending:
                counter.feed(text)
        self._pending.clear()

    def usage_tail(self, usage: Usage) -> bytes:
        """With ``awaiting_usage``: the usage the client asked for, then the end marker."""
        self.awaiting_usage = False
        return self._usage_tail(usage)

    def _usage_tail(self, usage: Usage) -> bytes:
        return b""

    def error_event(self, error: ProxyError, family: ApiFormat) -> bytes:
        """The in-band event that ends the client's stream with ``error`` (the status line
        is gone). A Responses stream ends with its own ``response.failed``."""
        return stream_error_event(error, family)

    def _dispatch(self, events: list[sse.Event]) -> bytes:
        if self.failure is not None:
            return b""
        out: list[bytes] = []
        try:
            for event in events:
                if event.data is None:
                    if self.same_format:
                        out.append(event.raw)  # comments and keep-alives pass through
                elif not self.completed:  # nothing after the end marker is meaningful
                    self._data(event, out)
        except ProxyError as exc:
            self.failure = exc
        return out[0] if len(out) == 1 else b"".join(out)

    @abc.abstractmethod
    def _data(self, event: sse.Event, out: list[bytes]) -> None:
        """Relay or translate one data event, metering it."""

    def _meter_text(self, text: str) -> None:
        self.output_started = True
        if self._counter is not None:
            self._pending.append(text)


class OpenAIStream(UpstreamStream):
    """An OpenAI chat/completions stream, relayed to an OpenAI client or translated to an
    Anthropic Messages stream."""

    __slots__ = ("_anthropic_out", "_envelope", "_responses_out", "_strip_usage", "_wants_usage")

    def __init__(
        self,
        *,
        client: ApiFormat,
        counter: Counter | None,
        strip_usage: bool = False,
        model: str = "",
        message_id: str = "",
        prompt_tokens: int = 0,
        wants_usage: bool = False,
        responses: ResponsesBuilder | None = None,
    ) -> None:
        super().__init__(
            same_format=client is ApiFormat.OPENAI and responses is None, counter=counter
        )
        self._strip_usage = strip_usage
        # Anthropic and Responses clients always get usage (message_delta carries the
        # output count; response.completed the totals).
        always = client is ApiFormat.ANTHROPIC or responses is not None
        self._wants_usage = (wants_usage or always) and counter is not None
        self._envelope: dict[str, Any] = {}
        self._anthropic_out: ChatToMessagesStream | None = None
        self._responses_out = ChatToResponsesStream(responses) if responses is not None else None
        if client is ApiFormat.ANTHROPIC:
            self._anthropic_out = ChatToMessagesStream(
                model=model, message_id=message_id, prompt_tokens=prompt_tokens
            )

    def feed(self, data: bytes) -> bytes:
        """As ``UpstreamStream.feed``, with a fast path for what OpenAI-compatible servers
        send nearly always: whole ``data: {...}`` events, one line each, LF endings. Those
        are split and read without the general decoder; anything else takes it."""
        if (
            self.failure is None
            and not self.completed
            and not self._decoder.pending
            and data.endswith(b"\n\n")
            and b"\r" not in data
        ):
            blocks = data[:-2].split(b"\n\n")
            if all(b.startswith(b"data: ") and b"\n" not in b for b in blocks):
                out: list[bytes] = []
                whole = len(blocks) == 1
                try:
                    for block in blocks:
                        if not self.completed:
                            self._payload(block[6:], data if whole else block + b"\n\n", out)
                except ProxyError as exc:
                    self.failure = exc
                return out[0] if len(out) == 1 else b"".join(out)
        return super().feed(data)

    def _data(self, event: sse.Event, out: list[bytes]) -> None:
        data = event.data
        assert data is not None
        self._payload(data, event.raw, out)

    def _payload(self, data: bytes, raw: bytes, out: list[bytes]) -> None:
        if data == b"[DONE]":
            self.completed = True
            if self.usage is None and self._wants_usage:
                self.awaiting_usage = True  # the caller counts, then asks for usage_tail()
            elif self._anthropic_out is not None:
                out.extend(_encode_named(self._anthropic_out.finish()))
            elif self._responses_out is not None:
                out.extend(_encode_named(self._responses_out.finish()))
            else:
                out.append(raw)
            return
        chunk = _loads(data)
        if not self._envelope:
            self._envelope = {
                k: chunk[k] for k in ("id", "object", "created", "model") if k in chunk
            }
        if "error" in chunk:
            _, message, _, _ = openai_wire.parse_error(chunk)
            raise UpstreamError(message or "upstream stream error", code="upstream_stream_error")
        usage_only = False
        raw_usage = chunk.get("usage")
        if raw_usage is not None:
            self.usage = openai_wire.usage_from(raw_usage)
            usage_only = not chunk.get("choices")
        self._meter_chunk(chunk)
        if self._anthropic_out is not None:
            out.extend(_encode_named(self._anthropic_out.feed(chunk)))
        elif self._responses_out is not None:
            out.extend(_encode_named(self._responses_out.feed(chunk)))
        elif self._strip_usage:
            if not usage_only:
                out.append(raw.replace(_USAGE_NULL, b"", 1))
        else:
            out.append(raw)

    def _meter_chunk(self, chunk: dict[str, Any]) -> None:
        """Count a chunk's text and keep its finish reason. Nearly every chunk is one choice
        whose delta holds text (or nothing): read that shape directly; anything else goes
        through the general walk (tool calls, refusals, several choices, legacy text)."""
        choices = chunk.get("choices")
        if type(choices) is list and len(choices) == 1:
            choice = choices[0]
            if type(choice) is dict:
                delta = choice.get("delta")
                if type(delta) is dict and delta.keys() <= _PLAIN_DELTA and "text" not in choice:
                    text = delta.get("content")
                    if type(text) is str and text:
                        self._meter_text(text)
                    reason = choice.get("finish_reason")
                    if type(reason) is str:
                        self.finish_reason = reason
                    return
        for text in openai_wire.chunk_texts(chunk):
            if text:
                self._meter_text(text)
        reason = openai_wire.finish_reason(chunk)
        if reason is not None:
            self.finish_reason = reason

    def _usage_tail(self, usage: Usage) -> bytes:
        if self._anthropic_out is not None:
            return b"".join(_encode_named(self._anthropic_out.finish(usage=usage)))
        if self._responses_out is not None:
            return b"".join(_encode_named(self._responses_out.finish(usage=usage)))
        # OpenAI's own usage chunk: no choices, the totals, after the finish_reason chunk.
        chunk = {**self._envelope, "choices": [], "usage": anthropic_wire.usage_to_openai(usage)}
        return sse.encode(orjson.dumps(chunk)) + sse.DONE

    def error_event(self, error: ProxyError, family: ApiFormat) -> bytes:
        if self._responses_out is None:
            return super().error_event(error, family)
        events = self._responses_out.builder.fail(error.status, error.message)
        return b"".join(_encode_named(events))


class AnthropicStream(UpstreamStream):
    """An Anthropic Messages stream, relayed to an Anthropic client or translated to an
    OpenAI chat completions stream."""

    __slots__ = ("_openai_out", "_responses_out")

    def __init__(
        self,
        *,
        client: ApiFormat,
        counter: Counter | None,
        model: str = "",
        created: int = 0,
        include_usage: bool = False,
        responses: ResponsesBuilder | None = None,
    ) -> None:
        super().__init__(same_format=client is ApiFormat.ANTHROPIC, counter=counter)
        self._openai_out: MessagesToChatStream | None = None
        self._responses_out = (
            MessagesToResponsesStream(responses) if responses is not None else None
        )
        if client is ApiFormat.OPENAI and responses is None:
            self._openai_out = MessagesToChatStream(
                model=model, created=created, include_usage=include_usage
            )

    def _data(self, event: sse.Event, out: list[bytes]) -> None:
        data = event.data
        assert data is not None
        payload = _loads(data)
        kind = event.event or payload.get("type")
        if kind == "error":
            _, message = anthropic_wire.parse_anthropic_error(payload)
            raise UpstreamError(message or "upstream stream error", code="upstream_stream_error")
        self._meter(kind, payload)
        if self._openai_out is not None:
            for chunk in self._openai_out.feed(kind, payload):
                out.append(sse.encode(orjson.dumps(chunk)))
            if kind == "message_stop":
                out.append(sse.DONE)
        elif self._responses_out is not None:
            out.extend(_encode_named(self._responses_out.feed(kind, payload)))
        else:
            out.append(event.raw)
        if kind == "message_stop":
            self.completed = True

    def error_event(self, error: ProxyError, family: ApiFormat) -> bytes:
        if self._responses_out is None:
            return super().error_event(error, family)
        events = self._responses_out.builder.fail(error.status, error.message)
        return b"".join(_encode_named(events))

    def _meter(self, kind: str | None, payload: dict[str, Any]) -> None:
        if kind == "content_block_delta":
            delta = payload.get("delta") or {}
            text = delta.get("text") or delta.get("partial_json") or delta.get("thinking")
            if isinstance(text, str) and text:
                self._meter_text(text)
        elif kind == "content_block_start":
            block = payload.get("content_block") or {}
            if block.get("type") == "tool_use":
                self.output_started = True
                if isinstance(block.get("name"), str):
                    self._meter_text(block["name"])
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


class ResponsesStream(UpstreamStream):
    """A Responses API stream from an upstream that speaks it, relayed to a Responses client
    as it came. Text deltas are counted as they pass; the usage is ``response.completed``'s
    (or ``response.incomplete``'s). An upstream ``response.failed`` or ``error`` event is not
    relayed: it becomes the stream's failure, so the client gets one ``response.failed``,
    written by ``error_event`` with the upstream's message and the next sequence number."""

    __slots__ = ("_next_seq", "_snapshot")

    def __init__(self, *, counter: Counter | None) -> None:
        super().__init__(same_format=True, counter=counter)
        self._snapshot: dict[str, Any] = {}
        self._next_seq = 0

    def _data(self, event: sse.Event, out: list[bytes]) -> None:
        data = event.data
        assert data is not None
        if data == b"[DONE]":
            return  # not part of the Responses API, but some servers add it
        payload = _loads(data)
        kind = payload.get("type", event.event)
        if isinstance(payload.get("sequence_number"), int):
            self._next_seq = payload["sequence_number"] + 1
        if isinstance(payload.get("response"), dict):
            self._snapshot = payload["response"]
        if kind in ("response.failed", "error"):
            error = self._snapshot.get("error") if kind == "response.failed" else payload
            message = error.get("message") if isinstance(error, dict) else None
            raise UpstreamError(
                str(message or "upstream reported an error mid-stream"),
                code="upstream_stream_error",
            )
        text = responses_wire.event_text(payload)
        if text:
            self._meter_text(text)
        if kind in responses_wire.TERMINAL_EVENTS:
            self.usage = responses_wire.usage_from_responses(self._snapshot.get("usage"))
            if kind == "response.incomplete":
                self.finish_reason = "incomplete"
            self.completed = True
        out.append(event.raw)

    def error_event(self, error: ProxyError, family: ApiFormat) -> bytes:
        response = {
            **self._snapshot,
            "status": "failed",
            "error": responses_wire.failure_error(error.status, error.message),
        }
        data = {"type": "response.failed", "response": response, "sequence_number": self._next_seq}
        return sse.encode(orjson.dumps(data), "response.failed")


def _loads(data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise MalformedStream("the upstream sent a malformed stream event") from None
    if not isinstance(value, dict):
        raise MalformedStream("the upstream sent a stream event that is not an object")
    return value


def _encode_named(events: list[Event]) -> list[bytes]:
    """Events with an ``event:`` line (Anthropic's and the Responses API's)."""
    return [sse.encode(orjson.dumps(data), name) for name, data in events]
