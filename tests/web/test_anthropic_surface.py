"""/v1/messages with the official anthropic SDK: pass-through and translated both ways."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import CLIENT_KEY, UPSTREAM_KEY, Proxy, ProxyFactory, Upstream

TOOLS_ANTHROPIC = [
    {
        "name": "lookup",
        "description": "Look something up",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
]
TOOLS_OPENAI = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look something up",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
            },
        },
    }
]


def claude(proxy: Proxy, key: str = CLIENT_KEY) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=proxy.url, api_key=key, max_retries=0)


def gpt(proxy: Proxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.v1, api_key=CLIENT_KEY, max_retries=0)


@pytest.mark.parametrize("model", ["claude-test", "gpt-test"])  # pass-through, translated
async def test_anthropic_sdk_create_and_stream_agree(proxy: Proxy, model: str) -> None:
    async with claude(proxy) as client:
        message = await client.messages.create(
            model=model,
            max_tokens=100,
            system="Be brief.",
            messages=[{"role": "user", "content": "hello"}],
        )
        async with client.messages.stream(
            model=model,
            max_tokens=100,
            system="Be brief.",
            messages=[{"role": "user", "content": "hello"}],
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
    assert message.content[0].type == "text"
    assert message.content[0].text and message.content[0].text == text
    assert message.stop_reason == "end_turn" and final.stop_reason == "end_turn"
    assert message.usage.output_tokens == final.usage.output_tokens > 0
    assert message.usage.input_tokens > 0


async def test_anthropic_upstream_receives_translated_request_with_provider_key(
    proxy: Proxy, upstream: Upstream
) -> None:
    async with gpt(proxy) as client:
        await client.chat.completions.create(
            model="claude-test",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hello"},
            ],
        )
    (received,) = upstream.state.requests
    assert received.path == "/v1/messages"
    assert received.headers["x-api-key"] == UPSTREAM_KEY
    assert "anthropic-version" in received.headers
    assert CLIENT_KEY not in str(received.headers)
    assert received.body["model"] == "mock-claude"
    assert received.body["system"] == "Be brief."
    assert received.body["messages"] == [{"role": "user", "content": "hello"}]
    assert received.body["max_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_sdk_to_anthropic_upstream_with_tool_call(proxy: Proxy, stream: bool) -> None:
    kwargs: dict[str, Any] = {
        "model": "claude-test",
        "messages": [{"role": "user", "content": "find cats"}],
        "tools": TOOLS_OPENAI,
    }
    async with gpt(proxy) as client:
        if not stream:
            reply = await client.chat.completions.create(**kwargs)
            choice = reply.choices[0]
            calls = choice.message.tool_calls
            finish = choice.finish_reason
            usage = reply.usage
        else:
            chunks = [
                c
                async for c in await client.chat.completions.create(
                    **kwargs, stream=True, stream_options={"include_usage": True}
                )
            ]
            finish = next(
                c.choices[0].finish_reason
                for c in chunks
                if c.choices and c.choices[0].finish_reason
            )
            args = "".join(
                tc.function.arguments or ""
                for c in chunks
                if c.choices
                for tc in (c.choices[0].delta.tool_calls or [])
                if tc.function
            )
            names = [
                tc.function.name
                for c in chunks
                if c.choices
                for tc in (c.choices[0].delta.tool_calls or [])
                if tc.function and tc.function.name
            ]
            usage = chunks[-1].usage
    if not stream:
        assert calls and calls[0].function.name == "lookup"
        args = calls[0].function.arguments
    else:
        assert names == ["lookup"]
    assert finish == "tool_calls"
    assert '"query"' in args
    assert usage is not None and usage.completion_tokens > 0 and usage.prompt_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_sdk_to_openai_upstream_with_tool_call(proxy: Proxy, stream: bool) -> None:
    kwargs: dict[str, Any] = {
        "model": "gpt-test",
        "max_tokens": 200,
        "system": "Use tools.",
        "messages": [{"role": "user", "content": "find cats"}],
        "tools": TOOLS_ANTHROPIC,
    }
    async with claude(proxy) as client:
        if stream:
            async with client.messages.stream(**kwargs) as s:
                message = await s.get_final_message()
        else:
            message = await client.messages.create(**kwargs)
    tool = next(b for b in message.content if b.type == "tool_use")
    assert tool.name == "lookup"
    assert tool.input == {"query": "mock value"}
    assert message.stop_reason == "tool_use"
    assert message.usage.output_tokens > 0


async def test_messages_errors_are_in_anthropic_shape(proxy: Proxy) -> None:
    async with claude(proxy) as client:
        with pytest.raises(anthropic.NotFoundError) as missing:
            await client.messages.create(
                model="nope", max_tokens=10, messages=[{"role": "user", "content": "x"}]
            )
        with pytest.raises(anthropic.BadRequestError) as bad:
            await client.messages.create(
                model="claude-test",
                max_tokens=0,
                messages=[{"role": "user", "content": "x"}],
            )
    assert missing.value.body == {
        "type": "error",
        "error": {
            "type": "not_found_error",
            "message": missing.value.body["error"]["message"],
        },  # type: ignore[index]
    }
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    async with claude(proxy, key="wrong") as client:
        with pytest.raises(anthropic.AuthenticationError) as denied:
            await client.messages.create(
                model="claude-test",
                max_tokens=10,
                messages=[{"role": "user", "content": "x"}],
            )
    assert denied.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


async def test_anthropic_stream_failure_is_an_error_event(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["models"]["claude-drop"] = {
        "deployments": [{"provider": "mock-anthropic", "model": "mock-claude+tokens=10+drop"}]
    }
    proxy = await make_proxy(proxy_config)
    async with claude(proxy) as client:
        with pytest.raises(anthropic.APIError):
            async with client.messages.stream(
                model="claude-drop",
                max_tokens=100,
                messages=[{"role": "user", "content": "x"}],
            ) as s:
                async for _ in s.text_stream:
                    pass
