"""Usage records: exact where the provider tells us, estimated where it does not, and one
record per request whatever happened."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import openai
import orjson
import pytest

from nitroproxy import data
from nitroproxy.core import tokens
from tests.conftest import (
    CLIENT_KEY,
    UPSTREAM_KEY,
    Proxy,
    ProxyFactory,
    Upstream,
    add_model,
    wait_records,
)

MESSAGES = [{"role": "user", "content": "count me exactly"}]
_VOLATILE = re.compile(rb'"(id|created)":("[^"]*"|\d+)')


async def test_non_stream_usage_is_the_providers(proxy: Proxy) -> None:
    async with await proxy.post(
        "/v1/chat/completions", {"model": "gpt-test", "messages": MESSAGES}
    ) as r:
        body = await r.json()
    (record,) = await wait_records(proxy, 1)
    usage = body["usage"]
    assert (record.prompt_tokens, record.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert record.usage_source == "provider"
    assert record.status == 200 and record.outcome == "ok"
    assert record.model == "gpt-test" and record.deployment == "primary"
    assert record.provider == "mock-openai" and record.upstream_model == "mock-gpt"
    assert record.key_id == "cfg:test" and record.user_id == "alice"
    assert record.endpoint == "chat.completions" and record.stream is False
    assert record.attempts == 1
    # $2.5/M in, $10/M out
    expected = round(usage["prompt_tokens"] * 2500 + usage["completion_tokens"] * 10000)
    assert record.cost_nanos == expected
    assert record.client_ip == "127.0.0.0/24"


@pytest.mark.parametrize("include_usage", [False, True])
async def test_stream_usage_is_exact_and_client_bytes_unchanged(
    proxy: Proxy, upstream: Upstream, include_usage: bool
) -> None:
    body: dict[str, Any] = {"model": "gpt-test", "messages": MESSAGES, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    async with await proxy.post("/v1/chat/completions", body) as r:
        via_proxy = await r.read()
    (record,) = await wait_records(proxy, 1)
    sent = upstream.state.requests[0].body
    assert sent["stream_options"] == {"include_usage": True}  # the proxy always asks
    # The same request straight to the upstream, as the client would have sent it.
    direct_body = {**body, "model": "mock-gpt"}
    async with proxy.session.post(
        upstream.url + "/v1/chat/completions",
        json=direct_body,
        headers={"Authorization": f"Bearer {UPSTREAM_KEY}"},
    ) as r:
        direct = await r.read()
    assert _VOLATILE.sub(b"", via_proxy) == _VOLATILE.sub(b"", direct)
    assert record.usage_source == "provider"
    assert record.completion_tokens == 12
    assert record.ttft_ms is not None and record.ttft_ms > 0


async def test_no_provider_usage_is_counted_by_tiktoken_and_marked_estimated(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "quiet", "mock+nousage+tokens=30"))
    body = {"model": "quiet", "messages": MESSAGES, "stream": True}
    async with openai.AsyncOpenAI(base_url=proxy.v1, api_key=CLIENT_KEY, max_retries=0) as c:
        text = "".join(
            [
                ch.choices[0].delta.content or ""
                async for ch in await c.chat.completions.create(**body)
            ]
        )
        reply = await c.chat.completions.create(model="quiet", messages=MESSAGES)
    streamed, plain = await wait_records(proxy, 2)
    enc = data.encoding_for_model("mock+nousage+tokens=30")
    assert streamed.usage_source == plain.usage_source == "estimated"
    assert streamed.completion_tokens == tokens.count_text(enc, text) == 30
    assert plain.completion_tokens == tokens.count_text(enc, reply.choices[0].message.content or "")
    assert streamed.prompt_tokens == tokens.count_chat_prompt(enc, {"messages": MESSAGES}) > 0


async def test_client_disconnect_is_one_record_with_partial_counts(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], upstream: Upstream
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "slow", "mock+tokens=50+delay=50"))
    resp = await proxy.post(
        "/v1/chat/completions", {"model": "slow", "messages": MESSAGES, "stream": True}
    )
    seen = 0
    while seen < 5:
        line = await resp.content.readline()
        seen += line.startswith(b'data: {"id"') and b'"content":" ' in line
    resp.close()
    await upstream.state.wait_disconnect(timeout=2)
    (record,) = await wait_records(proxy, 1)
    assert record.outcome == "client_disconnected" and record.status == 499
    assert 5 <= record.completion_tokens < 50
    assert record.usage_source == "estimated"
    assert record.prompt_tokens > 0


async def test_upstream_drop_is_one_record_with_error_status(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "flaky", "mock+tokens=10+drop"))
    async with await proxy.post(
        "/v1/chat/completions", {"model": "flaky", "messages": MESSAGES, "stream": True}
    ) as r:
        raw = await r.read()
    assert b'"error"' in raw
    (record,) = await wait_records(proxy, 1)
    assert record.outcome == "stream_error" and record.status == 502
    assert record.completion_tokens == 5 and record.usage_source == "estimated"


async def test_errors_and_refusals_are_recorded_too(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "broken", "mock+fail500"))
    async with await proxy.post(
        "/v1/chat/completions", {"model": "broken", "messages": MESSAGES}
    ) as r:
        assert r.status == 500
    (record,) = await wait_records(proxy, 1)
    assert record.outcome == "upstream_error" and record.status == 500
    assert record.error_class == "upstream_500"
    assert record.completion_tokens == 0


async def test_anthropic_cache_tokens_are_priced_at_their_own_rate(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["models"]["cached"] = {
        "deployments": [
            {
                "provider": "mock-anthropic",
                "model": "mock-claude+cached=4",
                "price": {"input": 3, "output": 15, "cached_input": 0.3},
            }
        ]
    }
    proxy = await make_proxy(proxy_config)
    async with await proxy.post(
        "/v1/messages",
        {"model": "cached", "max_tokens": 50, "messages": MESSAGES},
        headers={"anthropic-version": "2023-06-01"},
    ) as r:
        body = orjson.loads(await r.read())
    (record,) = await wait_records(proxy, 1)
    assert record.cached_tokens == body["usage"]["cache_read_input_tokens"] == 4
    assert record.prompt_tokens == body["usage"]["input_tokens"] + 4
    uncached = record.prompt_tokens - 4
    assert record.cost_nanos == uncached * 3000 + 4 * 300 + record.completion_tokens * 15000


async def test_records_survive_shutdown(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["storage"]["flush_interval"] = 60  # only shutdown will flush
    proxy = await make_proxy(proxy_config)
    for _ in range(3):
        async with await proxy.post(
            "/v1/chat/completions", {"model": "gpt-test", "messages": MESSAGES}
        ):
            pass
    await asyncio.sleep(0.05)
    from nitroproxy.store.db import open_db
    from nitroproxy.store.usage import list_records
    from nitroproxy.web.appkeys import WRITER

    assert proxy.app[WRITER].queue_depth == 3
    await proxy.app[WRITER].close()
    conn = await open_db(proxy_config["storage"]["path"])
    try:
        assert len(await list_records(conn)) == 3
    finally:
        await conn.close()


async def test_a_body_that_breaks_off_is_recorded_as_the_error_the_client_got(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "cut", "mock+drop"))
    async with await proxy.post(
        "/v1/chat/completions", {"model": "cut", "messages": MESSAGES}
    ) as r:
        assert r.status == 502
    (record,) = await wait_records(proxy, 1)
    assert record.status == 502 and record.outcome == "upstream_error"
