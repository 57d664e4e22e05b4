import json
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk
from pydantic import TypeAdapter

from nitroproxy.core.anthropic_stream import ChatToMessagesStream, MessagesToChatStream
from nitroproxy.core.errors import UpstreamStatusError, status_of
from nitroproxy.core.types import Usage

# An Anthropic stream as the API sends it (shape from the streaming docs): text, then a
# tool_use block whose input arrives in several input_json_delta pieces.
RECORDED_ANTHROPIC_SSE = """\
event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5","stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":2048,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", let's check"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the weather."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"location\\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \\"San Francisc"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"o, CA\\", \\"unit\\": \\"fah"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"renheit\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"""  # noqa: E501


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


RECORDED_EVENTS = parse_sse(RECORDED_ANTHROPIC_SSE)
ID = "chatcmpl-msg_014p7gG3wDgGV9EUtLvnow3U"


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": ID,
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "my-model",
        "choices": [
            {
                "index": 0,
                "delta": delta,
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": None,
    }


def tool_delta(**fields: Any) -> dict[str, Any]:
    return {"tool_calls": [{"index": 0, **fields}]}


def test_anthropic_events_become_chunks_one_for_one() -> None:
    stream = MessagesToChatStream(model="my-model", created=1700000000, include_usage=True)
    emitted = [stream.feed(name, data) for name, data in RECORDED_EVENTS]
    assert emitted == [
        [chunk({"role": "assistant", "content": ""})],
        [],
        [],
        [chunk({"content": "Okay"})],
        [chunk({"content": ", let's check"})],
        [chunk({"content": " the weather."})],
        [],
        [
            chunk(
                tool_delta(
                    id="toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                    type="function",
                    function={"name": "get_weather", "arguments": ""},
                )
            )
        ],
        [],
        [chunk(tool_delta(function={"arguments": '{"location":'}))],
        [chunk(tool_delta(function={"arguments": ' "San Francisc'}))],
        [chunk(tool_delta(function={"arguments": 'o, CA", "unit": "fah'}))],
        [chunk(tool_delta(function={"arguments": 'renheit"}'}))],
        [],
        [chunk({}, "tool_calls")],
        [
            {
                "id": ID,
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": "my-model",
                "choices": [],
                "usage": {
                    "prompt_tokens": 2520,
                    "completion_tokens": 89,
                    "total_tokens": 2609,
                    "prompt_tokens_details": {"cached_tokens": 2048},
                    "completion_tokens_details": {"reasoning_tokens": 0},
                },
            }
        ],
    ]
    assert stream.done
    assert stream.finish_reason == "tool_calls"
    assert stream.usage == Usage(prompt_tokens=2520, completion_tokens=89, cached_tokens=2048)


def test_chunks_accumulate_in_the_openai_sdk() -> None:
    stream = MessagesToChatStream(model="my-model", created=1700000000, include_usage=True)
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for name, data in RECORDED_EVENTS:
        for out in stream.feed(name, data):
            state.handle_chunk(ChatCompletionChunk.model_validate(out))
    completion = state.get_final_completion()
    message = completion.choices[0].message
    assert message.content == "Okay, let's check the weather."
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.type == "function"
    assert call.id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert json.loads(call.function.arguments) == {
        "location": "San Francisco, CA",
        "unit": "fahrenheit",
    }
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2520


def test_output_is_emitted_while_the_stream_is_still_open() -> None:
    stream = MessagesToChatStream(model="m", created=1, include_usage=False)
    stream.feed("message_start", RECORDED_EVENTS[0][1])
    stream.feed("content_block_start", RECORDED_EVENTS[1][1])
    out = stream.feed("content_block_delta", RECORDED_EVENTS[3][1])
    assert [c["choices"][0]["delta"] for c in out] == [{"content": "Okay"}]
    assert not stream.done


def test_without_include_usage_there_is_no_usage_chunk_or_field() -> None:
    stream = MessagesToChatStream(model="my-model", created=1, include_usage=False)
    emitted = [c for name, data in RECORDED_EVENTS for c in stream.feed(name, data)]
    assert all("usage" not in c for c in emitted)
    assert all(c["choices"] for c in emitted)
    assert stream.usage.completion_tokens == 89


def test_tool_indexes_count_tool_blocks_only() -> None:
    stream = MessagesToChatStream(model="m", created=1, include_usage=False)
    stream.feed("message_start", RECORDED_EVENTS[0][1])
    blocks = [
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "text", "text": ""},
        {"type": "tool_use", "id": "t1", "name": "a", "input": {}},
        {"type": "tool_use", "id": "t2", "name": "b", "input": {}},
    ]
    for index, block in enumerate(blocks):
        stream.feed(
            None,
            {"type": "content_block_start", "index": index, "content_block": block},
        )
    delta = {"type": "input_json_delta", "partial_json": "{}"}
    out = stream.feed(None, {"type": "content_block_delta", "index": 3, "delta": delta})
    assert out[0]["choices"][0]["delta"] == {
        "tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]
    }
    thinking = {"type": "thinking_delta", "thinking": "hmm"}
    assert stream.feed(None, {"type": "content_block_delta", "index": 0, "delta": thinking}) == []


