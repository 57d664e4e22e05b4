"""Nothing about the deployment leaks from what anyone can reach without a key: every
unauthenticated route and every error is scanned for the data directory's path, the host's
name and software versions (a client needs none of them)."""

from __future__ import annotations

import asyncio
import platform
import re
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from nitroproxy import __version__
from nitroproxy.security.crypto import generate_key
from tests.conftest import Proxy, ProxyFactory

PUBLIC_GETS = (
    "/privacy",
    "/privacy/export.schema.json",
    "/v1/stats",
    "/healthz",
    "/readyz",
    "/metrics",
    "/no/such/route",
    "/v1/models",  # 401 without a key
    "/v1/me/export",
    "/admin/users",
    "/admin/openapi.json",
)


def needles(tmp_path: Path) -> list[re.Pattern[str]]:
    host = socket.gethostname()
    found = [
        re.compile(re.escape(str(tmp_path))),
        re.compile(re.escape(tmp_path.name)),
        re.compile(r"usage\.db|cache\.db"),
        re.compile(rf"\b{re.escape(host)}\b"),
        re.compile(rf"\b{re.escape(socket.getfqdn())}\b"),
        re.compile(rf"\b{re.escape(platform.python_version())}\b"),
        re.compile(rf"aiohttp/|\b{re.escape(aiohttp.__version__)}\b"),
        re.compile(r"Python/|CPython"),
        re.compile(r"nitroproxy_version|schema_version"),
    ]
    return found


def scan(where: str, text: str, patterns: list[re.Pattern[str]]) -> None:
    for pattern in patterns:
        match = pattern.search(text)
        assert match is None, f"{where} leaks {match.group(0)!r}"


async def raw_exchange(proxy: Proxy, request: bytes) -> str:
    host, port = proxy.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    await writer.wait_closed()
    return data.decode("latin-1")


@pytest.fixture
async def exposed(
    make_proxy: ProxyFactory,
    proxy_config: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> Proxy:
    # Everything on that has a file or a version to name: the cache, metrics, stats.
    monkeypatch.setenv("NITROPROXY_DATA_KEY", generate_key())
    proxy_config["cache"] = {"enabled": True}
    result: Proxy = await make_proxy(proxy_config)
    return result


async def test_unauthenticated_routes_hold_no_path_hostname_or_version(
    exposed: Proxy, tmp_path: Path
) -> None:
    patterns = needles(tmp_path)
    for path in PUBLIC_GETS:
        async with exposed.session.get(exposed.url + path) as r:
            text = await r.text()
            headers = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
            assert r.status < 500, (path, text)
            assert r.headers["Server"] == "nitroproxy"
        scan(path, text + "\n" + headers, patterns)
    # The version is named nowhere a client can read (the admin document names it, with a key).
    async with exposed.session.get(exposed.url + "/privacy") as r:
        assert __version__ not in await r.text()


async def test_errors_hold_no_path_hostname_or_version(exposed: Proxy, tmp_path: Path) -> None:
    patterns = needles(tmp_path)
    url = exposed.url
    cases = [
        ("POST", "/v1/chat/completions", {"data": b"{not json", "headers": {"x-api-key": "x"}}),
        ("POST", "/v1/messages", {"data": b"[]"}),
        ("DELETE", "/privacy", {}),
        ("POST", "/v1/chat/completions", {"data": b"x" * (17 * 1024 * 1024)}),
        ("GET", "/v1/stats?%ff=%00", {}),
    ]
    for method, path, kw in cases:
        async with exposed.session.request(method, url + path, **kw) as r:
            text = await r.text()
            assert r.headers["Server"] == "nitroproxy"
        scan(f"{method} {path}", text + str(dict(r.headers)), patterns)
    # Requests so malformed that aiohttp itself answers, before any handler runs.
    for raw in (
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        answer = await raw_exchange(exposed, raw)
        assert re.match(r"HTTP/1\.[01] 4\d\d ", answer), answer[:200]
        assert "Server: nitroproxy\r\n" in answer
        scan(repr(raw[:20]), answer, patterns)
