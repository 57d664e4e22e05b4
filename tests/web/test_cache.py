"""The opt-in response cache end to end: off by default, hits without the upstream,
never across tenants, never in plaintext on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nitroproxy.security.crypto import generate_key
from tests.conftest import CLIENT_KEY, ProxyFactory, Upstream, wait_records

OTHER_KEY = "np-other-tenant-key-0123456789abcdefghijklmnop"
CANARY = "cachecanary93be2"
BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": f"say {CANARY}"}]}


@pytest.fixture
def data_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = generate_key()
    monkeypatch.setenv("NITROPROXY_DATA_KEY", key)
    return key


def cached(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg["cache"] = {"enabled": True, "ttl": "1h"}
    cfg["keys"] = [
        {"name": "test", "key": CLIENT_KEY, "user": "alice", "cache": True},
        {"name": "other", "key": OTHER_KEY, "user": "bob", "cache": True},
    ]
    cfg["models"]["echo"] = {"deployments": [{"provider": "mock-openai", "model": "m+echo"}]}
    return cfg


async def test_cache_is_off_by_default(proxy: Any, upstream: Upstream) -> None:
    for _ in range(2):
        async with await proxy.post("/v1/chat/completions", BODY) as r:
            assert r.status == 200
            assert r.headers["x-nitroproxy-cache"] == "skip"
    assert len(upstream.state.requests) == 2


async def test_second_identical_request_is_a_hit_streamed_or_not(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], upstream: Upstream, data_key: str
) -> None:
    proxy = await make_proxy(cached(proxy_config))
    async with await proxy.post("/v1/chat/completions", BODY) as r:
        assert r.headers["x-nitroproxy-cache"] == "miss"
        first = await r.json()
    usage = first["usage"]
    first_cost = (usage["prompt_tokens"] * 2500 + usage["completion_tokens"] * 10000) / 1e9
    await proxy.app[CACHE_KEY()].flush()
    async with await proxy.post("/v1/chat/completions", BODY) as r:
        assert r.headers["x-nitroproxy-cache"] == "hit"
        assert float(r.headers["x-nitroproxy-cache-saved-usd"]) > 0
        assert await r.json() == first
    async with await proxy.post("/v1/chat/completions", {**BODY, "stream": True}) as r:
        assert r.headers["x-nitroproxy-cache"] == "hit"
        raw = await r.read()
    assert raw.endswith(b"data: [DONE]\n\n")
    assert len(upstream.state.requests) == 1  # the upstream answered once
    records = await wait_records(proxy, 3)
    hits = [rec for rec in records if rec.cache_hit]
    assert len(hits) == 2
    assert all(
        h.cost_nanos == 0 and h.prompt_tokens == 0 and h.outcome == "cache_hit" for h in hits
    )
    async with proxy.session.get(proxy.url + "/metrics") as r:
        text = await r.text()
    saved = [line for line in text.splitlines() if line.startswith("nitroproxy_cache_saved_usd")]
    assert saved and float(saved[0].split()[-1]) == pytest.approx(2 * first_cost)


async def test_a_streamed_answer_is_stored_and_served_to_a_plain_request(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], upstream: Upstream, data_key: str
) -> None:
    proxy = await make_proxy(cached(proxy_config))
    async with await proxy.post("/v1/chat/completions", {**BODY, "stream": True}) as r:
        assert r.headers["x-nitroproxy-cache"] == "miss"
        await r.read()
    await proxy.app[CACHE_KEY()].flush()
    async with await proxy.post("/v1/chat/completions", BODY) as r:
        assert r.headers["x-nitroproxy-cache"] == "hit"
        body = await r.json()
    assert body["choices"][0]["message"]["content"]
    assert len(upstream.state.requests) == 1


async def test_another_tenant_misses_and_headers_steer(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], upstream: Upstream, data_key: str
) -> None:
    proxy = await make_proxy(cached(proxy_config))
    async with await proxy.post("/v1/chat/completions", BODY):
        pass
    await proxy.app[CACHE_KEY()].flush()
    async with await proxy.post("/v1/chat/completions", BODY, key=OTHER_KEY) as r:
        assert r.headers["x-nitroproxy-cache"] == "miss"
    for mode, result in [("skip", "skip"), ("refresh", "miss"), ("use", "hit")]:
        async with await proxy.post(
            "/v1/chat/completions", BODY, headers={"x-nitroproxy-cache": mode}
        ) as r:
            assert r.headers["x-nitroproxy-cache"] == result, mode
        await proxy.app[CACHE_KEY()].flush()
    assert len(upstream.state.requests) == 4
    async with await proxy.post(
        "/v1/chat/completions", BODY, headers={"x-nitroproxy-cache": "always"}
    ) as r:
        assert r.status == 400
        assert (await r.json())["error"]["param"] == "x-nitroproxy-cache"


async def test_the_canary_is_nowhere_in_plaintext(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], tmp_path: Path, data_key: str
) -> None:
    proxy = await make_proxy(cached(proxy_config))
    body = {"model": "echo", "messages": [{"role": "user", "content": f"echo {CANARY}"}]}
    for stream in (False, True):
        async with await proxy.post("/v1/chat/completions", {**body, "stream": stream}) as r:
            assert CANARY.encode() in await r.read()
    await proxy.app[CACHE_KEY()].flush()
    async with await proxy.post("/v1/chat/completions", body) as r:
        assert r.headers["x-nitroproxy-cache"] == "hit"
        assert CANARY in await r.text()
    await wait_records(proxy, 3)
    data_dir = Path(proxy.settings.storage.path).parent
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.name.startswith("cache.db") for p in files)
    for path in files:
        assert CANARY.encode() not in path.read_bytes(), path


def CACHE_KEY() -> Any:
    from nitroproxy.web.appkeys import CACHE

    return CACHE


async def test_erasing_a_user_and_revoking_a_key_remove_their_entries(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], upstream: Upstream, data_key: str
) -> None:
    import sqlite3

    from tests.conftest import ADMIN_KEY

    proxy = await make_proxy(cached(proxy_config))
    admin = proxy.headers(ADMIN_KEY)

    async def admin_call(method: str, path: str, body: Any = None) -> Any:
        async with proxy.session.request(method, proxy.url + path, json=body, headers=admin) as r:
            assert r.status < 300, await r.text()
            return await r.json()

    def entries() -> int:
        from nitroproxy.cache.store import default_path

        with sqlite3.connect(default_path(proxy.settings.storage.path)) as db:
            return int(db.execute("SELECT count(*) FROM cache_entries").fetchone()[0])

    user = await admin_call("POST", "/admin/users", {"name": "Dana"})
    keys = [
        await admin_call(
            "POST", "/admin/keys", {"user_id": user["id"], "name": f"k{i}", "cache": True}
        )
        for i in range(2)
    ]
    for key in keys:
        async with await proxy.post("/v1/chat/completions", BODY, key=key["secret"]) as r:
            assert r.status == 200, await r.text()
            assert r.headers["x-nitroproxy-cache"] == "miss"  # the key opted in
    await proxy.app[CACHE_KEY()].flush()
    assert entries() == 2
    await admin_call("POST", f"/admin/keys/{keys[0]['id']}/revoke")
    assert entries() == 1
    await admin_call("DELETE", f"/admin/users/{user['id']}")
    assert entries() == 0
