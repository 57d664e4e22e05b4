"""Every bad input and upstream failure: the right status, in the API's own shape."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.conftest import CLIENT_KEY, Proxy, ProxyFactory, add_model

MESSAGES = [{"role": "user", "content": "hi"}]


def assert_openai_error(body: dict[str, Any], error_type: str, code: str | None = None) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == error_type
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code


async def test_malformed_json_is_400(proxy: Proxy) -> None:
    async with proxy.session.post(
        proxy.v1 + "/chat/completions", data=b"{not json", headers=proxy.headers()
    ) as resp:
        assert resp.status == 400
        assert_openai_error(await resp.json(), "invalid_request_error")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": 7, "messages": MESSAGES}, "model"),
        ({"model": "gpt-test"}, "messages"),
        (
            {"model": "gpt-test", "messages": [{"role": "wizard", "content": "x"}]},
            "messages[0].role",
        ),
        ({"model": "gpt-test", "messages": MESSAGES, "stream": "yes"}, "stream"),
        ({"model": "gpt-test", "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
    ],
)
async def test_bad_fields_are_400_with_param(
    proxy: Proxy, body: dict[str, Any], param: str
) -> None:
    async with await proxy.post("/v1/chat/completions", body) as resp:
        assert resp.status == 400
        payload = await resp.json()
    assert_openai_error(payload, "invalid_request_error")
    assert payload["error"]["param"] == param


async def test_unknown_model_is_404_model_not_found(proxy: Proxy) -> None:
    async with await proxy.post("/v1/chat/completions", {"model": "x", "messages": MESSAGES}) as r:
        assert r.status == 404
        assert_openai_error(await r.json(), "invalid_request_error", "model_not_found")


async def test_body_over_the_limit_is_413(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["server"] = {"max_body_bytes": 2048}
    proxy = await make_proxy(proxy_config)
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "x" * 4096}]}
    async with await proxy.post("/v1/chat/completions", body) as resp:
        assert resp.status == 413
        assert_openai_error(await resp.json(), "invalid_request_error", "request_too_large")


async def test_wrong_method_is_405_and_unknown_route_404(proxy: Proxy) -> None:
    async with proxy.session.get(proxy.v1 + "/chat/completions", headers=proxy.headers()) as r:
        assert r.status == 405
        assert "POST" in r.headers["Allow"]
        assert_openai_error(await r.json(), "invalid_request_error", "method_not_allowed")
    async with proxy.session.get(proxy.v1 + "/nope", headers=proxy.headers()) as r:
        assert r.status == 404
        assert_openai_error(await r.json(), "invalid_request_error", "unknown_url")


async def test_upstream_4xx_and_5xx_pass_through_with_status_and_body(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    add_model(proxy_config, "bad", "mock+fail400")
    add_model(proxy_config, "broken", "mock+fail500")
    proxy = await make_proxy(proxy_config)
    async with openai.AsyncOpenAI(base_url=proxy.v1, api_key=CLIENT_KEY, max_retries=0) as c:
        with pytest.raises(openai.BadRequestError):
            await c.chat.completions.create(model="bad", messages=MESSAGES)
        with pytest.raises(openai.InternalServerError) as info:
            await c.chat.completions.create(model="broken", messages=MESSAGES)
    assert info.value.status_code == 500


async def test_upstream_429_passes_retry_after(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "busy", "mock+fail429+retry=7"))
    async with await proxy.post(
        "/v1/chat/completions", {"model": "busy", "messages": MESSAGES}
    ) as r:
        assert r.status == 429
        assert r.headers["Retry-After"] == "7"


async def test_hanging_upstream_is_504_and_reset_is_502(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["providers"]["mock-openai"]["timeouts"] = {"first_byte": 0.3}
    add_model(proxy_config, "hang", "mock+hang")
    add_model(proxy_config, "reset", "mock+reset")
    proxy = await make_proxy(proxy_config)
    async with openai.AsyncOpenAI(base_url=proxy.v1, api_key=CLIENT_KEY, max_retries=0) as c:
        with pytest.raises(openai.APIStatusError) as hung:
            await c.chat.completions.create(model="hang", messages=MESSAGES)
        with pytest.raises(openai.APIStatusError) as reset:
            await c.chat.completions.create(model="reset", messages=MESSAGES)
    assert hung.value.status_code == 504
    assert reset.value.status_code == 502


async def test_unreachable_upstream_is_502(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["providers"]["mock-openai"]["base_url"] = "http://127.0.0.1:9/v1"
    proxy = await make_proxy(proxy_config)
    async with await proxy.post(
        "/v1/chat/completions", {"model": "gpt-test", "messages": MESSAGES}
    ) as r:
        assert r.status == 502
        assert_openai_error(await r.json(), "api_error", "upstream_unreachable")


async def test_malformed_upstream_body_is_502(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(add_model(proxy_config, "junk", "mock+garbage"))
    async with await proxy.post(
        "/v1/chat/completions", {"model": "junk", "messages": MESSAGES}
    ) as r:
        assert r.status == 502
        assert_openai_error(await r.json(), "api_error")


async def test_endpoints_anthropic_lacks_skip_its_deployments(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["models"]["mixed"] = {
        "deployments": [
            {"provider": "mock-anthropic", "model": "mock-claude"},
            {"provider": "mock-openai", "model": "mock-embedding"},
        ]
    }
    proxy = await make_proxy(proxy_config)
    async with await proxy.post("/v1/embeddings", {"model": "mixed", "input": "x"}) as r:
        assert r.status == 200
        assert r.headers["x-nitroproxy-provider"] == "mock-openai"
    async with await proxy.post("/v1/embeddings", {"model": "claude-test", "input": "x"}) as r:
        assert r.status == 400
        assert "no deployment that serves /v1/embeddings" in (await r.json())["error"]["message"]
