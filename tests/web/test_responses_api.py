"""POST /v1/responses with the official openai SDK, three ways: passed through to an upstream
with the Responses API, translated to chat completions, translated to Anthropic Messages.
The event order, the answer and the usage must be the same API whichever way it went."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.responses import ResponseFunctionToolCall

from nitroproxy.core import pricing
from nitroproxy.core.types import Price, Usage
from nitroproxy.mock import WORDS
from nitroproxy.mock.content import chat_prompt_tokens
from nitroproxy.mock.responses_routes import prompt_tokens
from tests.conftest import (
    CLIENT_KEY,
    UPSTREAM_KEY,
    Proxy,
    ProxyFactory,
    Upstream,
    base_config,
    wait_records,
)

PRICE = Price(input=1, output=2)
# model -> (provider, upstream model, the path the upstream gets)
WAYS = {
    "resp-native": ("mock-responses", "mock-gpt", "/v1/responses"),
    "resp-chat": ("mock-openai", "mock-gpt", "/v1/chat/completions"),
    "resp-claude": ("mock-anthropic", "mock-claude", "/v1/messages"),
}
FUNCTION = {
    "type": "function",
    "name": "lookup",
    "description": "Look something up",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
}
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 5,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def responses_config(
    upstream: Upstream, tmp_path: Path, suffix: str = "+tokens=5"
) -> dict[str, Any]:
    cfg = base_config(upstream.url, tmp_path)
    cfg["providers"]["mock-responses"] = {
        "kind": "openai",
        "base_url": upstream.url + "/v1",
        "api_key": UPSTREAM_KEY,
        "responses": True,
    }
    for name, (provider, model, _) in WAYS.items():
        deployment = {"name": f"{name}-0", "provider": provider, "model": model + suffix}
        cfg["models"][name] = {"deployments": [{**deployment, "price": {"input": 1, "output": 2}}]}
    return cfg


@pytest.fixture
async def proxy(make_proxy: ProxyFactory, upstream: Upstream, tmp_path: Path) -> Proxy:
    started: Proxy = await make_proxy(responses_config(upstream, tmp_path))
    return started


def gpt(proxy: Proxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.v1, api_key=CLIENT_KEY, max_retries=0)


def mock_usage(upstream: Upstream, index: int, output: int) -> Usage:
    """The usage the mock reported for the index-th request it got, by its formula."""
    received = upstream.state.requests[index]
    if received.path == "/v1/responses":
        return Usage(prompt_tokens(received.body), output)
    return Usage(chat_prompt_tokens(received.body["messages"], received.body.get("system")), output)


@pytest.mark.parametrize("model", list(WAYS))
async def test_stream_and_create_agree_in_the_api_event_order_with_exact_usage(
    proxy: Proxy, upstream: Upstream, model: str
) -> None:
    async with gpt(proxy) as client:
        whole = await client.responses.create(
            model=model, input="hello there", instructions="Be brief."
        )
        async with client.responses.stream(
            model=model, input="hello there", instructions="Be brief."
        ) as stream:
            events = [event async for event in stream]
            final = await stream.get_final_response()
    assert [e.type for e in events] == TEXT_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert whole.output_text == final.output_text == "".join(WORDS[:5])
    assert {r.path for r in upstream.state.requests} == {WAYS[model][2]}
    usage = mock_usage(upstream, 0, 5)
    for response in (whole, final):
        assert response.usage is not None
        assert (response.usage.input_tokens, response.usage.output_tokens) == (
            usage.prompt_tokens,
            5,
        )
        assert response.usage.total_tokens == usage.total_tokens
    records = await wait_records(proxy, 2)
    assert {r.endpoint for r in records} == {"responses"}
    assert sorted(r.stream for r in records) == [False, True]
    for record in records:
        assert (record.prompt_tokens, record.completion_tokens) == (usage.prompt_tokens, 5)
        assert record.cost_nanos == pricing.cost_nanos(PRICE, usage)


@pytest.mark.parametrize("model", list(WAYS))
@pytest.mark.parametrize("stream", [False, True])
async def test_function_tools_call_back_as_function_call_items(
    proxy: Proxy, upstream: Upstream, model: str, stream: bool
) -> None:
    async with gpt(proxy) as client:
        if stream:
            async with client.responses.stream(model=model, input="find it", tools=[FUNCTION]) as s:
                kinds = [event.type async for event in s]
                response = await s.get_final_response()
            assert kinds[2] == "response.output_item.added"
            assert "response.function_call_arguments.delta" in kinds
            assert kinds[-3:] == [
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        else:
            response = await client.responses.create(model=model, input="find it", tools=[FUNCTION])
    (call,) = response.output
    assert isinstance(call, ResponseFunctionToolCall)
    assert call.name == "lookup" and json.loads(call.arguments) == {"query": "mock value"}
    # Round trip: the output goes back in the next request, in the upstream's own form.
    async with gpt(proxy) as client:
        answer = await client.responses.create(
            model=model,
            input=[
                {"role": "user", "content": "find it"},
                {
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": "lookup",
                    "arguments": call.arguments,
                },
                {"type": "function_call_output", "call_id": call.call_id, "output": "found: 42"},
            ],
        )
    assert answer.output_text == "".join(WORDS[:5])
    assert "found: 42" in str(upstream.state.requests[-1].body)


async def test_reasoning_tokens_are_reported_and_recorded(
    make_proxy: ProxyFactory, upstream: Upstream, tmp_path: Path
) -> None:
    proxy = await make_proxy(responses_config(upstream, tmp_path, "+tokens=4+reasoning=3"))
    async with gpt(proxy) as client:
        native = await client.responses.create(model="resp-native", input="think")
        chat = await client.responses.create(model="resp-chat", input="think")
    assert [item.type for item in native.output] == ["reasoning", "message"]
    for response in (native, chat):
        assert response.usage is not None
        assert response.usage.output_tokens == 7
        assert response.usage.output_tokens_details.reasoning_tokens == 3
    records = await wait_records(proxy, 2)
    assert [(r.completion_tokens, r.reasoning_tokens) for r in records] == [(7, 3), (7, 3)]


async def test_store_and_previous_response_id(proxy: Proxy, upstream: Upstream) -> None:
    async with gpt(proxy) as client:
        stored = await client.responses.create(model="resp-native", input="hi", store=True)
        assert upstream.state.requests[-1].body["store"] is True  # passed through
        follow = await client.responses.create(
            model="resp-native", input="more", previous_response_id=stored.id
        )
        assert upstream.state.requests[-1].body["previous_response_id"] == stored.id
        assert follow.output_text
        for model in ("resp-chat", "resp-claude"):
            for fields in ({"store": True}, {"previous_response_id": stored.id}):
                with pytest.raises(openai.BadRequestError) as info:
                    await client.responses.create(model=model, input="hi", **fields)
                assert "keeps no conversation content" in info.value.message
    assert len(upstream.state.requests) == 2  # refusals never reach an upstream


@pytest.mark.parametrize("model", list(WAYS))
async def test_a_stream_cut_off_upstream_ends_with_response_failed(
    make_proxy: ProxyFactory, upstream: Upstream, tmp_path: Path, model: str
) -> None:
    proxy = await make_proxy(responses_config(upstream, tmp_path, "+tokens=6+drop"))
    async with gpt(proxy) as client:
        stream = await client.responses.create(model=model, input="hi", stream=True)
        events = [event async for event in stream]
    assert events[0].type == "response.created"
    assert events[-1].type == "response.failed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].response.error is not None
    (record,) = await wait_records(proxy, 1)
    assert record.outcome == "stream_error"
    assert record.completion_tokens == 3  # the deltas that reached the client


async def test_a_translated_stream_without_upstream_usage_tells_the_client_the_recorded_usage(
    make_proxy: ProxyFactory, upstream: Upstream, tmp_path: Path
) -> None:
    proxy = await make_proxy(responses_config(upstream, tmp_path, "+tokens=5+nousage"))
    async with (
        gpt(proxy) as client,
        client.responses.stream(model="resp-chat", input="hello there") as stream,
    ):
        final = await stream.get_final_response()
    (record,) = await wait_records(proxy, 1)
    assert record.usage_source == "estimated" and record.completion_tokens == 5
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (
        record.prompt_tokens,
        record.completion_tokens,
    )


async def test_invalid_bodies_are_400s_in_openai_shape(proxy: Proxy) -> None:
    for body, param in (
        ({"model": "resp-chat"}, "input"),
        ({"model": "resp-chat", "input": 5}, "input"),
        ({"model": "resp-chat", "input": "hi", "tools": [{"type": "web_search"}]}, "tools[0]"),
    ):
        resp = await proxy.post("/v1/responses", body)
        assert resp.status == 400
        error = (await resp.json())["error"]
        assert error["param"] == param and error["type"] == "invalid_request_error"