def test_message_delta_usage_is_cumulative_and_keeps_start_values() -> None:
    stream = MessagesToChatStream(model="m", created=1, include_usage=True)
    stream.feed("message_start", RECORDED_EVENTS[0][1])
    stream.feed(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 10},
        },
    )
    stream.feed(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens"},
            "usage": {
                "output_tokens": 25,
                "input_tokens": 500,
                "cache_read_input_tokens": None,
            },
        },
    )
    assert stream.usage == Usage(prompt_tokens=2548, completion_tokens=25, cached_tokens=2048)
    assert stream.finish_reason == "length"


@pytest.mark.parametrize(
    ("error_type", "status"),
    [
        ("overloaded_error", 529),
        ("rate_limit_error", 429),
        ("api_error", 500),
        ("new_error", 500),
    ],
)
def test_error_event_raises_with_the_status_it_stands_for(error_type: str, status: int) -> None:
    stream = MessagesToChatStream(model="m", created=1, include_usage=False)
    stream.feed("message_start", RECORDED_EVENTS[0][1])
    data = {"type": "error", "error": {"type": error_type, "message": "Overloaded"}}
    with pytest.raises(UpstreamStatusError) as info:
        stream.feed("error", data)
    assert status_of(info.value) == status
    assert info.value.message == "Overloaded"
    assert info.value.body_format == "anthropic"
    assert info.value.body is not None
    assert json.loads(info.value.body) == data


def test_unknown_events_are_ignored() -> None:
    stream = MessagesToChatStream(model="m", created=1, include_usage=False)
    assert stream.feed("future_event", {"type": "future_event"}) == []
    assert stream.feed("ping", {"type": "ping"}) == []


# --- OpenAI chunks -> Anthropic events -----------------------------------------------------

CHAT_ID = "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT"


def openai_chunk(
    delta: dict[str, Any] | None, finish_reason: str | None = None, usage: Any = None
) -> dict[str, Any]:
    choices = (
        []
        if delta is None
        else [
            {
                "index": 0,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ]
    )
    return {
        "id": CHAT_ID,
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-4o-2024-08-06",
        "service_tier": "default",
        "system_fingerprint": "fp_eb9dce56a8",
        "choices": choices,
        "usage": usage,
    }


# An OpenAI stream with stream_options.include_usage: role chunk, text, two tool calls whose
# arguments are split across deltas, the finish chunk and the usage chunk.
RECORDED_OPENAI_CHUNKS = [
    openai_chunk({"role": "assistant", "content": "", "refusal": None}),
    openai_chunk({"content": "Let me"}),
    openai_chunk({"content": " check."}),
    openai_chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"lo'}}]}),
    openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'cation":"Paris"}'}}]}),
    openai_chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                }
            ]
        }
    ),
    openai_chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"tz":"CET"}'}}]}),
    openai_chunk({}, "tool_calls"),
    openai_chunk(
        None,
        usage={
            "prompt_tokens": 1117,
            "completion_tokens": 46,
            "total_tokens": 1163,
            "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
    ),
]


