"""Shared fixtures: the real mock upstream and the real proxy, each on a loopback port."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from nitroproxy import config
from nitroproxy.mock import (
    MOCK_STATE,
    MockSettings,
    MockState,
    create_mock_app,
)
from nitroproxy.web.app import create_app
from nitroproxy.web.server import start

UPSTREAM_KEY = "sk-upstream-secret-0123456789"
CLIENT_KEY = "np-test-client-key-abcdefghijklmnopqrstuvwxyz0123456789"
ADMIN_KEY = "np-admin-key-abcdefghijklmnopqrstuvwxyz0123456789ABCD"


@dataclass
class Upstream:
    url: str
    state: MockState
    app: web.Application


@dataclass
class Proxy:
    url: str
    app: web.Application
    settings: config.Settings
    session: aiohttp.ClientSession

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def headers(self, key: str = CLIENT_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def post(
        self, path: str, body: Any, key: str = CLIENT_KEY, **kw: Any
    ) -> aiohttp.ClientResponse:
        headers = {**self.headers(key), **kw.pop("headers", {})}
        return await self.session.post(self.url + path, json=body, headers=headers, **kw)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    app = create_mock_app(MockSettings(api_key=UPSTREAM_KEY))
    runner, port = await start(app, "127.0.0.1", 0)
    try:
        yield Upstream(f"http://127.0.0.1:{port}", app[MOCK_STATE], app)
    finally:
        await runner.cleanup()


def base_config(upstream_url: str, tmp_path: Path) -> dict[str, Any]:
    """A config with two providers on the mock and a few models; tests edit a copy."""
    return {
        "providers": {
            "mock-openai": {
                "kind": "openai",
                "base_url": upstream_url + "/v1",
                "api_key": UPSTREAM_KEY,
            },
            "mock-anthropic": {
                "kind": "anthropic",
                "base_url": upstream_url + "/v1",
                "api_key": UPSTREAM_KEY,
            },
        },
        "models": {
            "gpt-test": {
                "deployments": [
                    {
                        "name": "primary",
                        "provider": "mock-openai",
                        "model": "mock-gpt",
                        "price": {"input": 2.5, "output": 10, "cached_input": 1.25},
                    }
                ]
            },
            "claude-test": {
                "deployments": [
                    {
                        "name": "claude",
                        "provider": "mock-anthropic",
                        "model": "mock-claude",
                        "price": {"input": 3, "output": 15},
                    }
                ]
            },
            "embed-test": {
                "deployments": [
                    {
                        "provider": "mock-openai",
                        "model": "mock-embedding",
                        "price": {"input": 0.02},
                    }
                ]
            },
        },
        "storage": {"path": str(tmp_path / "usage.db"), "flush_interval": 0.01},
        "logging": {"format": "json"},
        "auth": {"required": True, "admin_key": ADMIN_KEY},
        "keys": [{"name": "test", "key": CLIENT_KEY, "user": "alice"}],
    }


@pytest.fixture
def proxy_config(upstream: Upstream, tmp_path: Path) -> dict[str, Any]:
    return base_config(upstream.url, tmp_path)


ProxyFactory = Callable[..., Any]


@pytest.fixture
async def make_proxy() -> AsyncIterator[ProxyFactory]:
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def factory(cfg: dict[str, Any], **app_kwargs: Any) -> Proxy:
        settings = config.parse(copy.deepcopy(cfg))
        app = create_app(settings, **app_kwargs)
        runner, port = await start(app, "127.0.0.1", 0, shutdown_grace=2.0)
        runners.append(runner)
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Proxy(f"http://127.0.0.1:{port}", app, settings, session)

    yield factory
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def proxy(make_proxy: ProxyFactory, proxy_config: dict[str, Any]) -> Proxy:
    result: Proxy = await make_proxy(proxy_config)
    return result


def add_model(
    cfg: dict[str, Any],
    name: str,
    *upstream_models: str,
    provider: str = "mock-openai",
    **extra: Any,
) -> dict[str, Any]:
    """Add public model ``name`` with one deployment per upstream model (mock directives in
    the name script the upstream's behaviour, e.g. ``mock+fail500``)."""
    cfg["models"][name] = {
        "deployments": [
            {
                "name": f"{name}-{i}",
                "provider": provider,
                "model": m,
                "price": {"input": 1, "output": 2},
            }
            for i, m in enumerate(upstream_models)
        ],
        **extra,
    }
    return cfg


async def wait_records(proxy: Proxy, count: int, within: float = 5.0) -> list[Any]:
    """The usage records the proxy has written, once there are ``count`` of them."""
    import asyncio

    from nitroproxy.store.usage import list_records
    from nitroproxy.web.appkeys import STORE

    conn = proxy.app[STORE]
    async with asyncio.timeout(within):
        while True:
            found = await list_records(conn)
            if len(found) >= count:
                await asyncio.sleep(0.05)  # and no more than that
                found = await list_records(conn)
                assert len(found) == count, found
                return found
            await asyncio.sleep(0.02)
