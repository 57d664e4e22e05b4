import json
from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from nitroproxy.core import sse
from nitroproxy.core.anthropic_stream import ChatToMessagesStream, MessagesToChatStream
from nitroproxy.core.pipeline import OpenAIStream
from nitroproxy.core.replay import (
    StreamAssembler,
    is_complete,
    replay_anthropic_stream,
    replay_completion_stream,
    replay_openai_stream,
    replay_stream,
)
from nitroproxy.core.types import ApiFormat, Endpoint, Usage

LONG = "The quick brown fox jumps over the lazy dog. " * 5 + "ünïcødé ✓"
USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 34,
    "total_tokens": 46,
    "prompt_tokens_details": {"cached_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0},
}


def chat_response(**extra: Any) -> dict[str, Any]:
    message = {"role": "assistant", "content": LONG, "refusal": None}
    tool = {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": LONG})},
            },
            {"id": "call_2", "type": "function", "function": {"name": "noop", "arguments": "{}"}},
        ],
    }
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-2024",
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"},
            {"index": 1, "message": tool, "logprobs": None, "finish_reason": "tool_calls"},
        ],
        "usage": USAGE,
        "system_fingerprint": "fp_1",
        **extra,
    }


def completion_response() -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1700000000,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [
            {"text": LONG, "index": 0, "logprobs": None, "finish_reason": "length"},
            {"text": "", "index": 1, "logprobs": None, "finish_reason": "stop"},
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }


def anthropic_message() -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "Let me think. " * 10, "signature": "sig=="},
            {
                "type": "text",
                "text": LONG,
                "citations": [
                    {
                        "type": "char_location",
                        "cited_text": "fox",
                        "document_index": 0,
                        "document_title": None,
                        "start_char_index": 1,
                        "end_char_index": 4,
                    }
                ],
            },
            {"type": "text", "text": "plain"},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": LONG, "days": [1, 2]},
            },
            {"type": "tool_use", "id": "toolu_2", "name": "noop", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 472,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 2048,
            "output_tokens": 89,
        },
    }


def events_of(raw: list[bytes]) -> list[tuple[str | None, Any]]:
    decoder = sse.SSEDecoder()
    out = []
    for event in decoder.feed(b"".join(raw)):
        assert event.data is not None
        data = event.data if event.data == b"[DONE]" else orjson.loads(event.data)
        out.append((event.event, data))
    return out


def assemble(endpoint: Endpoint, raw: list[bytes], **kw: Any) -> dict[str, Any] | None:
    assembler = StreamAssembler(endpoint)
    for piece in raw:
        assembler.feed_bytes(piece)
    return assembler.assembled(**kw)


# -- OpenAI chat ------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_chars", [1, 7, 64, 10_000])
def test_a_chat_completion_survives_replay_and_assembly(chunk_chars):
    body = chat_response()
    raw = replay_openai_stream(body, include_usage=True, chunk_chars=chunk_chars)
    assert assemble(Endpoint.CHAT, raw) == body


def test_chat_replay_is_a_proper_sse_stream_the_openai_sdk_accepts():
    body = chat_response()
    raw = replay_openai_stream(body, include_usage=True, chunk_chars=16)
    assert all(piece.startswith(b"data: ") and piece.endswith(b"\n\n") for piece in raw)
    assert raw[-1] == b"data: [DONE]\n\n"
    chunks = [data for _, data in events_of(raw[:-1])]
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    final = state.get_final_completion()
    assert final.choices[0].message.content == LONG
    calls = final.choices[1].message.tool_calls
    assert calls is not None
    assert [c.id for c in calls] == ["call_1", "call_2"]
    assert json.loads(calls[0].function.arguments) == {"city": LONG}
    assert final.choices[1].finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.total_tokens == 46
    assert final.system_fingerprint == "fp_1"
    # The role chunk opens each choice, as OpenAI sends it.
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}


def test_usage_chunk_only_when_asked_for():
    body = chat_response()
    with_usage = [d for _, d in events_of(replay_openai_stream(body, include_usage=True))]
    assert all(c["usage"] is None for c in with_usage[:-2])
    assert with_usage[-2]["choices"] == [] and with_usage[-2]["usage"] == USAGE
    assert with_usage[-1] == b"[DONE]"
    without = [d for _, d in events_of(replay_openai_stream(body, include_usage=False))]
    assert all("usage" not in c for c in without[:-1])
    assert all(c["choices"] for c in without[:-1])


def test_a_stream_without_usage_assembles_with_the_usage_given():
    raw = replay_openai_stream(chat_response(), include_usage=False)
    assert "usage" not in (assemble(Endpoint.CHAT, raw) or {"usage": 1})
    usage = Usage(prompt_tokens=12, completion_tokens=34)
    assert assemble(Endpoint.CHAT, raw, usage=usage) == chat_response()


