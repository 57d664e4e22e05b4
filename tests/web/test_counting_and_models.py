"""Token counting (Anthropic's count_tokens, OpenAI's input_tokens), the header allow-list,
``GET /`` and ``HEAD /``, and /v1/models in both APIs' shapes, with the official SDKs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from nitroproxy import config, data
from nitroproxy.config import ConfigError
from nitroproxy.core import responses_wire, tokens
from nitroproxy.mock.content import chat_prompt_tokens
from nitroproxy.mock.responses_routes import prompt_tokens
from tests.conftest import CLIENT_KEY, Proxy, ProxyFactory, Upstream, base_config, wait_records
from tests.web.test_responses_api import responses_config

MESSAGES: list[Any] = [{"role": "user", "content": "how many tokens is this"}]


@pytest.fixture
async def proxy(make_proxy: ProxyFactory, upstream: Upstream, tmp_path: Path) -> Proxy:
    started: Proxy = await make_proxy(responses_config(upstream, tmp_path))
    return started


def claude(proxy: Proxy) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=proxy.url, api_key=CLIENT_KEY, max_retries=0)


def gpt(proxy: Proxy) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.v1, api_key=CLIENT_KEY, max_retries=0)


async def assert_unbilled(proxy: Proxy, count: int, endpoint: str) -> None:
    records = await wait_records(proxy, count)
    assert {r.endpoint for r in records} == {endpoint}
    assert all(r.cost_nanos == 0 and r.prompt_tokens == r.completion_tokens == 0 for r in records)
    assert {(r.usage_source, r.outcome) for r in records} == {("none", "ok")}


async def test_count_tokens_goes_to_anthropic_and_is_counted_locally_elsewhere(
    proxy: Proxy, upstream: Upstream
) -> None:
    async with claude(proxy) as client:
        upstream_count = await client.messages.count_tokens(
            model="claude-test", system="Be brief.", messages=MESSAGES
        )
        beta = await client.beta.messages.count_tokens(model="claude-test", messages=MESSAGES)
        raw = await client.messages.with_raw_response.count_tokens(
            model="resp-chat", messages=MESSAGES
        )
    assert upstream_count.input_tokens == chat_prompt_tokens(MESSAGES, "Be brief.")
    assert beta.input_tokens == chat_prompt_tokens(MESSAGES)
    local = await raw.parse()
    assert raw.headers["x-nitroproxy-token-count"] == "estimate"
    enc = data.encoding_for_model("mock-gpt+tokens=5")
    assert local.input_tokens == tokens.count_anthropic_prompt(
        enc, {"model": "resp-chat", "messages": MESSAGES}
    )
    # Only count_tokens, never a generating route; the beta one came with ?beta=true.
    assert [r.path for r in upstream.state.requests] == ["/v1/messages/count_tokens"] * 2
    assert "token-counting-2024-11-01" in upstream.state.requests[1].headers["anthropic-beta"]
    await assert_unbilled(proxy, 3, "messages.count_tokens")


async def test_count_tokens_falls_back_to_a_local_count_when_the_upstream_fails(
    make_proxy: ProxyFactory, upstream: Upstream, tmp_path: Path
) -> None:
    cfg = base_config(upstream.url, tmp_path)
    cfg["models"]["claude-test"]["deployments"][0]["model"] = "mock-claude+fail503"
    proxy = await make_proxy(cfg)
    async with claude(proxy) as client:
        raw = await client.messages.with_raw_response.count_tokens(
            model="claude-test", messages=MESSAGES
        )
    assert raw.headers["x-nitroproxy-token-count"] == "estimate"
    assert (await raw.parse()).input_tokens > 0
    assert [r.path for r in upstream.state.requests] == ["/v1/messages/count_tokens"]
    await assert_unbilled(proxy, 1, "messages.count_tokens")


async def test_responses_input_tokens_three_ways(proxy: Proxy, upstream: Upstream) -> None:
    body = {"input": "how many tokens is this", "instructions": "Be brief."}
    async with gpt(proxy) as client:
        native = await client.responses.input_tokens.count(model="resp-native", **body)
        claude_count = await client.responses.input_tokens.count(model="resp-claude", **body)
        raw = await client.responses.input_tokens.with_raw_response.count(model="resp-chat", **body)
    assert native.input_tokens == prompt_tokens(body)
    assert claude_count.input_tokens == chat_prompt_tokens(MESSAGES, "Be brief.")
    assert raw.headers["x-nitroproxy-token-count"] == "estimate"
    enc = data.encoding_for_model("mock-gpt+tokens=5")
    assert raw.parse().input_tokens == tokens.count_chat_prompt(enc, responses_wire.chat_view(body))
    assert [r.path for r in upstream.state.requests] == [
        "/v1/responses/input_tokens",
        "/v1/messages/count_tokens",
    ]
    await assert_unbilled(proxy, 3, "responses.input_tokens")


async def test_anthropic_headers_follow_the_allow_list_and_only_to_anthropic(
    make_proxy: ProxyFactory, upstream: Upstream, tmp_path: Path
) -> None:
    cfg = base_config(upstream.url, tmp_path)
    cfg["providers"]["quiet-anthropic"] = {
        **cfg["providers"]["mock-anthropic"],
        "forward_headers": [],
        "anthropic_version": "2023-06-01",
    }
    cfg["models"]["quiet"] = {
        "deployments": [{"provider": "quiet-anthropic", "model": "mock-claude"}]
    }
    proxy = await make_proxy(cfg)
    betas = ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]
    async with claude(proxy) as client:
        for model in ("claude-test", "quiet", "gpt-test"):
            await client.beta.messages.create(
                model=model, max_tokens=5, messages=MESSAGES, betas=betas
            )
    forwarded, quiet, openai_bound = upstream.state.requests
    assert forwarded.headers["anthropic-beta"] == ",".join(betas)
    assert "anthropic-beta" not in quiet.headers
    assert quiet.headers["anthropic-version"] == "2023-06-01"  # the provider's own
    assert (
        "anthropic-beta" not in openai_bound.headers and openai_bound.path == "/v1/chat/completions"
    )


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        (
            {"kind": "anthropic", "forward_headers": ["authorization"]},
            "cannot forward authorization",
        ),
        (
            {"kind": "openai", "forward_headers": ["anthropic-beta"]},
            "cannot forward anthropic-beta",
        ),
        ({"kind": "anthropic", "responses": True}, "only an openai-kind provider"),
    ],
)
def test_header_and_responses_settings_are_checked_at_startup(
    provider: dict[str, Any], message: str, tmp_path: Path
) -> None:
    cfg = base_config("http://127.0.0.1:1", tmp_path)
    cfg["providers"]["mock-openai"].update(provider)
    with pytest.raises(ConfigError, match=message):
        config.parse(cfg)


def test_openai_itself_has_the_responses_api_by_default(tmp_path: Path) -> None:
    cfg = base_config("http://127.0.0.1:1", tmp_path)
    cfg["providers"]["real"] = {"kind": "openai", "base_url": "https://api.openai.com/v1"}
    settings = config.parse(cfg)
    assert settings.providers["real"].responses is True
    assert settings.providers["mock-openai"].responses is False
    assert settings.providers["mock-anthropic"].forward_headers == (
        "anthropic-beta",
        "anthropic-version",
    )


async def test_root_answers_get_and_head(proxy: Proxy) -> None:
    for method in ("GET", "HEAD"):
        resp = await proxy.session.request(method, proxy.url + "/")
        assert resp.status == 200
    assert (await (await proxy.session.get(proxy.url + "/")).json())["status"] == "ok"


async def test_models_in_both_shapes_and_one_by_one(proxy: Proxy) -> None:
    async with gpt(proxy) as client:
        listed = [m.id async for m in client.models.list()]
        one = await client.models.retrieve("gpt-test")
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("no-such-model")
    assert "gpt-test" in listed and one.id == "gpt-test" and one.object == "model"
    async with claude(proxy) as client:
        page = await client.models.list()
        info = await client.models.retrieve("claude-test")
        with pytest.raises(anthropic.NotFoundError) as info_error:
            await client.models.retrieve("no-such-model")
    assert [m.id for m in page.data] == listed
    assert info.id == "claude-test" and info.type == "model"
    assert info_error.value.body["type"] == "error"  # type: ignore[index]


async def test_counting_takes_no_tokens_or_budget_from_a_limited_key(
    make_proxy: ProxyFactory, upstream: Upstream, tmp_path: Path
) -> None:
    cfg = responses_config(upstream, tmp_path)
    cfg["keys"] = [
        {"name": "test", "key": CLIENT_KEY, "user": "alice", "tpm": 20, "budget_day_usd": 0.0001}
    ]
    proxy = await make_proxy(cfg)
    async with claude(proxy) as client:
        counts = await asyncio.gather(
            *(
                client.messages.count_tokens(model=m, messages=MESSAGES)
                for m in ["claude-test", "resp-chat"] * 7
            )
        )
    assert all(c.input_tokens > 0 for c in counts)  # 14 at once, as /context sends them
    await assert_unbilled(proxy, 14, "messages.count_tokens")
