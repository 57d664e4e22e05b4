"""Failover across deployments with the mock's fault modes; cool-down and probing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Proxy, ProxyFactory, Upstream, add_model, wait_records

MESSAGES = [{"role": "user", "content": "hi"}]


def models_called(upstream: Upstream) -> list[str]:
    return [r.body["model"] for r in upstream.state.requests]


@pytest.mark.parametrize("fault", ["fail500", "fail429", "hang", "reset", "fail503"])
@pytest.mark.parametrize("stream", [False, True])
async def test_retryable_failures_are_served_by_the_next_deployment(
    make_proxy: ProxyFactory,
    proxy_config: dict[str, Any],
    upstream: Upstream,
    fault: str,
    stream: bool,
) -> None:
    proxy_config["providers"]["mock-openai"]["timeouts"] = {"first_byte": 0.3}
    proxy = await make_proxy(add_model(proxy_config, "m", f"a+{fault}", "b"))
    body = {"model": "m", "messages": MESSAGES, "stream": stream}
    async with await proxy.post("/v1/chat/completions", body) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["x-nitroproxy-attempts"] == "2"
        assert resp.headers["x-nitroproxy-deployment"] == "m-1"
        await resp.read()
    assert models_called(upstream) == [f"a+{fault}", "b"]


@pytest.mark.parametrize("fault", ["drop", "garbage"])
@pytest.mark.parametrize(
    ("path", "provider", "model_field"),
    [
        ("/v1/chat/completions", "mock-openai", {"messages": MESSAGES}),
        ("/v1/messages", "mock-anthropic", {"messages": MESSAGES, "max_tokens": 16}),
    ],
)
async def test_an_answer_that_breaks_after_its_headers_fails_over_when_not_streamed(
    make_proxy: ProxyFactory,
    proxy_config: dict[str, Any],
    upstream: Upstream,
    fault: str,
    path: str,
    provider: str,
    model_field: dict[str, Any],
) -> None:
    # The upstream's status line and headers arrived, then the body broke off (drop) or was
    # not JSON (garbage): nothing reached the client yet, so the next deployment answers.
    proxy = await make_proxy(add_model(proxy_config, "m", f"a+{fault}", "b", provider=provider))
    async with await proxy.post(path, {"model": "m", **model_field}) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["x-nitroproxy-attempts"] == "2"
        assert resp.headers["x-nitroproxy-deployment"] == "m-1"
        answer = await resp.json()
    assert answer["model"] == "b"
    assert models_called(upstream) == [f"a+{fault}", "b"]
    (record,) = await wait_records(proxy, 1)
    assert (record.status, record.outcome, record.attempts) == (200, "ok", 2)


async def test_client_errors_are_returned_and_the_next_deployment_never_called(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], upstream: Upstream
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "m", "a+fail400", "b"))
    async with await proxy.post("/v1/chat/completions", {"model": "m", "messages": MESSAGES}) as r:
        assert r.status == 400
    assert models_called(upstream) == ["a+fail400"]


async def test_failing_deployment_cools_down_then_is_probed_again(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], upstream: Upstream
) -> None:
    now = [1000.0]
    proxy_config["routing"] = {"failure_threshold": 2, "base_cooldown": 10}
    proxy = await make_proxy(add_model(proxy_config, "m", "a", "b"), clock=lambda: now[0])
    upstream.state.enqueue_faults("a", ["fail500"] * 2)

    async def call() -> str:
        async with await proxy.post(
            "/v1/chat/completions", {"model": "m", "messages": MESSAGES}
        ) as r:
            assert r.status == 200
            return r.headers["x-nitroproxy-deployment"]

    assert [await call(), await call()] == ["m-1", "m-1"]  # a failed twice: cool-down
    upstream.state.reset()
    assert await call() == "m-1"
    assert models_called(upstream) == ["b"]  # a is skipped while cooling down
    now[0] += 11  # the cool-down ends: a is probed, succeeds and is used again
    assert await call() == "m-0"
    assert await call() == "m-0"


async def test_all_deployments_failing_returns_the_last_error(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "m", "a+fail500", "b+fail502"))
    async with await proxy.post("/v1/chat/completions", {"model": "m", "messages": MESSAGES}) as r:
        assert r.status == 502
        assert r.headers["x-request-id"]


async def test_max_attempts_bounds_the_tries(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], upstream: Upstream
) -> None:
    proxy_config["routing"] = {"max_attempts": 2}
    proxy = await make_proxy(add_model(proxy_config, "m", "a+fail500", "b+fail500", "c"))
    async with await proxy.post("/v1/chat/completions", {"model": "m", "messages": MESSAGES}) as r:
        assert r.status == 500
    assert models_called(upstream) == ["a+fail500", "b+fail500"]


async def test_provider_object_only_and_order(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], upstream: Upstream
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "m", "a", "b", "c"))
    body = {"model": "m", "messages": MESSAGES, "provider": {"order": ["m-2", "m-0"]}}
    async with await proxy.post("/v1/chat/completions", body) as r:
        assert r.headers["x-nitroproxy-deployment"] == "m-2"
    assert "provider" not in upstream.state.requests[0].body  # routing hints stay with us
    body = {"model": "m", "messages": MESSAGES, "provider": {"only": ["nobody"]}}
    async with await proxy.post("/v1/chat/completions", body) as r:
        assert r.status == 400
        assert "provider.only" in (await r.json())["error"]["message"]


async def test_floor_suffix_picks_the_cheapest(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    add_model(proxy_config, "m", "pricey", "cheap")
    proxy_config["models"]["m"]["deployments"][0]["price"] = {"input": 10, "output": 30}
    proxy_config["models"]["m"]["deployments"][1]["price"] = {
        "input": 0.1,
        "output": 0.2,
    }
    proxy = await make_proxy(proxy_config)
    for model, expected in [("m", "m-0"), ("m:floor", "m-1")]:
        async with await proxy.post(
            "/v1/chat/completions", {"model": model, "messages": MESSAGES}
        ) as r:
            assert r.status == 200
            assert r.headers["x-nitroproxy-deployment"] == expected


async def test_nitro_suffix_follows_measured_throughput(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], upstream: Upstream
) -> None:
    proxy_config["routing"] = {"min_samples": 1}
    proxy = await make_proxy(
        add_model(proxy_config, "m", "slow+tokens=6+delay=60", "fast+tokens=6")
    )
    proxy_obj: Proxy = proxy
    body = {
        "model": "m",
        "messages": MESSAGES,
        "stream": True,
        "provider": {"order": ["m-0"]},
    }
    async with await proxy_obj.post("/v1/chat/completions", body) as r:
        await r.read()
    body["provider"] = {"order": ["m-1"]}
    async with await proxy_obj.post("/v1/chat/completions", body) as r:
        await r.read()
    async with await proxy_obj.post(
        "/v1/chat/completions", {**body, "model": "m:nitro", "provider": {}}
    ) as r:
        await r.read()
        assert r.headers["x-nitroproxy-deployment"] == "m-1"
