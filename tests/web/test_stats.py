"""GET /v1/stats: public, aggregated from the usage records, small buckets suppressed."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from nitroproxy import config
from nitroproxy.core.types import UsageRecord
from nitroproxy.store.preferences import set_preferences
from nitroproxy.store.usage import insert_many
from nitroproxy.web.appkeys import ACCOUNTS, GATEWAY, STORE
from tests.conftest import CLIENT_KEY, Proxy, ProxyFactory, wait_records

SECRET_IP = "203.0.113.0/24"
SECRET_UA = "canary-agent/9.9"


def record(
    model: str = "gpt-test",
    provider: str = "mock-openai",
    *,
    ago: float = 60.0,
    outcome: str = "ok",
    ttft_ms: float | None = 200.0,
    output_tps: float | None = 40.0,
    user: str | None = None,
    key: str = "cfg:secret-key-name",
) -> UsageRecord:
    """A record of its own person unless ``user`` is given (buckets need ten people)."""
    return UsageRecord(
        id=uuid.uuid4().hex,
        request_id="req-" + uuid.uuid4().hex,
        ts=time.time() - ago,
        key_id=key,
        user_id=user if user is not None else "user-alice-canary-" + uuid.uuid4().hex[:8],
        model=model,
        provider=provider,
        deployment="primary",
        upstream_model="mock-gpt",
        endpoint="chat.completions",
        stream=True,
        status=200 if outcome == "ok" else 502,
        outcome=outcome,
        error_class=None,
        prompt_tokens=10,
        completion_tokens=20,
        cached_tokens=0,
        cache_write_tokens=0,
        reasoning_tokens=0,
        usage_source="provider",
        cost_nanos=1000,
        latency_ms=500.0,
        ttft_ms=ttft_ms,
        output_tps=output_tps,
        attempts=1,
        client_ip=SECRET_IP,
        user_agent=SECRET_UA,
    )


async def get_stats(proxy: Proxy) -> tuple[int, str, dict[str, Any]]:
    async with proxy.session.get(proxy.url + "/v1/stats") as resp:  # no key
        text = await resp.text()
        return resp.status, text, await resp.json()


def bucket(body: dict[str, Any], window: str, model: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        b for b in body["windows"][window]["buckets"] if b["model"] == model
    ]
    assert len(found) == 1
    return found[0]


async def test_stats_are_public_suppress_small_buckets_and_hold_no_identifiers(
    proxy: Proxy,
) -> None:
    records = [record(ttft_ms=float(100 + i)) for i in range(12)]
    records += [record("claude-test", "mock-anthropic") for _ in range(3)]
    await insert_many(proxy.app[STORE], records)
    status, text, body = await get_stats(proxy)
    assert status == 200
    gpt = bucket(body, "1h", "gpt-test")
    assert gpt["suppressed"] is False and gpt["requests"] == 12
    assert gpt["success_rate"] == 1.0
    assert gpt["ttft_ms"]["median"] == 105.5
    assert gpt["output_tokens_per_s"]["median"] == 40.0
    claude = bucket(body, "1h", "claude-test")
    assert claude == {"model": "claude-test", "provider": "mock-anthropic", "suppressed": True}
    assert bucket(body, "24h", "embed-test")["suppressed"] is True  # no traffic looks the same
    for identifier in (
        "secret-key-name",
        "alice",
        SECRET_IP,
        "203.0.113",
        SECRET_UA,
        "req-",
        CLIENT_KEY,
        records[0].id,
    ):
        assert identifier not in text
    assert ":nitro" in body["routing"]


async def test_windows_and_failures(make_proxy: ProxyFactory, proxy_config: dict[str, Any]) -> None:
    proxy_config["stats"] = {"min_bucket": 2}
    proxy = await make_proxy(proxy_config)
    # The same ten people behind each window's requests (so no bucket is too few people).
    crowd = [f"crowd-{i}" for i in range(10)]
    await insert_many(
        proxy.app[STORE],
        [record(ago=60.0, user=crowd[i]) for i in range(7)]
        + [record(ago=60.0, outcome="timeout", ttft_ms=None, user=crowd[i]) for i in range(7, 10)]
        + [record(ago=5 * 3600.0, user=crowd[i]) for i in range(4)]
        + [record(ago=3 * 86400.0, user=crowd[i]) for i in range(7)]
        + [record(ago=30 * 60.0, outcome="client_error", user=crowd[i]) for i in range(10)],
    )
    _, _, body = await get_stats(proxy)
    assert bucket(body, "1h", "gpt-test")["requests"] == 10  # client errors are not counted
    assert bucket(body, "1h", "gpt-test")["success_rate"] == 0.7
    assert bucket(body, "24h", "gpt-test")["requests"] == 14
    assert body["min_bucket"] == 2 and body["min_users"] == 10
    assert body["windows"]["24h"]["complete"] is True


async def test_stats_come_from_real_traffic_like_nitro_routing_measurements(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    # Ten people, one streamed request each: the smallest bucket that may be published.
    people = [f"np-stats-person-{i:02d}-abcdefghijklmnopqrstuvwxyz" for i in range(10)]
    proxy_config["keys"] = [
        {"name": f"person-{i}", "key": secret, "user": f"person-{i}"}
        for i, secret in enumerate(people)
    ]
    proxy = await make_proxy(proxy_config)
    for secret in people:
        body = {
            "model": "gpt-test",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        }
        async with await proxy.post("/v1/chat/completions", body, key=secret) as resp:
            assert resp.status == 200
            await resp.read()
    records = await wait_records(proxy, 10)
    _, _, stats = await get_stats(proxy)
    gpt = bucket(stats, "1h", "gpt-test")
    assert gpt["requests"] == 10
    ttfts = sorted(r.ttft_ms for r in records)
    assert gpt["ttft_ms"]["median"] == round((ttfts[4] + ttfts[5]) / 2, 1)
    # Routing's health book was fed the very same per-request measurements.
    health = proxy.app[GATEWAY].health.snapshot(proxy.app[GATEWAY].clock())["primary"]
    assert health.samples == 10


async def test_the_result_is_cached_for_a_few_seconds(proxy: Proxy) -> None:
    _, first, _ = await get_stats(proxy)
    await insert_many(proxy.app[STORE], [record() for _ in range(20)])
    _, again, _ = await get_stats(proxy)
    assert again == first


async def test_storage_disabled_gives_an_explanation(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["storage"] = {"enabled": False}
    status, _, body = await get_stats(await make_proxy(proxy_config))
    assert status == 200
    assert body["available"] is False
    assert "storage is disabled" in body["reason"]
    assert body["windows"] == {}


async def test_stats_can_be_turned_off(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy_config["stats"] = {"enabled": False}
    proxy = await make_proxy(proxy_config)
    async with proxy.session.get(proxy.url + "/v1/stats") as resp:
        assert resp.status == 404


async def _published(proxy: Proxy, people: int, *, k: int) -> dict[str, Any]:
    """The 1h gpt-test bucket after 3 requests from each of ``people`` people."""
    rows = [record(user=f"k-person-{p}", ttft_ms=100.0 + p) for p in range(people) for _ in "abc"]
    await insert_many(proxy.app[STORE], rows)
    _, _, body = await get_stats(proxy)
    assert body["min_users"] == k
    return bucket(body, "1h", "gpt-test")


async def test_a_bucket_needs_k_distinct_people_tested_at_k_minus_1_and_k(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], tmp_path: Path
) -> None:
    for k in (10, 12):
        for people in (k - 1, k):
            proxy_config["storage"]["path"] = str(tmp_path / f"k{k}-{people}.db")
            proxy_config["stats"] = {"min_users": k}
            found = await _published(await make_proxy(proxy_config), people, k=k)
            if people < k:  # 3(k-1) >= 27 requests, far above min_bucket, but k-1 people
                assert found == {"model": "gpt-test", "provider": "mock-openai", "suppressed": True}
            else:
                assert found["suppressed"] is False and found["requests"] == 3 * k
                assert found["ttft_ms"]["samples"] == 3 * k


def test_k_below_ten_is_a_config_error() -> None:
    with pytest.raises(config.ConfigError, match=r"stats\.min_users"):
        config.parse({"stats": {"min_users": 9}})


async def test_people_who_object_to_analytics_are_not_counted(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any]
) -> None:
    proxy = await make_proxy(proxy_config)
    # Ten people, two requests each; one is a key without a user (the key is its person).
    rows = [record(user=f"obj-{p}") for p in range(9) for _ in "ab"]
    rows += [replace(record(key="key_lone"), user_id=None) for _ in "ab"]
    await insert_many(proxy.app[STORE], rows)
    _, _, body = await get_stats(proxy)
    assert bucket(body, "1h", "gpt-test")["requests"] == 20
    await set_preferences(proxy.app[ACCOUNTS], "key_lone", actor="test", analytics=False)
    fresh = await make_proxy(proxy_config)  # a second server: no 5-second result cache
    _, _, after = await get_stats(fresh)
    assert bucket(after, "1h", "gpt-test")["suppressed"] is True  # nine people are left
    rows = [record(user="obj-new") for _ in "ab"]  # a tenth person comes: shown again
    await insert_many(proxy.app[STORE], rows)
    _, _, third = await get_stats(await make_proxy(proxy_config))
    assert bucket(third, "1h", "gpt-test")["requests"] == 20  # 18 + 2; the objector's 2 never
