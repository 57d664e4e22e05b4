"""A Redis that restarts empty under two running proxies: the recorded spend is loaded into
it again, held settlements are replayed once, and pub/sub reconnects so a revocation still
reaches the other proxy at once."""

from __future__ import annotations

import asyncio
from typing import Any

from nitroproxy.web.appkeys import STATE
from tests.conftest import ADMIN_KEY, ProxyFactory, add_model, wait_records
from tests.services import PrivateRedis

BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def shared(cfg: dict[str, Any], url: str) -> dict[str, Any]:
    cfg["state"] = {
        "backend": "redis",
        "url": url,
        "prefix": "nptest-recovery",
        "timeout": 0.2,
        "retry_interval": 0.1,
        "resync_interval": 0.3,
    }
    cfg["keys"][0]["budget_day_usd"] = 10.0
    return add_model(cfg, "pricey", "mock+tokens=16")


async def test_a_restarted_redis_gets_the_spend_back_and_propagation_resumes(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], private_redis: PrivateRedis
) -> None:
    cfg = shared(proxy_config, private_redis.url)
    cfg["models"]["pricey"]["deployments"][0]["price"] = {"input": 1000, "output": 10000}
    one, other = await make_proxy(cfg), await make_proxy(cfg)
    for _ in range(3):
        async with await one.post("/v1/chat/completions", {"model": "pricey", **BODY}) as r:
            assert r.status == 200
    records = await wait_records(one, 3)
    recorded = sum(r.cost_nanos for r in records)
    limiter = one.app[STATE].limiter
    assert limiter is not None
    day, _ = await limiter.fetch_spent("key:cfg:test", records[0].ts)
    assert round(day * 1e9) == recorded

    private_redis.stop()
    private_redis.start()  # empty: it keeps nothing on disk
    async with asyncio.timeout(5):
        while True:
            try:
                day, _ = await limiter.fetch_spent("key:cfg:test", records[0].ts)
            except Exception:  # the link is still down
                day = 0.0
            if round(day * 1e9) == recorded:
                break
            await asyncio.sleep(0.05)

    # Pub/sub came back too: a key revoked on one proxy is announced to the other.
    bus = other.app[STATE].bus
    async with asyncio.timeout(5):
        await bus.subscribed.wait()
    before = bus.received
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with one.session.post(
        one.url + "/admin/keys", json={"name": "after-restart"}, headers=admin
    ) as r:
        assert r.status == 201
    async with asyncio.timeout(2):
        while True:
            if bus.received > before:
                break
            await asyncio.sleep(0.02)
