"""Chat and Anthropic answers as Responses API answers: the event order, the final response
and its usage, checked with the official SDK's event types and its stream accumulator."""

from typing import Any

import orjson
import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from nitroproxy.core import sse
from nitroproxy.core.errors import UpstreamError, UpstreamStatusError
from nitroproxy.core.pipeline import AnthropicStream, OpenAIStream, ResponsesStream
from nitroproxy.core.responses_output import Event, ResponsesBuilder
from nitroproxy.core.responses_request import SIGNATURE_MARK
from nitroproxy.core.responses_stream import (
    ChatToResponsesStream,
    MessagesToResponsesStream,
    chat_to_response,
    message_to_response,
)
from nitroproxy.core.responses_tools import tool_names
from nitroproxy.core.types import ApiFormat, Usage

EVENT = TypeAdapter(ResponseStreamEvent)
TOOLS = [
    {"type": "function", "name": "lookup", "parameters": {"type": "object"}},
    {"type": "custom", "name": "apply_patch"},
    {
        "type": "namespace",
        "name": "agents",
        "description": "d",
        "tools": [{"type": "function", "name": "spawn", "parameters": {}}],
    },
]
REQUEST = {"model": "gpt-test", "input": "hi", "tools": TOOLS, "instructions": "Be brief."}

TEXT_EVENTS = [
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]
CALL_EVENTS = [
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
]


def builder(stem: str = "r1") -> ResponsesBuilder:
    return ResponsesBuilder(
        REQUEST, stem=stem, created_at=1700000000, model="up-model", names=tool_names(REQUEST)
    )


