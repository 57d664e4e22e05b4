"""Streaming: event by event, no buffering, disconnects, mid-stream failures."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import openai
import pytest
from aiohttp_sse_client import client as sse_client

from tests.conftest import CLIENT_KEY, Proxy, ProxyFactory, Upstream, add_model

MESSAGES = [{"role": "user", "content": "stream please"}]


async def test_each_event_reaches_the_client_as_it_is_sent(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], upstream: Upstream
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "slow", "mock+tokens=4+delay=200"))
    arrivals: list[float] = []
    async with sse_client.EventSource(
        proxy.v1 + "/chat/completions",
        option={"method": "POST"},
        session=proxy.session,
        json={"model": "slow", "messages": MESSAGES, "stream": True},
        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
    ) as events:
        async for event in events:
            if event.data == "[DONE]":
                break
            if '"content":" ' in event.data:
                arrivals.append(time.monotonic())
    (log,) = upstream.state.streams
    assert len(arrivals) == 4
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(0.12 < gap < 0.5 for gap in gaps), gaps
    # The first token reached the client before the upstream had written the second one.
    assert arrivals[0] < log.token_times[1]


async def test_stream_headers(proxy: Proxy) -> None:
    body = {"model": "gpt-test", "messages": MESSAGES, "stream": True}
    async with await proxy.post("/v1/chat/completions", body) as resp:
        raw = await resp.read()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["Cache-Control"] == "no-cache"
        assert "x-request-id" in resp.headers
    assert raw.endswith(b"data: [DONE]\n\n")
    assert b"usage" not in raw  # the proxy's own usage request never shows


async def test_client_disconnect_closes_the_upstream_within_a_second(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], upstream: Upstream
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "slow", "mock+tokens=50+delay=100"))
    body = {"model": "slow", "messages": MESSAGES, "stream": True}
    async with await proxy.post("/v1/chat/completions", {**body, "model": "gpt-test"}):
        pass
    await asyncio.sleep(0.1)
    tasks_before = len(asyncio.all_tasks())
    resp = await proxy.post("/v1/chat/completions", body)
    await resp.content.readline()
    resp.close()  # the client goes away mid-stream
    hung_up = time.monotonic()
    await upstream.state.wait_disconnect(timeout=1.0)
    assert time.monotonic() - hung_up < 1.0
    assert upstream.state.streams[-1].outcome == "client_disconnected"
    await asyncio.sleep(0.1)
    assert upstream.state.active_streams == 0
    assert len(asyncio.all_tasks()) <= tasks_before  # nothing left behind


async def test_mid_stream_drop_ends_with_an_error_the_sdk_raises(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "flaky", "mock+tokens=10+drop"))
    async with openai.AsyncOpenAI(base_url=proxy.v1, api_key=CLIENT_KEY, max_retries=0) as client:
        stream = await client.chat.completions.create(model="flaky", messages=MESSAGES, stream=True)
        received = []
        with pytest.raises(openai.APIError, match=r"before it was complete|closed the connection"):
            async for chunk in stream:
                received.append(chunk)
    assert received  # some tokens arrived before the failure


async def test_garbage_stream_is_an_error_not_a_silent_truncation(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "junk", "mock+garbage"))
    async with openai.AsyncOpenAI(base_url=proxy.v1, api_key=CLIENT_KEY, max_retries=0) as client:
        stream = await client.chat.completions.create(model="junk", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError, match="malformed"):
            async for _ in stream:
                pass


async def test_keepalive_comments_while_the_first_token_is_slow(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["server"] = {"keepalive_interval": 0.2}
    proxy = await make_proxy(add_model(proxy_config, "sleepy", "mock+tokens=2+slowfirst"))
    body = {"model": "sleepy", "messages": MESSAGES, "stream": True}
    async with await proxy.post("/v1/chat/completions", body) as resp:
        raw = await resp.read()
    # The mock sends its role chunk at once, then waits 1.5 s for the first token.
    assert raw.count(b": keep-alive\n\n") >= 4
    assert raw.endswith(b"data: [DONE]\n\n")


async def test_stream_with_usage_requested_passes_the_usage_chunk(proxy: Proxy) -> None:
    async with openai.AsyncOpenAI(base_url=proxy.v1, api_key=CLIENT_KEY, max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="gpt-test",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