def test_refusals_and_legacy_function_calls_round_trip():
    body = chat_response()
    body["choices"] = [
        {
            "index": 0,
            "message": {"role": "assistant", "content": None, "refusal": "I can't help."},
            "logprobs": None,
            "finish_reason": "stop",
        },
        {
            "index": 1,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "function_call": {"name": "f", "arguments": '{"a": 1}'},
            },
            "logprobs": None,
            "finish_reason": "function_call",
        },
    ]
    raw = replay_openai_stream(body, include_usage=True, chunk_chars=3)
    assert assemble(Endpoint.CHAT, raw) == body


def test_every_byte_split_of_the_client_stream_assembles_the_same():
    body = chat_response()
    data = b"".join(replay_openai_stream(body, include_usage=True, chunk_chars=50))
    for cut in range(0, len(data), 37):
        assembler = StreamAssembler(Endpoint.CHAT)
        assembler.feed_bytes(data[:cut])
        assembler.feed_bytes(b": keep-alive\n\n" if data[:cut].endswith(b"\n\n") else b"")
        assembler.feed_bytes(data[cut:])
        assert assembler.assembled() == body, cut


def test_an_anthropic_upstream_translated_for_an_openai_client_assembles_like_the_sdk():
    upstream = replay_anthropic_stream(anthropic_message())
    translator = MessagesToChatStream(model="claude", created=1, include_usage=True)
    assembler = StreamAssembler(Endpoint.CHAT)
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for name, data in events_of(upstream):
        for chunk in translator.feed(name, data):
            state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
            assembler.feed_chunk(chunk)
    assembler.feed_done()
    body = assembler.assembled()
    assert body is not None
    ours = ChatCompletion.model_validate(body)
    sdk = state.get_final_completion()
    assert ours.choices[0].message.content == sdk.choices[0].message.content

    def calls(message: Any) -> list[tuple[str, str, str]]:
        return [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []]

    assert calls(ours.choices[0].message) == calls(sdk.choices[0].message)
    assert ours.usage == sdk.usage
    assert ours.choices[0].message.content == LONG + "plain"
    assert calls(ours.choices[0].message)[1] == ("toolu_2", "noop", "")


def test_same_format_stream_with_usage_stripped_for_the_client():
    # OpenAI upstream, OpenAI client that did not ask for usage: the proxy asked for it and
    # strips it, so the client stream has none; the pipeline's usage fills the entry in.
    upstream = b"".join(replay_openai_stream(chat_response(), include_usage=True))
    pipeline = OpenAIStream(client=ApiFormat.OPENAI, counter=None, strip_usage=True)
    assembler = StreamAssembler(Endpoint.CHAT)
    assembler.feed_bytes(pipeline.feed(upstream) + pipeline.end())
    assert pipeline.completed and pipeline.usage is not None
    assert assembler.assembled(usage=pipeline.usage) == chat_response()


# -- legacy completions ---------------------------------------------------------------------


def test_a_text_completion_survives_replay_and_assembly_and_validates():
    body = completion_response()
    raw = replay_completion_stream(body, include_usage=True, chunk_chars=9)
    for _, chunk in events_of(raw)[:-1]:
        # The SDK types stream chunks as Completion but builds them unvalidated: mid-stream
        # choices carry finish_reason null, as OpenAI sends them.
        for choice in chunk["choices"]:
            choice["finish_reason"] = choice["finish_reason"] or "stop"
        Completion.model_validate(chunk)
    assert assemble(Endpoint.COMPLETIONS, raw) == body
    Completion.model_validate(body)


# -- Anthropic ----------------------------------------------------------------------------------


def sdk_accumulate(raw: list[bytes]) -> Message:
    adapter: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for name, data in events_of(raw):
        event = adapter.validate_python(data)
        assert event.type == name
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    return Message.model_validate(snapshot.model_dump())


@pytest.mark.parametrize("chunk_chars", [1, 5, 64])
def test_an_anthropic_message_survives_replay_and_assembly(chunk_chars):
    message = anthropic_message()
    raw = replay_anthropic_stream(message, chunk_chars=chunk_chars)
    assert assemble(Endpoint.MESSAGES, raw) == message


def test_anthropic_replay_is_the_event_sequence_the_sdk_accumulates():
    message = anthropic_message()
    raw = replay_anthropic_stream(message, chunk_chars=11)
    names = [name for name, _ in events_of(raw)]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert all(piece.startswith(b"event: ") for piece in raw)
    final = sdk_accumulate(raw)
    assert final == Message.model_validate(message)