def accumulate(events: list[Event]) -> Response:
    """Every event through the SDK's types and its stream state; the final response."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=TOOLS, text_format=omit)
    for i, (name, data) in enumerate(events):
        assert data["type"] == name and data["sequence_number"] == i
        state.handle_event(EVENT.validate_python(data))
    final = Response.model_validate(events[-1][1]["response"])
    assert final.status in ("completed", "incomplete", "failed")
    return final


def chat_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


CHAT_USAGE = {
    "prompt_tokens": 30,
    "completion_tokens": 12,
    "total_tokens": 42,
    "prompt_tokens_details": {"cached_tokens": 10},
    "completion_tokens_details": {"reasoning_tokens": 4},
}
CHAT_CHUNKS = [
    chat_chunk({"role": "assistant", "content": ""}),
    chat_chunk({"reasoning_content": "think"}),
    chat_chunk({"content": "Hel"}),
    chat_chunk({"content": "lo"}),
    chat_chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": ""},
                }
            ]
        }
    ),
    chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"q":'}}]}),
    chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
    chat_chunk({}, "tool_calls"),
    {"id": "c", "choices": [], "usage": CHAT_USAGE},
]
CHAT_BODY = {
    "id": "c",
    "object": "chat.completion",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "reasoning_content": "think",
                "content": "Hello",
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q":1}'},
                    }
                ],
            },
        }
    ],
    "usage": CHAT_USAGE,
}


def test_chat_stream_gives_the_full_event_order_and_exact_usage() -> None:
    stream = ChatToResponsesStream(builder())
    events = [e for chunk in CHAT_CHUNKS for e in stream.feed(chunk)] + stream.finish()
    reasoning = [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
    ]
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        *reasoning,
        *TEXT_EVENTS,
        *CALL_EVENTS,
        "response.completed",
    ]
    final = accumulate(events)
    assert final.output_text == "Hello"
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (
        30,
        12,
        42,
    )
    assert final.usage.input_tokens_details.cached_tokens == 10
    assert final.usage.output_tokens_details.reasoning_tokens == 4
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call"]
    call = final.output[2]
    assert call.type == "function_call" and (call.call_id, call.name, call.arguments) == (
        "call_a",
        "lookup",
        '{"q":1}',
    )
    # The created event has no usage yet and an empty output.
    created = events[0][1]["response"]
    assert (
        created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    )


def test_chat_stream_and_non_stream_build_the_same_response() -> None:
    stream = ChatToResponsesStream(builder())
    events = [e for chunk in CHAT_CHUNKS for e in stream.feed(chunk)] + stream.finish()
    assert events[-1][1]["response"] == chat_to_response(CHAT_BODY, builder())


def test_custom_and_namespaced_calls_come_back_as_the_client_declared_them() -> None:
    stream = ChatToResponsesStream(builder())
    chunks = [
        chat_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "c1",
                        "function": {"name": "apply_patch", "arguments": '{"input": "*** Begin'},
                    }
                ]
            }
        ),
        chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' Patch"}'}}]}),
        chat_chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "c2",
                        "function": {"name": "agents__spawn", "arguments": "{}"},
                    }
                ]
            }
        ),
        chat_chunk({}, "tool_calls"),
    ]
    events = [e for chunk in chunks for e in stream.feed(chunk)] + stream.finish(usage=Usage(5, 3))
    names = [name for name, _ in events]
    assert names[2:7] == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.output_item.added",
    ]
    final = accumulate(events)
    custom, spawn = final.output
    assert (
        custom.type == "custom_tool_call"
        and custom.input == "*** Begin Patch"
        and custom.name == "apply_patch"
    )
    assert spawn.type == "function_call" and spawn.name == "spawn" and spawn.namespace == "agents"
    assert final.usage is not None and final.usage.input_tokens == 5  # the stand-in usage


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_a_cut_answer_is_an_incomplete_response(finish: str, reason: str) -> None:
    stream = ChatToResponsesStream(builder())
    events = (
        stream.feed(chat_chunk({"content": "Hi"}))
        + stream.feed(chat_chunk({}, finish))
        + stream.finish()
    )
    assert events[-1][0] == "response.incomplete"
    final = accumulate(events)
    assert final.incomplete_details is not None and final.incomplete_details.reason == reason


def test_a_chat_error_mid_stream_raises_and_the_builder_ends_with_response_failed() -> None:
    stream = ChatToResponsesStream(builder())
    events = stream.feed(chat_chunk({"content": "Hi"}))
    with pytest.raises(UpstreamStatusError):
        stream.feed({"error": {"message": "overloaded", "type": "server_error"}})
    events += stream.builder.fail(529, "overloaded")
    final = accumulate(events)
    assert (
        final.status == "failed" and final.error is not None and final.error.message == "overloaded"
    )


# --- Anthropic ----------------------------------------------------------------------------


def anthropic_events() -> list[tuple[str, dict[str, Any]]]:
    def block(index: int, content_block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_start", {
            "type": "content_block_start",
            "index": index,
            "content_block": content_block,
        }

    def delta(index: int, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "content_block_delta", {
            "type": "content_block_delta",
            "index": index,
            "delta": payload,
        }

    def stop(index: int) -> tuple[str, dict[str, Any]]:
        return "content_block_stop", {"type": "content_block_stop", "index": index}

    usage = {
        "input_tokens": 7,
        "cache_read_input_tokens": 20,
        "cache_creation_input_tokens": 3,
        "output_tokens": 1,
    }
    return [
        ("message_start", {"type": "message_start", "message": {"id": "msg_1", "usage": usage}}),
        block(0, {"type": "thinking", "thinking": ""}),
        delta(0, {"type": "thinking_delta", "thinking": "plan"}),
        delta(0, {"type": "signature_delta", "signature": "c2ln"}),
        stop(0),
        ("ping", {"type": "ping"}),
        block(1, {"type": "text", "text": ""}),
        delta(1, {"type": "text_delta", "text": "Hel"}),
        delta(1, {"type": "text_delta", "text": "lo"}),
        stop(1),
        block(2, {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}),
        delta(2, {"type": "input_json_delta", "partial_json": '{"q":'}),
        delta(2, {"type": "input_json_delta", "partial_json": "1}"}),
        stop(2),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 25},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


ANTHROPIC_BODY = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "content": [
        {"type": "thinking", "thinking": "plan", "signature": "c2ln"},
        {"type": "text", "text": "Hello"},
        {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": 1}},
    ],
    "stop_reason": "tool_use",
    "usage": {
        "input_tokens": 7,
        "cache_read_input_tokens": 20,
        "cache_creation_input_tokens": 3,
        "output_tokens": 25,
    },
}


def test_anthropic_stream_gives_the_full_event_order_and_exact_usage() -> None:
    stream = MessagesToResponsesStream(builder())
    events = [e for name, data in anthropic_events() for e in stream.feed(name, data)]
    names = [name for name, _ in events]
    assert names[:2] == ["response.created", "response.in_progress"]
    assert names[-1] == "response.completed"
    assert names[8:15] == TEXT_EVENTS and names[15:20] == CALL_EVENTS
    final = accumulate(events)
    reasoning, message, call = final.output
    assert reasoning.type == "reasoning" and reasoning.encrypted_content == SIGNATURE_MARK + "c2ln"
    assert [s.text for s in reasoning.summary] == ["plan"]
    assert message.type == "message" and final.output_text == "Hello"
    assert (
        call.type == "function_call" and call.arguments == '{"q":1}' and call.call_id == "toolu_1"
    )
    # Anthropic's input_tokens leave out cache reads and writes; Responses' include them.
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (30, 25)
    assert final.usage.input_tokens_details.cached_tokens == 20
    assert final.usage.input_tokens_details.cache_write_tokens == 3


def test_anthropic_stream_and_non_stream_build_the_same_response() -> None:
    stream = MessagesToResponsesStream(builder())
    events = [e for name, data in anthropic_events() for e in stream.feed(name, data)]
    streamed = events[-1][1]["response"]
    whole = message_to_response(ANTHROPIC_BODY, builder())
    # The stream carries the arguments as the model wrote them, the body as parsed JSON.
    assert streamed["output"][:2] == whole["output"][:2]
    assert streamed["usage"] == whole["usage"] and streamed["status"] == whole["status"]


def test_redacted_thinking_and_max_tokens() -> None:
    body = {
        "content": [{"type": "redacted_thinking", "data": "ZW5j"}, {"type": "text", "text": "cut"}],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 1, "output_tokens": 2},
    }
    response = message_to_response(body, builder())
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["encrypted_content"].endswith("ZW5j")
    Response.model_validate(response)


# --- the pipeline: bytes in, client bytes out --------------------------------------------------


def sse_bytes(events: list[tuple[str | None, dict[str, Any]]]) -> bytes:
    return b"".join(sse.encode(orjson.dumps(data), name) for name, data in events)


def decode(raw: bytes) -> list[Event]:
    decoder = sse.SSEDecoder()
    out = []
    for event in decoder.feed(raw) + decoder.flush():
        assert event.data is not None
        data = orjson.loads(event.data)
        assert event.event == data["type"]
        out.append((event.event, data))
    return out


def test_chat_upstream_bytes_become_a_responses_stream_at_any_split() -> None:
    raw = sse_bytes([(None, c) for c in CHAT_CHUNKS]) + sse.DONE
    expected = None
    for cut in range(0, len(raw), 97):
        transform = OpenAIStream(client=ApiFormat.OPENAI, counter=None, responses=builder())
        out = transform.feed(raw[:cut]) + transform.feed(raw[cut:]) + transform.end()
        assert transform.completed and transform.usage is not None
        assert transform.usage.prompt_tokens == 30 and transform.usage.cached_tokens == 10
        expected = expected or out
        assert out == expected
    assert expected is not None
    assert accumulate(decode(expected)).output_text == "Hello"


def test_anthropic_upstream_bytes_become_a_responses_stream() -> None:
    transform = AnthropicStream(client=ApiFormat.OPENAI, counter=None, responses=builder())
    out = transform.feed(sse_bytes(anthropic_events())) + transform.end()
    assert transform.completed
    events = decode(out)
    assert accumulate(events).output_text == "Hello"
    failed = transform.error_event(UpstreamError("late", code="x"), ApiFormat.OPENAI)
    assert failed == b""  # the stream already ended: nothing more to say


def test_native_responses_stream_is_relayed_as_is_and_metered() -> None:
    stream = ChatToResponsesStream(builder())
    events = [e for chunk in CHAT_CHUNKS for e in stream.feed(chunk)] + stream.finish()
    raw = sse_bytes(list(events))
    transform = ResponsesStream(counter=None)
    out = transform.feed(raw[:50]) + transform.feed(raw[50:]) + transform.end()
    assert out == raw
    assert transform.completed and transform.usage == Usage(30, 12, 10, 0, 4)


def test_native_failure_becomes_one_response_failed_with_the_next_sequence_number() -> None:
    b = builder()
    events = b.start() + b.text("Hi")
    error = {"code": "server_error", "message": "boom"}
    failed = {"type": "response.failed", "sequence_number": 5}
    failed["response"] = {**b.response(), "status": "failed", "error": error}
    raw = sse_bytes([*events, ("response.failed", failed)])
    transform = ResponsesStream(counter=None)
    out = transform.feed(raw)
    assert out == sse_bytes(list(events))
    assert isinstance(transform.failure, UpstreamError) and transform.failure.message == "boom"
    ((name, data),) = decode(transform.error_event(transform.failure, ApiFormat.OPENAI))
    assert name == "response.failed" and data["sequence_number"] == 6
    assert data["response"]["error"]["message"] == "boom" and data["response"]["id"] == "resp_r1"
