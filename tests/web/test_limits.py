"""Per-key limits end to end: exact at the boundary with a controllable clock."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import CLIENT_KEY, ProxyFactory, wait_records

MESSAGES = [{"role": "user", "content": "hi"}]
# max_tokens: a call reserves its prompt estimate and max_tokens against tokens/min and
# budgets (the mock answers with 12 tokens).
BODY = {"model": "gpt-test", "messages": MESSAGES, "max_tokens": 12}


def limited(cfg: dict[str, Any], **limits: Any) -> dict[str, Any]:
    cfg["keys"] = [{"name": "test", "key": CLIENT_KEY, "user": "alice", **limits}]
    return cfg


async def test_requests_per_minute_exact_at_the_boundary(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    now = [5000.0]
    proxy = await make_proxy(limited(proxy_config, rpm=3), clock=lambda: now[0])
    for i in range(3):
        async with await proxy.post("/v1/chat/completions", BODY) as r:
            assert r.status == 200
            assert r.headers["x-ratelimit-limit-requests"] == "3"
            assert r.headers["x-ratelimit-remaining-requests"] == str(2 - i)
    now[0] += 30
    async with await proxy.post("/v1/chat/completions", BODY) as r:
        assert r.status == 429
        body = await r.json()
        assert body["error"]["type"] == "rate_limit_error"
        assert body["error"]["code"] == "rate_limit_exceeded"
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
        assert r.headers["Retry-After"] == "30"
        assert r.headers["x-ratelimit-reset-requests"] == "30s"
    now[0] += 30  # the first three leave the window
    async with await proxy.post("/v1/chat/completions", BODY) as r:
        assert r.status == 200
    records = await wait_records(proxy, 5)
    assert [r.outcome for r in records].count("rate_limited") == 1


async def test_tokens_per_minute_counts_the_prompt_estimate(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(limited(proxy_config, tpm=60), clock=lambda: 100.0)
    statuses = []
    for _ in range(4):
        async with await proxy.post("/v1/chat/completions", BODY) as r:
            statuses.append(r.status)
            if r.status == 200:
                assert int(r.headers["x-ratelimit-remaining-tokens"]) < 60
    # Each call settles at its real usage (prompt + 12 completion tokens), so the window
    # fills before the fourth call.
    assert statuses[0] == 200 and 429 in statuses


async def test_concurrent_streams_are_capped(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["models"]["slow"] = {
        "deployments": [{"provider": "mock-openai", "model": "mock+tokens=20+delay=50"}]
    }
    proxy = await make_proxy(limited(proxy_config, max_concurrent=1))
    stream = {"model": "slow", "messages": MESSAGES, "stream": True}
    first = await proxy.post("/v1/chat/completions", stream)
    assert first.status == 200
    async with await proxy.post("/v1/chat/completions", stream) as second:
        assert second.status == 429
    await first.read()
    first.release()
    await wait_records(proxy, 2)
    async with await proxy.post("/v1/chat/completions", stream) as third:
        assert third.status == 200
        await third.read()


async def test_budget_cut_off_is_insufficient_quota(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    # $2.5/M in, $10/M out. A call costs 7 x 2.5 + 12 x 10 = 137.5 micro-dollars (the mock's
    # counts) and reserves its prompt's ceiling (its request bytes) and 12 output tokens; the
    # budget leaves room for two calls and the reservation of a third, not for a third.
    cost = 137_500
    reserved = len(json.dumps(BODY)) * 2_500 + 12 * 10_000
    budget = (2 * cost + reserved - cost // 2) / 1e9
    proxy = await make_proxy(limited(proxy_config, budget_day_usd=budget))
    statuses = []
    for _ in range(3):
        async with await proxy.post("/v1/chat/completions", BODY) as r:
            statuses.append(r.status)
            if r.status == 429:
                body = await r.json()
                assert body["error"]["code"] == "insufficient_quota"
                assert body["error"]["type"] == "insufficient_quota"
    assert statuses == [200, 200, 429]


async def test_a_key_limited_to_some_models_gets_403_for_others(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(limited(proxy_config, models=["claude-test"]))
    async with await proxy.post("/v1/chat/completions", BODY) as r:
        assert r.status == 403
        assert (await r.json())["error"]["code"] == "permission_denied"
