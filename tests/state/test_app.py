"""Two proxies in one test process, both on ``state.backend: redis`` with the same prefix:
a deployment that fails behind one is cooled down in the other, a refusal from the shared
limiter reaches the client as the usual 429, and the state metrics are exposed."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import ADMIN_KEY, ProxyFactory, add_model
from tests.services import SHARED_REDIS

BODY = {"messages": [{"role": "user", "content": "hi"}]}


def shared(cfg: dict[str, Any], prefix: str, **keyed: Any) -> dict[str, Any]:
    cfg["state"] = {"backend": "redis", "url": SHARED_REDIS, "prefix": prefix, "timeout": 2}
    cfg["keys"][0].update(keyed)
    cfg["routing"] = {"failure_threshold": 1, "base_cooldown": 30}
    return cfg


async def test_a_cooldown_behind_one_proxy_is_honoured_by_the_other(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], prefix: str
) -> None:
    cfg = add_model(shared(proxy_config, prefix), "flaky", "mock+fail500")
    one, other = await make_proxy(cfg), await make_proxy(cfg)
    async with await one.post("/v1/chat/completions", {"model": "flaky", **BODY}) as r:
        assert r.status >= 500
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with asyncio.timeout(3):
        while True:
            async with other.session.get(other.url + "/admin/status", headers=admin) as r:
                state = (await r.json())["deployments"].get("flaky-0", {}).get("state")
            if state == "cooling_down":
                break
            await asyncio.sleep(0.05)


async def test_the_shared_limiter_refuses_with_the_usual_429_and_exposes_its_metrics(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], prefix: str
) -> None:
    cfg = shared(proxy_config, prefix, rpm=2)
    one, other = await make_proxy(cfg), await make_proxy(cfg)
    statuses = []
    for proxy in (one, other, one):
        async with await proxy.post("/v1/chat/completions", {"model": "gpt-test", **BODY}) as r:
            statuses.append(r.status)
            last = await r.json()
            headers = r.headers
    assert statuses == [200, 200, 429]
    assert last["error"]["type"] == "rate_limit_error"
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    async with one.session.get(one.url + "/metrics") as r:
        text = await r.text()
    assert "nitroproxy_state_up 1.0" in text
    assert "nitroproxy_state_pending_settlements 0.0" in text
    async with one.session.get(one.url + "/readyz") as r:
        assert (await r.json())["checks"]["state"] == "ok"
