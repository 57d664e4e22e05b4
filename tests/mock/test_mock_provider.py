"""The bundled mock provider, driven over loopback through aiohttp's test server and client."""

import asyncio
import base64
import json
import logging
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import tiktoken
from tiktoken.load import load_tiktoken_bpe

from nitroproxy.mock import (
    MOCK_STATE,
    WORDS,
    MockSettings,
    MockState,
    create_mock_app,
)

DATA = Path(__file__).resolve().parents[2] / "nitroproxy" / "data"
CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "say something nice"}]  # 3 + (3 + 3) = 9 prompt tokens
TOOLS = [
    {
        "type": "function",
        "function": {"name": "search", "parameters": {"type": "object"}},
    },
    {
        "type": "function",
        "function": {"name": "other", "parameters": {"type": "object"}},
    },
]
ANTHROPIC_TOOLS = [{"name": "search", "input_schema": {"type": "object"}}]


@pytest.fixture
def settings() -> MockSettings:
    return MockSettings(tokens=5)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_mock_app(settings))


def state_of(client) -> MockState:
    state: MockState = client.server.app[MOCK_STATE]
    return state


def chat(model: str = "mock", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": USER, **extra}


def anthropic(model: str = "claude-mock", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 100, "messages": USER, **extra}


async def openai_events(response) -> list[Any]:
    """The ``data:`` payloads of an OpenAI stream, JSON-decoded except ``[DONE]``."""
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = []
    for block in (await response.text()).split("\n\n"):
        if block:
            assert block.startswith("data: ")
            data = block.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def anthropic_events(response) -> list[tuple[str, dict[str, Any]]]:
    assert response.status == 200
    events = []
    for block in (await response.text()).split("\n\n"):
        if block:
            event_line, data_line = block.split("\n")
            data = json.loads(data_line.removeprefix("data: "))
            assert event_line == f"event: {data['type']}"
            events.append((data["type"], data))
    return events


# --- OpenAI chat -----------------------------------------------------------------------------


async def test_chat_answers_the_exact_openai_shape(client):
    response = await client.post(CHAT, json=chat("mock-a"))
    assert response.status == 200
    body = await response.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "mock-a"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "".join(WORDS[:5]),
                "refusal": None,
            },
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": 5,
        "total_tokens": 14,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


async def test_chat_stream_sends_role_tokens_finish_and_done_without_usage(client):
    events = await openai_events(await client.post(CHAT, json=chat(stream=True)))
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and "usage" not in c for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "",
        "refusal": None,
    }
    contents = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert contents == list(WORDS[:5])
    assert chunks[-1]["choices"] == [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    ]


async def test_chat_stream_with_include_usage_ends_with_a_usage_chunk(client):
    request = chat(stream=True, stream_options={"include_usage": True})
    events = await openai_events(await client.post(CHAT, json=request))
    assert events[-1] == "[DONE]"
    *chunks, usage_chunk = events[:-1]
    assert all(chunk["usage"] is None for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 5
    assert usage_chunk["usage"]["prompt_tokens"] == 9


async def test_model_name_directives_set_tokens_cached_and_reasoning(client):
    response = await client.post(CHAT, json=chat("m+tokens=40+cached=4+reasoning=7"))
    body = await response.json()
    assert body["model"] == "m+tokens=40+cached=4+reasoning=7"
    assert body["choices"][0]["message"]["content"] == "".join((WORDS * 2)[:40])
    usage = body["usage"]
    assert usage["completion_tokens"] == 47  # OpenAI counts reasoning inside completion_tokens
    assert usage["total_tokens"] == 9 + 47
    assert usage["prompt_tokens_details"] == {"cached_tokens": 4}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 7}


async def test_body_mock_field_overrides_tokens(client):
    body = await (await client.post(CHAT, json=chat(mock={"tokens": 2}))).json()
    assert body["usage"]["completion_tokens"] == 2


async def test_max_tokens_cuts_the_answer_with_finish_reason_length(client):
    body = await (await client.post(CHAT, json=chat(max_completion_tokens=3))).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


async def test_chat_with_tools_calls_the_first_tool(client):
    body = await (await client.post(CHAT, json=chat(tools=TOOLS))).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_mock_")
    assert call["type"] == "function"
    assert call["function"]["name"] == "search"
    assert json.loads(call["function"]["arguments"]) == {"query": "mock value"}


