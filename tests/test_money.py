"""Exact money on a real server: reservations hold budgets and concurrency under load, failed
attempts cost nothing, usage is always returned, delivered tokens are the billed tokens,
Anthropic's cache tiers are priced to the nano-dollar, and end users are attributed."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from nitroproxy.web.appkeys import GATEWAY
from tests.conftest import (
    ADMIN_KEY,
    CLIENT_KEY,
    Proxy,
    ProxyFactory,
    Upstream,
    add_model,
    wait_records,
)

MESSAGES = [{"role": "user", "content": "hi"}]
BUDGET_NANOS = 10_000_000  # $0.01


def keyed(cfg: dict[str, Any], **limits: Any) -> dict[str, Any]:
    cfg["keys"] = [{"name": "test", "key": CLIENT_KEY, "user": "alice", **limits}]
    return cfg


async def stream_text(proxy: Proxy, body: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """Status and every JSON event of a streamed chat call."""
    async with await proxy.post("/v1/chat/completions", {**body, "stream": True}) as r:
        raw = await r.read()
    events = [
        json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: {")
    ]
    return r.status, events


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(c["delta"].get("content") or "" for e in events for c in e.get("choices", []))


# -- reservations ---------------------------------------------------------------------------


async def test_50_concurrent_streams_never_pass_a_001_usd_budget(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    cfg = add_model(keyed(proxy_config, budget_day_usd=0.01), "slow", "mock+tokens=50+delay=20")
    cfg["models"]["slow"]["deployments"][0]["price"] = {"input": 2.5, "output": 10}
    proxy = await make_proxy(cfg)
    body = {"model": "slow", "messages": MESSAGES, "max_tokens": 50}
    results = await asyncio.gather(*(stream_text(proxy, body) for _ in range(50)))
    admitted = [events for status, events in results if status == 200]
    refused = [status for status, _ in results if status != 200]
    assert set(refused) == {429}
    # Each reserves 8 x 2.5 + 50 x 10 = 520 micro-dollars: at most 19 fit in $0.01.
    assert 1 <= len(admitted) <= 19
    records = await wait_records(proxy, 50)
    spent = sum(r.cost_nanos for r in records)
    assert spent <= BUDGET_NANOS  # the stated bound with max_tokens sent: zero overshoot
    assert spent == len(admitted) * (7 * 2_500 + 50 * 10_000)
    assert {r.outcome for r in records if r.cost_nanos == 0} == {"rate_limited"}


async def test_without_max_tokens_the_overshoot_stays_within_the_stated_bound(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    # The model reserves default_max_tokens = 20 output tokens, but the upstream writes 50:
    # each admitted stream may pass its reservation by 30 output tokens.
    cfg = add_model(keyed(proxy_config, budget_day_usd=0.001), "long", "mock+tokens=50+delay=20")
    cfg["models"]["long"]["default_max_tokens"] = 20
    proxy = await make_proxy(cfg)
    body = {"model": "long", "messages": MESSAGES}
    results = await asyncio.gather(*(stream_text(proxy, body) for _ in range(20)))
    admitted = sum(status == 200 for status, _ in results)
    records = await wait_records(proxy, 20)
    spent = sum(r.cost_nanos for r in records)
    excess_per_call = (50 - 20) * 2_000  # output price $2/M in add_model
    assert admitted >= 1
    assert spent <= 1_000_000 + admitted * excess_per_call


async def test_max_concurrent_holds_for_non_streamed_calls_too(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], upstream: Upstream
) -> None:
    cfg = add_model(keyed(proxy_config, max_concurrent=5), "slow", "mock+tokens=10+delay=30")
    proxy = await make_proxy(cfg)
    body = {"model": "slow", "messages": MESSAGES}

    async def call() -> int:
        async with await proxy.post("/v1/chat/completions", body) as r:
            return r.status

    statuses = await asyncio.gather(*(call() for _ in range(20)))
    assert statuses.count(200) == 5 and statuses.count(429) == 15
    assert upstream.state.peak_in_flight == 5
    await wait_records(proxy, 20)


# -- no charge for what no provider produced ------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "fault",
    ["fail500", "fail429", "fail503", "reset", "hang", "refused", "chain", "garbage", "drop"],
)
async def test_failed_attempts_cost_nothing_and_take_nothing_from_limits(
    fault: str, make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    cfg = keyed(proxy_config, budget_day_usd=1.0, tpm=100_000)
    cfg["providers"]["dead"] = {
        "kind": "openai",
        "base_url": f"http://127.0.0.1:{closed_port()}/v1",
    }
    cfg["providers"]["slow"] = {
        **cfg["providers"]["mock-openai"],
        "timeouts": {"first_byte": 0.3},
    }
    if fault == "refused":
        add_model(cfg, "m", "any", provider="dead")
    elif fault == "hang":
        add_model(cfg, "m", "mock+hang", provider="slow")
    elif fault == "chain":  # every attempt fails, each a different way
        add_model(cfg, "m", "mock+fail500", "mock+fail429", "mock+reset")
    else:
        add_model(cfg, "m", f"mock+{fault}")
    proxy = await make_proxy(cfg)
    async with await proxy.post("/v1/chat/completions", {"model": "m", "messages": MESSAGES}) as r:
        assert r.status >= 429
    (record,) = await wait_records(proxy, 1)
    assert (record.cost_nanos, record.prompt_tokens, record.completion_tokens) == (0, 0, 0)
    assert record.usage_source == "none" and record.error_class
    assert record.attempts == (3 if fault == "chain" else 1)
    await asyncio.sleep(0.05)  # settlement is spawned
    limiter = proxy.app[GATEWAY].limiter
    assert limiter.spent("key:cfg:test", record.ts) == (0.0, 0.0)
    assert limiter.reserved_nanos("key:cfg:test") == 0
    # TPM: the next call sees the whole window again.
    ok = {"model": "gpt-test", "messages": MESSAGES, "max_tokens": 12}
    async with await proxy.post("/v1/chat/completions", ok) as r:
        assert r.status == 200
        # Only this call's reservation is held: OpenAI's estimate (a token per four request
        # bytes) and its max_tokens.
        reserved = len(json.dumps(ok)) // 4 + 12
        assert int(r.headers["x-ratelimit-remaining-tokens"]) == 100_000 - reserved


# -- usage always returned -------------------------------------------------------------------


async def test_a_stream_that_asks_for_usage_gets_the_proxys_count_when_the_upstream_has_none(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "quiet", "mock+tokens=9+nousage"))
    async with openai.AsyncOpenAI(base_url=proxy.v1, api_key=CLIENT_KEY) as client:
        stream = await client.chat.completions.create(
            model="quiet",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1]
    assert usage_chunks[0].choices == []
    (record,) = await wait_records(proxy, 1)
    usage = usage_chunks[0].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        record.prompt_tokens,
        record.completion_tokens,
    )
    assert record.completion_tokens == 9 and record.usage_source == "estimated"


async def test_a_non_streamed_answer_without_usage_gets_one(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "quiet", "mock+tokens=9+nousage"))
    async with openai.AsyncOpenAI(base_url=proxy.v1, api_key=CLIENT_KEY) as client:
        reply = await client.chat.completions.create(model="quiet", messages=MESSAGES)
    (record,) = await wait_records(proxy, 1)
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        record.prompt_tokens,
        record.completion_tokens,
    )
    assert record.completion_tokens == 9


async def test_an_anthropic_client_gets_output_tokens_from_an_upstream_without_usage(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "quiet", "mock+tokens=9+nousage"))
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=CLIENT_KEY) as client:
        async with client.messages.stream(
            model="quiet", max_tokens=50, messages=MESSAGES
        ) as stream:
            final = await stream.get_final_message()
        message = await client.messages.create(model="quiet", max_tokens=50, messages=MESSAGES)
    streamed, plain = await wait_records(proxy, 2)
    assert final.usage.output_tokens == streamed.completion_tokens == 9
    assert message.usage.output_tokens == plain.completion_tokens == 9
    assert message.usage.input_tokens == plain.prompt_tokens


# -- nothing delivered is lost, nothing undelivered is billed --------------------------------


async def test_good_events_before_a_malformed_one_reach_the_client_and_are_billed(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "junk", "mock+garbage"))
    received: list[str] = []
    async with openai.AsyncOpenAI(base_url=proxy.v1, api_key=CLIENT_KEY, max_retries=0) as client:
        stream = await client.chat.completions.create(model="junk", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError, match="malformed"):
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")
    (record,) = await wait_records(proxy, 1)
    words = "".join(received).split()
    assert len(words) == 2  # the mock's two valid token events, before the garbage
    assert record.outcome == "stream_error" and record.completion_tokens == len(words)


async def test_a_client_that_leaves_is_billed_the_tokens_it_received(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], upstream: Upstream
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "slow", "mock+tokens=200+delay=40"))
    async with await proxy.post(
        "/v1/chat/completions", {"model": "slow", "messages": MESSAGES, "stream": True}
    ) as r:
        words = 0
        while words < 10:
            line = await r.content.readline()
            if line.startswith(b"data: {"):
                words += len(text_of([json.loads(line[6:])]).split())
        r.close()
    await upstream.state.wait_disconnect(timeout=3)
    (record,) = await wait_records(proxy, 1)
    assert record.outcome == "client_disconnected"
    assert record.completion_tokens == words


# -- provider accounting ---------------------------------------------------------------------


SONNET = {"input": 3, "output": 15, "cached_input": 0.3, "cache_write": 3.75, "cache_write_1h": 6}


async def test_anthropic_cache_tiers_are_priced_to_the_nano_dollar(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    upstream_model = "mock+tokens=20+cached=100+write5m=1000+write1h=2000"
    cfg = add_model(proxy_config, "sonnet", upstream_model, provider="mock-anthropic")
    cfg["models"]["sonnet"]["deployments"][0]["price"] = SONNET
    proxy = await make_proxy(cfg)
    long = [{"role": "user", "content": " ".join(["word"] * 150)}]  # 156 prompt tokens
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=CLIENT_KEY) as client:
        native = await client.messages.create(model="sonnet", max_tokens=50, messages=long)
    async with openai.AsyncOpenAI(base_url=proxy.v1, api_key=CLIENT_KEY) as client:
        translated = await client.chat.completions.create(model="sonnet", messages=long)
    first, second = await wait_records(proxy, 2)
    uncached = native.usage.input_tokens  # Anthropic's input_tokens: neither read nor written
    assert (uncached, native.usage.cache_read_input_tokens) == (56, 100)
    # Anthropic's published Sonnet prices per MTok: $3 input, $0.30 cache read, $3.75
    # 5-minute write, $6 1-hour write, $15 output; in nano-USD per token x1000.
    expected = uncached * 3_000 + 100 * 300 + 1000 * 3_750 + 2000 * 6_000 + 20 * 15_000
    assert first.cost_nanos == second.cost_nanos == expected
    assert (first.cached_tokens, first.cache_write_tokens, first.cache_write_1h_tokens) == (
        100,
        3000,
        2000,
    )
    assert native.usage.cache_creation is not None
    assert native.usage.cache_creation.ephemeral_1h_input_tokens == 2000
    # The OpenAI client sees Anthropic's usage in OpenAI's convention.
    assert translated.usage is not None
    assert translated.usage.prompt_tokens == uncached + 100 + 3000
    assert translated.usage.prompt_tokens_details.cached_tokens == 100


async def test_openai_cached_and_reasoning_tokens_are_kept_and_priced(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "o", "mock+tokens=10+cached=4+reasoning=6"))
    cfg_price = proxy.settings.models["o"].deployments[0].price  # input 1, output 2
    async with await proxy.post("/v1/chat/completions", {"model": "o", "messages": MESSAGES}) as r:
        usage = (await r.json())["usage"]
    (record,) = await wait_records(proxy, 1)
    assert (record.cached_tokens, record.reasoning_tokens) == (4, 6)
    assert record.completion_tokens == usage["completion_tokens"] == 16
    uncached = record.prompt_tokens - 4
    assert cfg_price.cached_input is None  # cached tokens then cost the input price
    assert record.cost_nanos == uncached * 1_000 + 4 * 1_000 + 16 * 2_000


# -- end users --------------------------------------------------------------------------------


async def test_end_users_are_pseudonymous_grouped_limited_exported_and_erased(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["end_users"] = {"rpm": 2}
    proxy = await make_proxy(proxy_config)
    canary = "end-user-canary@example.org"

    async def chat(user: str) -> int:
        body = {"model": "gpt-test", "messages": MESSAGES, "user": user}
        async with await proxy.post("/v1/chat/completions", body) as r:
            return r.status

    assert [await chat(canary) for _ in range(3)] == [200, 200, 429]  # per end user
    assert await chat("someone-else") == 200  # the key itself is not limited
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=CLIENT_KEY) as client:
        await client.messages.create(
            model="claude-test", max_tokens=20, messages=MESSAGES, metadata={"user_id": "ant-1"}
        )
    records = await wait_records(proxy, 5)
    tags = {r.end_user for r in records}
    assert all(t and t.startswith("eu_") for t in tags) and len(tags) == 3
    db = proxy.settings.storage.path
    for path in (Path(db), Path(db + "-wal")):
        if path.exists():
            assert canary.encode() not in path.read_bytes()
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with proxy.session.get(proxy.url + "/admin/usage?group_by=end_user", headers=admin) as r:
        rows = {row["group"]: row["requests"] for row in (await r.json())["rows"]}
    assert sorted(rows.values()) == [1, 1, 3]
    async with proxy.session.post(
        proxy.url + "/admin/end-users/export", json={"end_user": canary}, headers=admin
    ) as r:
        exported = await r.json()
    assert [rec["outcome"] for rec in exported["usage_records"]] == ["ok", "ok", "rate_limited"]
    before = sum(r.cost_nanos for r in records)
    async with proxy.session.post(
        proxy.url + "/admin/end-users/erase", json={"end_user": canary}, headers=admin
    ) as r:
        assert (await r.json())["usage_records_cleared"] == 3
    after = await wait_records(proxy, 5)
    assert sum(r.cost_nanos for r in after) == before  # billing unchanged
    assert len({r.end_user for r in after} - {None}) == 2
    async with proxy.session.post(
        proxy.url + "/admin/end-users/export", json={"end_user": canary}, headers=admin
    ) as r:
        assert (await r.json())["usage_records"] == []


async def test_an_end_user_that_is_not_a_string_is_a_400(proxy: Proxy) -> None:
    body = {"model": "gpt-test", "messages": MESSAGES, "user": {"id": 1}}
    async with await proxy.post("/v1/chat/completions", body) as r:
        assert r.status == 400
        assert (await r.json())["error"]["param"] == "user"


async def test_plain_mode_keeps_the_end_user_and_off_keeps_nothing(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["privacy"] = {"end_user": "plain"}
    plain = await make_proxy(proxy_config)
    async with await plain.post(
        "/v1/chat/completions", {"model": "gpt-test", "messages": MESSAGES, "user": "u-42"}
    ):
        pass
    (record,) = await wait_records(plain, 1)
    assert record.end_user == "u-42"
    report = orjson.loads(
        await (await plain.session.get(plain.url + "/privacy?format=json")).read()
    )
    usage = next(t for t in report["tables"] if t["table"] == "usage")
    assert "as the client sent it" in usage["end_user"]