def block_delta(index: int, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return (
        "content_block_delta",
        {"type": "content_block_delta", "index": index, "delta": delta},
    )


def block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return (
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def block_stop(index: int) -> tuple[str, dict[str, Any]]:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


def run_openai(
    chunks: list[dict[str, Any]], **finish: Any
) -> tuple[ChatToMessagesStream, list[list[tuple[str, dict[str, Any]]]]]:
    stream = ChatToMessagesStream(model="claude-alias", message_id="msg_123", prompt_tokens=1100)
    emitted = [stream.feed(c) for c in chunks]
    emitted.append(stream.finish(**finish))
    return stream, emitted


def accumulate(events: list[tuple[str, dict[str, Any]]]) -> Message:
    """Validate each event as the SDK types it and fold it the way MessageStream does."""
    adapter: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for name, data in events:
        event = adapter.validate_python(data)
        assert event.type == name
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    return Message.model_validate(snapshot.model_dump())


def test_openai_chunks_become_the_anthropic_event_sequence() -> None:
    stream, emitted = run_openai(RECORDED_OPENAI_CHUNKS)
    start_usage = {
        "input_tokens": 1100,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert emitted == [
        [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_123",
                        "type": "message",
                        "role": "assistant",
                        "model": "claude-alias",
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                },
            )
        ],
        [
            block_start(0, {"type": "text", "text": ""}),
            block_delta(0, {"type": "text_delta", "text": "Let me"}),
        ],
        [block_delta(0, {"type": "text_delta", "text": " check."})],
        [
            block_stop(0),
            block_start(
                1,
                {
                    "type": "tool_use",
                    "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                    "name": "get_weather",
                    "input": {},
                },
            ),
        ],
        [block_delta(1, {"type": "input_json_delta", "partial_json": '{"lo'})],
        [block_delta(1, {"type": "input_json_delta", "partial_json": 'cation":"Paris"}'})],
        [
            block_stop(1),
            block_start(2, {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}),
        ],
        [block_delta(2, {"type": "input_json_delta", "partial_json": '{"tz":"CET"}'})],
        [],
        [],
        [
            block_stop(2),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                    "usage": {
                        "input_tokens": 93,
                        "output_tokens": 46,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 1024,
                    },
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ],
    ]
    assert stream.usage == Usage(prompt_tokens=1117, completion_tokens=46, cached_tokens=1024)


def test_anthropic_sdk_accumulates_the_translated_stream() -> None:
    _, emitted = run_openai(RECORDED_OPENAI_CHUNKS)
    message = accumulate([event for events in emitted for event in events])
    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[0].text == "Let me check."  # type: ignore[union-attr]
    assert message.content[1].input == {"location": "Paris"}  # type: ignore[union-attr]
    assert message.content[2].input == {"tz": "CET"}  # type: ignore[union-attr]
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens == 93
    assert message.usage.cache_read_input_tokens == 1024
    assert message.usage.output_tokens == 46


def test_content_in_the_first_chunk_is_not_lost() -> None:
    _, emitted = run_openai([openai_chunk({"role": "assistant", "content": "Hi"}, "stop")])
    assert [name for name, _ in emitted[0]] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
    ]
    message = accumulate([e for events in emitted for e in events])
    assert message.content[0].text == "Hi"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_finish_reason_becomes_stop_reason(finish_reason: str | None, stop_reason: str) -> None:
    _, emitted = run_openai([openai_chunk({"content": "x"}), openai_chunk({}, finish_reason)])
    assert emitted[-1][-2][1]["delta"]["stop_reason"] == stop_reason