async def test_chat_tool_choice_none_answers_text_and_named_choice_wins(client):
    body = await (await client.post(CHAT, json=chat(tools=TOOLS, tool_choice="none"))).json()
    assert body["choices"][0]["message"]["content"] == "".join(WORDS[:5])
    named = {"type": "function", "function": {"name": "other"}}
    body = await (await client.post(CHAT, json=chat(tools=TOOLS, tool_choice=named))).json()
    assert body["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "other"


async def test_chat_stream_with_tools_sends_the_call_then_argument_fragments(client):
    events = await openai_events(await client.post(CHAT, json=chat(tools=TOOLS, stream=True)))
    chunks = events[:-1]
    opening = chunks[0]["choices"][0]["delta"]
    assert opening["role"] == "assistant"
    [start] = opening["tool_calls"]
    assert start["index"] == 0
    assert start["id"].startswith("call_mock_")
    assert start["type"] == "function"
    assert start["function"] == {"name": "search", "arguments": ""}
    fragments = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:-1]]
    assert len(fragments) > 2
    assert all(set(f) == {"index", "function"} for f in fragments)
    arguments = "".join(f["function"]["arguments"] for f in fragments)
    assert json.loads(arguments) == {"query": "mock value"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


# --- legacy completions, embeddings, models ----------------------------------------------------


async def test_legacy_completions_non_stream_and_stream(client):
    request: dict[str, Any] = {"model": "mock", "prompt": "once upon a time"}
    body = await (await client.post("/v1/completions", json=request)).json()
    assert body["object"] == "text_completion"
    assert body["choices"] == [
        {
            "text": "".join(WORDS[:5]),
            "index": 0,
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": 4,
        "completion_tokens": 5,
        "total_tokens": 9,
    }

    request |= {"stream": True, "stream_options": {"include_usage": True}}
    events = await openai_events(await client.post("/v1/completions", json=request))
    *chunks, usage_chunk, done = events
    assert done == "[DONE]"
    assert "".join(c["choices"][0]["text"] for c in chunks) == "".join(WORDS[:5])
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 5


async def test_embeddings_are_deterministic_floats_per_input(client):
    request = {"model": "emb", "input": ["hello world", "bye"]}
    body = await (await client.post("/v1/embeddings", json=request)).json()
    assert body["object"] == "list"
    assert body["model"] == "emb"
    assert [item["index"] for item in body["data"]] == [0, 1]
    vectors = [item["embedding"] for item in body["data"]]
    assert all(len(v) == 8 and all(-1 <= x < 1 for x in v) for v in vectors)
    assert vectors[0] != vectors[1]
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    again = await (await client.post("/v1/embeddings", json={**request, "input": "bye"})).json()
    assert again["data"][0]["embedding"] == vectors[1]


async def test_base64_embeddings_decode_to_the_float_vectors(client):
    request = {"model": "emb", "input": ["hello world", [1, 2, 3]]}
    floats = await (await client.post("/v1/embeddings", json=request)).json()
    request["encoding_format"] = "base64"
    packed = await (await client.post("/v1/embeddings", json=request)).json()
    for as_float, as_base64 in zip(floats["data"], packed["data"], strict=True):
        decoded = struct.unpack("<8f", base64.b64decode(as_base64["embedding"]))
        assert list(decoded) == as_float["embedding"]
    assert floats["usage"]["prompt_tokens"] == 2 + 3


async def test_embeddings_reject_malformed_input(client):
    response = await client.post("/v1/embeddings", json={"model": "emb", "input": [1, "a"]})
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "input"


async def test_models_lists_model_objects(client):
    body = await (await client.get("/v1/models")).json()
    assert body["object"] == "list"
    assert body["data"]
    assert all(m["object"] == "model" and isinstance(m["id"], str) for m in body["data"])


# --- Anthropic Messages ----------------------------------------------------------------------


async def test_messages_answers_the_exact_anthropic_shape(client):
    request = anthropic(system="be brief")  # 9 + (3 + 2) = 14 prompt tokens
    response = await client.post(
        "/v1/messages", json=request, headers={"anthropic-version": "2023-06-01"}
    )
    assert response.status == 200
    body = await response.json()
    assert body["id"].startswith("msg_")
    assert body == {
        "id": body["id"],
        "type": "message",
        "role": "assistant",
        "model": "claude-mock",
        "content": [{"type": "text", "text": "".join(WORDS[:5])}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 14,
            "output_tokens": 5,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


async def test_messages_stream_follows_the_real_event_sequence(client):
    events = await anthropic_events(await client.post("/v1/messages", json=anthropic(stream=True)))
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == 9
    assert start["usage"]["output_tokens"] == 1
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert all(d["type"] == "text_delta" for d in deltas)
    assert "".join(d["text"] for d in deltas) == "".join(WORDS[:5])
    final = events[-2][1]
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"] == {"output_tokens": 5}


async def test_messages_max_tokens_stops_with_reason_max_tokens(client):
    body = await (await client.post("/v1/messages", json=anthropic(max_tokens=2))).json()
    assert body["stop_reason"] == "max_tokens"
    assert body["usage"]["output_tokens"] == 2
    assert body["content"][0]["text"] == "".join(WORDS[:2])


async def test_messages_cached_tokens_are_excluded_from_input_tokens(client):
    body = await (await client.post("/v1/messages", json=anthropic("c+cached=5"))).json()
    assert body["usage"]["input_tokens"] == 9 - 5
    assert body["usage"]["cache_read_input_tokens"] == 5


async def test_messages_with_tools_uses_the_first_tool(client):
    body = await (await client.post("/v1/messages", json=anthropic(tools=ANTHROPIC_TOOLS))).json()
    assert body["stop_reason"] == "tool_use"
    [block] = body["content"]
    assert block["type"] == "tool_use"
    assert block["id"].startswith("toolu_mock_")
    assert block["name"] == "search"
    assert block["input"] == {"query": "mock value"}


async def test_messages_stream_with_tools_sends_input_json_deltas(client):
    request = anthropic(tools=ANTHROPIC_TOOLS, stream=True)
    events = await anthropic_events(await client.post("/v1/messages", json=request))
    block = events[1][1]["content_block"]
    assert block["type"] == "tool_use"
    assert block["name"] == "search"
    assert block["input"] == {}
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert all(d["type"] == "input_json_delta" for d in deltas)
    assert json.loads("".join(d["partial_json"] for d in deltas)) == {"query": "mock value"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-1][0] == "message_stop"


# --- validation and authentication -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "payload", "param"),
    [
        (CHAT, b"{not json", None),
        (CHAT, b'{"messages": []}', "model"),
        (CHAT, b'{"model": "m"}', "messages"),
        (CHAT, b'{"model": "m", "messages": []}', "messages"),
        (CHAT, b'{"model": "m+tokns=3", "messages": [{"role": "user"}]}', "model"),
        ("/v1/completions", b'{"model": "m"}', "prompt"),
    ],
)
async def test_openai_routes_reject_bad_requests_in_openai_shape(client, path, payload, param):
    response = await client.post(path, data=payload, headers={"Content-Type": "application/json"})
    assert response.status == 400
    error = (await response.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


@pytest.mark.parametrize("payload", [b"[1, 2", b'{"model": "m"}', b'{"messages": []}'])
async def test_anthropic_route_rejects_bad_requests_in_anthropic_shape(client, payload):
    response = await client.post("/v1/messages", data=payload)
    assert response.status == 400
    body = await response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert isinstance(body["error"]["message"], str)


@pytest.mark.parametrize("settings", [MockSettings(api_key="sk-mock")])
async def test_api_key_is_required_in_each_apis_header(client):
    response = await client.post(CHAT, json=chat())
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "invalid_api_key"
    ok = await client.post(CHAT, json=chat(), headers={"Authorization": "Bearer sk-mock"})
    assert ok.status == 200
    assert (await client.get("/v1/models")).status == 401

    wrong = await client.post("/v1/messages", json=anthropic(), headers={"x-api-key": "nope"})
    assert wrong.status == 401
    assert (await wrong.json())["error"]["type"] == "authentication_error"
    right = await client.post("/v1/messages", json=anthropic(), headers={"x-api-key": "sk-mock"})
    assert right.status == 200


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("directive", "status", "openai_type", "anthropic_type"),
    [
        ("fail500", 500, "server_error", "api_error"),
        ("fail429", 429, "requests", "rate_limit_error"),
        ("fail400", 400, "invalid_request_error", "invalid_request_error"),
        ("fail401", 401, "invalid_request_error", "authentication_error"),
        ("fail529", 529, "server_error", "overloaded_error"),
    ],
)
async def test_fail_directives_answer_errors_in_each_apis_shape(
    client, directive, status, openai_type, anthropic_type
):
    response = await client.post(CHAT, json=chat(f"m+{directive}", stream=True))
    assert response.status == status
    assert (await response.json())["error"]["type"] == openai_type
    response = await client.post("/v1/messages", json=anthropic(f"c+{directive}"))
    assert response.status == status
    assert (await response.json())["error"]["type"] == anthropic_type


async def test_fail429_sends_retry_after_one_second_unless_retry_is_given(client):
    response = await client.post(CHAT, json=chat("m+fail429"))
    assert response.headers["retry-after"] == "1"
    response = await client.post(CHAT, json=chat("m+fail429+retry=3"))
    assert response.headers["retry-after"] == "3"
    response = await client.post(CHAT, json=chat("m+fail500"))
    assert "retry-after" not in response.headers


@pytest.mark.parametrize("stream", [False, True])
async def test_hang_never_answers_and_notices_the_client_leaving(client, stream):
    with pytest.raises(asyncio.TimeoutError):
        await client.post(
            CHAT,
            json=chat("m+hang", stream=stream),
            timeout=aiohttp.ClientTimeout(total=0.2),
        )
    state = state_of(client)
    await state.wait_disconnect(timeout=2)
    assert state.disconnects == 1


async def test_reset_closes_the_connection_before_any_header(client, caplog):
    with caplog.at_level(logging.ERROR), pytest.raises(aiohttp.ClientConnectionError):
        await client.post(CHAT, json=chat("m+reset", stream=True))
    # The server must not log a handler error (nor try to send a 500).
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert (await client.post(CHAT, json=chat())).status == 200


async def test_drop_stream_sends_half_the_tokens_then_cuts_the_connection(client):
    response = await client.post(CHAT, json=chat("m+tokens=10+drop", stream=True))
    assert response.status == 200
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async for line in response.content:
            received += line
    assert received.count(b'"content":" ') == 5
    assert b"[DONE]" not in received
    assert b'"finish_reason":"stop"' not in received
    [log] = state_of(client).streams
    assert log.outcome == "dropped"
    assert len(log.token_times) == 5
    assert state_of(client).active_streams == 0


async def test_drop_anthropic_stream_has_no_message_stop(client):
    response = await client.post("/v1/messages", json=anthropic("c+drop", stream=True))
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async for line in response.content:
            received += line
    assert b"message_start" in received
    assert b"message_stop" not in received


async def test_drop_non_stream_sends_headers_but_no_body(client):
    response = await client.post(CHAT, json=chat("m+drop"))
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()


async def test_garbage_stream_sends_two_tokens_then_lines_that_are_not_json(client):
    response = await client.post(CHAT, json=chat("m+garbage", stream=True))
    blocks = [b for b in (await response.text()).split("\n\n") if b]
    decodable = []
    for block in blocks:
        try:
            decodable.append(json.loads(block.removeprefix("data: ")))
        except json.JSONDecodeError:
            break
    assert len(decodable) == 3  # the role chunk and two tokens
    assert len(blocks) > len(decodable)
    assert "[DONE]" not in blocks[-1]


async def test_garbage_non_stream_is_a_200_with_a_body_that_is_not_json(client):
    response = await client.post("/v1/messages", json=anthropic("c+garbage"))
    assert response.status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(await response.text())


async def test_nousage_reports_no_usage_anywhere(client):
    body = await (await client.post(CHAT, json=chat("m+nousage"))).json()
    assert "usage" not in body
    request = chat("m+nousage", stream=True, stream_options={"include_usage": True})
    events = await openai_events(await client.post(CHAT, json=request))
    assert all("usage" not in event for event in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "stop"

    body = await (await client.post("/v1/messages", json=anthropic("c+nousage"))).json()
    assert "usage" not in body
    stream = await client.post("/v1/messages", json=anthropic("c+nousage", stream=True))
    by_name = dict(await anthropic_events(stream))
    assert by_name["message_start"]["message"]["usage"]["input_tokens"] == 9
    assert "usage" not in by_name["message_delta"]


@pytest.mark.parametrize("settings", [MockSettings(tokens=3, slow_first_token_ms=300)])
async def test_slowfirst_delays_the_first_token_but_not_the_headers(client):
    started = time.monotonic()
    response = await client.post(CHAT, json=chat("m+slowfirst", stream=True))
    assert time.monotonic() - started < 0.25
    await response.read()
    [log] = state_of(client).streams
    assert log.token_times[0] - log.started_at >= 0.29
    assert log.token_times[-1] - log.token_times[0] < 0.1


@pytest.mark.parametrize("settings", [MockSettings(tokens=4, delay_ms=40)])
async def test_delay_spaces_the_streamed_tokens(client):
    await (await client.post(CHAT, json=chat(stream=True))).read()
    [log] = state_of(client).streams
    assert log.outcome == "complete"
    gaps = [b - a for a, b in zip(log.token_times, log.token_times[1:], strict=False)]
    assert len(gaps) == 3
    assert all(gap >= 0.035 for gap in gaps)
    assert log.ended_at is not None


# --- echo: the last user text comes back -----------------------------------------------------

CANARY = "CANARY-7f3a9c"
SECRET = f"my key is {CANARY} thanks"  # 5 words
SECRET_WORDS = [" my", " key", " is", f" {CANARY}", " thanks"]
# A text that JSON must escape, with non-ASCII that must not be: the tool arguments carry it.
AWKWARD = f'find "{CANARY}"  über\tall \\ of it'
CONVERSATION = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "an earlier question"},
    {"role": "assistant", "content": "an earlier answer"},
    {"role": "user", "content": [{"type": "text", "text": SECRET}]},
]


def echo_chat(text: str = SECRET, model: str = "m+echo+tokens=2", **extra: Any) -> dict[str, Any]:
    messages = [*CONVERSATION[:-1], {"role": "user", "content": text}]
    return {"model": model, "messages": messages, **extra}


def echo_anthropic(text: str = SECRET, **extra: Any) -> dict[str, Any]:
    blocks = [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "not echoed"},
        {"type": "text", "text": text},
    ]
    messages = [*CONVERSATION[1:-1], {"role": "user", "content": blocks}]
    return {"model": "c+echo+tokens=2", "max_tokens": 100, "messages": messages, **extra}


async def test_echo_chat_answers_the_last_user_text_word_by_word(client):
    request = {"model": "m+echo+tokens=2", "messages": CONVERSATION}  # text parts
    body = await (await client.post(CHAT, json=request)).json()
    choice = body["choices"][0]
    assert choice["message"]["content"] == "".join(SECRET_WORDS)
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 5  # one per word; tokens=2 is ignored


async def test_echo_chat_stream_sends_one_delta_per_word(client):
    request = echo_chat(stream=True, stream_options={"include_usage": True})
    events = await openai_events(await client.post(CHAT, json=request))
    *chunks, usage_chunk, done = events
    assert done == "[DONE]"
    contents = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert contents == SECRET_WORDS
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert usage_chunk["usage"]["completion_tokens"] == 5


async def test_echo_keeps_max_tokens_and_answers_nothing_without_user_text(client):
    body = await (await client.post(CHAT, json=echo_chat(max_tokens=2))).json()
    assert body["choices"][0]["message"]["content"] == " my key"
    assert body["choices"][0]["finish_reason"] == "length"
    body = await (await client.post(CHAT, json=echo_chat(" \n "))).json()
    assert body["choices"][0]["message"]["content"] == ""
    assert body["usage"]["completion_tokens"] == 0


async def test_echo_legacy_completions_answer_the_prompt(client):
    request: dict[str, Any] = {"model": "m+echo", "prompt": SECRET}
    body = await (await client.post("/v1/completions", json=request)).json()
    assert body["choices"][0]["text"] == "".join(SECRET_WORDS)
    assert body["usage"]["completion_tokens"] == 5

    request |= {"prompt": ["first prompt", SECRET], "stream": True}
    events = await openai_events(await client.post("/v1/completions", json=request))
    texts = [event["choices"][0]["text"] for event in events[:-2]]
    assert texts == SECRET_WORDS


async def test_echo_messages_answer_the_last_user_text_blocks(client):
    body = await (await client.post("/v1/messages", json=echo_anthropic())).json()
    assert body["content"] == [{"type": "text", "text": "".join(SECRET_WORDS)}]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["output_tokens"] == 5

    stream = await client.post("/v1/messages", json=echo_anthropic(stream=True))
    events = await anthropic_events(stream)
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert [d["text"] for d in deltas] == SECRET_WORDS
    assert events[-2][1]["usage"] == {"output_tokens": 5}


async def test_echo_chat_tool_arguments_carry_the_last_user_text(client):
    response = await client.post(CHAT, json=echo_chat(AWKWARD, tools=TOOLS))
    body = await response.json()
    [call] = body["choices"][0]["message"]["tool_calls"]
    arguments = call["function"]["arguments"]
    assert json.loads(arguments) == {"query": AWKWARD}
    assert "über" in arguments  # not \u-escaped

    request = echo_chat(SECRET, tools=TOOLS, stream=True)
    events = await openai_events(await client.post(CHAT, json=request))
    fragments = [c["choices"][0]["delta"]["tool_calls"][0] for c in events[1:-2]]
    streamed = "".join(f["function"]["arguments"] for f in fragments)
    assert json.loads(streamed) == {"query": SECRET}
    assert CANARY in streamed
    assert len(fragments) > 5


async def test_echo_messages_tool_input_carries_the_last_user_text(client):
    request = echo_anthropic(AWKWARD, tools=ANTHROPIC_TOOLS)
    body = await (await client.post("/v1/messages", json=request)).json()
    assert body["content"][0]["input"] == {"query": AWKWARD}

    request = echo_anthropic(AWKWARD, tools=ANTHROPIC_TOOLS, stream=True)
    events = await anthropic_events(await client.post("/v1/messages", json=request))
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert all(d["type"] == "input_json_delta" for d in deltas)
    assert json.loads("".join(d["partial_json"] for d in deltas)) == {"query": AWKWARD}
    assert events[-2][1]["usage"] == {"output_tokens": len(deltas)}
    assert body["usage"]["output_tokens"] == len(deltas)  # one token per fragment


async def test_echo_streams_keep_drop_and_garbage(client):
    response = await client.post(CHAT, json=echo_chat(model="m+echo+drop", stream=True))
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async for line in response.content:
            received += line
    assert received.count(b'"content":" ') == 2  # half of the 5 words
    assert b"[DONE]" not in received

    response = await client.post(CHAT, json=echo_chat(model="m+echo+garbage", stream=True))
    text = await response.text()
    assert '"content":" my"' in text
    assert '"content":" key"' in text
    assert CANARY not in text


@pytest.mark.parametrize("settings", [MockSettings(delay_ms=30)])
async def test_echo_spaces_its_words_like_normal_tokens(client):
    await (await client.post(CHAT, json=echo_chat(stream=True))).read()
    [log] = state_of(client).streams
    assert len(log.token_times) == 5
    gaps = [b - a for a, b in zip(log.token_times, log.token_times[1:], strict=False)]
    assert all(gap >= 0.025 for gap in gaps)


async def test_an_enqueued_entry_keeps_echo(client):
    state_of(client).enqueue_faults("m", ["fail500", "ok"])
    assert (await client.post(CHAT, json=echo_chat(model="m+echo"))).status == 500
    body = await (await client.post(CHAT, json=echo_chat(model="m+echo"))).json()
    assert body["choices"][0]["message"]["content"] == "".join(SECRET_WORDS)
    MockState(MockSettings()).enqueue_faults("m", ["echo+fail503"])  # a valid entry


# --- state: fault queue, disconnects, records ------------------------------------------------


async def test_enqueued_faults_fail_n_times_then_recover(client):
    state = state_of(client)
    state.enqueue_faults("mock-a", ["fail500", "fail429+retry=2"])
    first = await client.post(CHAT, json=chat("mock-a"))
    second = await client.post(CHAT, json=chat("mock-a+tokens=2"))  # matched by the base name
    other = await client.post(CHAT, json=chat("mock-b"))
    third = await client.post(CHAT, json=chat("mock-a"))
    assert (first.status, second.status, other.status, third.status) == (
        500,
        429,
        200,
        200,
    )
    assert second.headers["retry-after"] == "2"


async def test_an_enqueued_ok_overrides_the_fault_in_the_model_name(client):
    state_of(client).enqueue_faults("m+fail500", ["ok"])
    assert (await client.post(CHAT, json=chat("m+fail500"))).status == 200
    assert (await client.post(CHAT, json=chat("m+fail500"))).status == 500


def test_enqueue_faults_rejects_unknown_directives():
    with pytest.raises(ValueError, match="fial500"):
        MockState(MockSettings()).enqueue_faults("m", ["fial500"])


@pytest.mark.parametrize("settings", [MockSettings(tokens=100, delay_ms=20)])
async def test_client_disconnect_mid_stream_is_recorded(client):
    state = state_of(client)
    response = await client.post(CHAT, json=chat(stream=True))
    await response.content.readline()  # the role chunk
    await response.content.readline()
    assert state.active_streams == 1
    response.close()
    await state.wait_disconnect(timeout=2)
    [log] = state.streams
    assert log.outcome == "client_disconnected"
    assert 0 < len(log.token_times) < 100
    assert state.active_streams == 0
    assert state.disconnects == 1


async def test_wait_disconnect_times_out_when_nobody_leaves(client):
    with pytest.raises(TimeoutError):
        await state_of(client).wait_disconnect(timeout=0.05)


async def test_requests_are_recorded_and_reset_forgets_them(client):
    state = state_of(client)
    await client.post(CHAT, json=chat(), headers={"X-Trace": "abc"})
    await client.get("/v1/models")
    [first, second] = state.requests
    assert (first.path, first.method, first.body) == (CHAT, "POST", chat())
    assert first.headers["x-trace"] == "abc"
    assert (second.path, second.method, second.body) == ("/v1/models", "GET", None)
    assert state.total_requests == 2
    state.enqueue_faults("mock", ["fail500"])
    state.reset()
    assert (state.requests, state.streams, state.total_requests) == ([], [], 0)
    body = await (await client.post(CHAT, json=chat())).json()
    assert body["id"] == "chatcmpl-mock-1"


@pytest.mark.parametrize("settings", [MockSettings(record=False)])
async def test_record_off_keeps_counters_but_no_records(client):
    await (await client.post(CHAT, json=chat(stream=True))).read()
    state = state_of(client)
    assert state.total_requests == 1
    assert (state.requests, state.streams) == ([], [])


async def test_the_test_server_runs_with_handler_cancellation(client):
    # The disconnect tests rely on it; aiohttp's TestServer forces it on (see the module doc).
    runner = client.server.runner
    assert runner is not None
    assert runner.server.handler_cancellation is True


def test_run_mock_serves_over_loopback():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = (
        "from nitroproxy.mock import MockSettings, run_mock\n"
        f"run_mock('127.0.0.1', {port}, MockSettings(tokens=2))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL)
    try:
        body = _poll_models(port, deadline=time.monotonic() + 20)
        assert body["object"] == "list"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _poll_models(port: int, deadline: float) -> Any:
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                raw = b""
                while chunk := conn.recv(65536):
                    raw += chunk
            return json.loads(raw.partition(b"\r\n\r\n")[2])
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# --- token accounting ------------------------------------------------------------------------

CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
# Copied from tiktoken_ext.openai_public.o200k_base (its functions download the rank files).
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


@pytest.fixture(scope="module")
def encodings() -> list[tiktoken.Encoding]:
    return [
        tiktoken.Encoding(
            name="cl100k_base",
            pat_str=CL100K_PATTERN,
            mergeable_ranks=load_tiktoken_bpe(str(DATA / "cl100k_base.tiktoken")),
            special_tokens={"<|endoftext|>": 100257, "<|endofprompt|>": 100276},
        ),
        tiktoken.Encoding(
            name="o200k_base",
            pat_str=O200K_PATTERN,
            mergeable_ranks=load_tiktoken_bpe(str(DATA / "o200k_base.tiktoken")),
            special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
        ),
    ]


def test_every_word_is_one_token_in_both_encodings(encodings):
    assert len(set(WORDS)) == len(WORDS)
    for encoding in encodings:
        for word in WORDS:
            assert word.startswith(" ")
            assert len(encoding.encode(word)) == 1, (encoding.name, word)


@pytest.mark.parametrize("settings", [MockSettings(tokens=2 * len(WORDS) + 7)])
async def test_completion_tokens_equal_the_tokenizer_count_of_the_text(client, encodings):
    body = await (await client.post(CHAT, json=chat())).json()
    text = body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] == 2 * len(WORDS) + 7
    for encoding in encodings:
        assert len(encoding.encode(text)) == body["usage"]["completion_tokens"], encoding.name