def test_an_openai_upstream_translated_for_an_anthropic_client_assembles_like_the_sdk():
    tool_choice = {**chat_response()["choices"][1], "index": 0}
    upstream = replay_openai_stream(chat_response(choices=[tool_choice]), include_usage=True)
    translator = ChatToMessagesStream(model="gpt", message_id="msg_9", prompt_tokens=3)
    client: list[bytes] = []
    for _, chunk in events_of(upstream)[:-1]:
        client += [sse.encode(orjson.dumps(d), n) for n, d in translator.feed(chunk)]
    client += [sse.encode(orjson.dumps(d), n) for n, d in translator.finish()]
    body = assemble(Endpoint.MESSAGES, client)
    assert body is not None
    assert Message.model_validate(body) == sdk_accumulate(client)
    assert body["content"][0]["input"] == {"city": LONG}
    assert body["usage"]["output_tokens"] == 34


# -- what is not cached -----------------------------------------------------------------------


def chat_raw() -> list[bytes]:
    return replay_openai_stream(chat_response(), include_usage=True)


def anthropic_raw() -> list[bytes]:
    return replay_anthropic_stream(anthropic_message())


def without(raw: list[bytes], marker: bytes) -> list[bytes]:
    return [piece for piece in raw if marker not in piece]


@pytest.mark.parametrize(
    ("endpoint", "raw"),
    [
        (Endpoint.CHAT, without(chat_raw(), b"[DONE]")),
        (Endpoint.CHAT, without(chat_raw(), b'"finish_reason":"tool_calls"')),
        (Endpoint.CHAT, [*chat_raw()[:3], b'data: {"error":{"message":"boom"}}\n\n', sse.DONE]),
        (Endpoint.CHAT, [*chat_raw()[:3], b"data: not json\n\n", *chat_raw()[3:]]),
        (
            Endpoint.CHAT,
            [
                b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"a"},'
                b'"logprobs":{"content":[]},"finish_reason":"stop"}]}\n\n',
                sse.DONE,
            ],
        ),
        (
            Endpoint.CHAT,
            [
                b'data: {"id":"x","choices":[{"index":0,"delta":{"annotations":[{"type":"u"}]},'
                b'"finish_reason":"stop"}]}\n\n',
                sse.DONE,
            ],
        ),
        (Endpoint.MESSAGES, without(anthropic_raw(), b"message_stop")),
        (
            Endpoint.MESSAGES,
            [
                *anthropic_raw()[:-2],
                b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"}}\n\n',
            ],
        ),
        (
            Endpoint.MESSAGES,
            [
                *anthropic_raw()[:2],
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                b'"delta":{"type":"future_delta","x":1}}\n\n',
                *anthropic_raw()[2:],
            ],
        ),
        (Endpoint.MESSAGES, anthropic_raw()[1:]),  # no message_start
    ],
)
def test_incomplete_failed_or_lossy_streams_assemble_to_none(endpoint, raw):
    assert assemble(endpoint, raw) is None


def test_input_past_max_bytes_is_not_collected():
    raw = chat_raw()
    assembler = StreamAssembler(Endpoint.CHAT, max_bytes=len(b"".join(raw)) - 1)
    for piece in raw:
        assembler.feed_bytes(piece)
    assert assembler.failed
    assert assembler.assembled() is None


def test_embeddings_do_not_stream():
    with pytest.raises(ValueError):
        StreamAssembler(Endpoint.EMBEDDINGS)
    with pytest.raises(ValueError):
        replay_stream(Endpoint.EMBEDDINGS, {"data": []}, include_usage=False)


def test_replay_stream_dispatches_on_the_endpoint():
    assert replay_stream(Endpoint.CHAT, chat_response(), include_usage=False) == (
        replay_openai_stream(chat_response(), include_usage=False)
    )
    assert replay_stream(Endpoint.MESSAGES, anthropic_message(), include_usage=False) == (
        replay_anthropic_stream(anthropic_message())
    )
    assert replay_stream(Endpoint.COMPLETIONS, completion_response(), include_usage=True) == (
        replay_completion_stream(completion_response(), include_usage=True)
    )


@pytest.mark.parametrize(
    ("endpoint", "body", "ok"),
    [
        (Endpoint.CHAT, chat_response(), True),
        (Endpoint.CHAT, {"choices": []}, False),
        (Endpoint.CHAT, {"choices": [{"index": 0, "finish_reason": None}]}, False),
        (Endpoint.CHAT, {"error": {"message": "x"}}, False),
        (Endpoint.COMPLETIONS, completion_response(), True),
        (Endpoint.MESSAGES, anthropic_message(), True),
        (Endpoint.MESSAGES, {**anthropic_message(), "stop_reason": None}, False),
        (Endpoint.EMBEDDINGS, {"object": "list", "data": [{"embedding": [0.1]}]}, True),
        (Endpoint.EMBEDDINGS, {"object": "list"}, False),
    ],
)
def test_is_complete(endpoint, body, ok):
    assert is_complete(endpoint, body) is ok