def test_tool_calls_with_finish_reason_stop_still_end_in_tool_use() -> None:
    chunks = [
        openai_chunk(tool_delta(id="c1", function={"name": "f", "arguments": "{}"})),
        openai_chunk({}, "stop"),
    ]
    _, emitted = run_openai(chunks)
    assert accumulate([e for events in emitted for e in events]).stop_reason == "tool_use"


def test_whole_tool_calls_in_one_delta_and_missing_ids() -> None:
    chunks = [
        openai_chunk(
            {
                "role": "assistant",
                "tool_calls": [
                    {"index": 0, "function": {"name": "a", "arguments": '{"x":1}'}},
                    {"index": 1, "function": {"name": "b", "arguments": '{"y":2}'}},
                ],
            }
        ),
        openai_chunk({}, "tool_calls"),
    ]
    _, emitted = run_openai(chunks)
    message = accumulate([e for events in emitted for e in events])
    assert [(b.id, b.name, b.input) for b in message.content] == [  # type: ignore[union-attr]
        ("toolu_msg_123_0", "a", {"x": 1}),
        ("toolu_msg_123_1", "b", {"y": 2}),
    ]


def test_text_after_a_tool_call_opens_a_new_block() -> None:
    chunks = [
        openai_chunk(tool_delta(id="c1", function={"name": "f", "arguments": "{}"})),
        openai_chunk({"content": "done"}),
    ]
    _, emitted = run_openai(chunks)
    message = accumulate([e for events in emitted for e in events])
    assert [b.type for b in message.content] == ["tool_use", "text"]


def test_empty_upstream_stream_still_forms_a_valid_message() -> None:
    stream, emitted = run_openai([])
    message = accumulate(emitted[0])
    assert message.content == []
    assert message.usage.input_tokens == 1100
    assert stream.finish() == []


def test_finish_usage_overrides_what_the_upstream_reported() -> None:
    stream, emitted = run_openai(
        [openai_chunk({"content": "x"}, "stop")],
        usage=Usage(prompt_tokens=1000, completion_tokens=3),
    )
    assert emitted[-1][-2][1]["usage"]["output_tokens"] == 3
    assert stream.usage.prompt_tokens == 1000


def test_other_choices_are_ignored() -> None:
    other = openai_chunk({"content": "ignored"})
    other["choices"][0]["index"] = 1
    _, emitted = run_openai([openai_chunk({"content": "kept"}), other])
    message = accumulate([e for events in emitted for e in events])
    assert message.content[0].text == "kept"  # type: ignore[union-attr]


def test_a_stream_survives_the_round_trip_through_openai_chunks() -> None:
    there = MessagesToChatStream(model="my-model", created=1, include_usage=True)
    back = ChatToMessagesStream(
        model="claude-sonnet-4-5",
        message_id="msg_014p7gG3wDgGV9EUtLvnow3U",
        prompt_tokens=0,
    )
    events = [
        e for name, data in RECORDED_EVENTS for c in there.feed(name, data) for e in back.feed(c)
    ]
    events += back.finish()
    original = accumulate([(n, d) for n, d in RECORDED_EVENTS if n != "ping"])
    translated = accumulate(events)
    assert translated.content == original.content
    assert translated.stop_reason == original.stop_reason
    assert translated.usage.output_tokens == original.usage.output_tokens
    assert translated.usage.cache_read_input_tokens == original.usage.cache_read_input_tokens
    assert translated.usage.input_tokens == original.usage.input_tokens


def test_openai_error_object_mid_stream_raises() -> None:
    stream = ChatToMessagesStream(model="m", message_id="msg_1", prompt_tokens=1)
    stream.feed(openai_chunk({"content": "partial"}))
    error = {
        "error": {
            "message": "The server had an error",
            "type": "server_error",
            "code": None,
        }
    }
    with pytest.raises(UpstreamStatusError) as info:
        stream.feed(error)
    assert info.value.message == "The server had an error"
    assert info.value.error_type == "server_error"
    assert info.value.body_format == "openai"
