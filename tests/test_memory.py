"""Memory under large bodies, in a real ``nitroproxy serve`` process: 20 concurrent 15 MB
requests (under the 16 MiB cap on one body) against the default cap on the bytes in flight.
Twice the bytes in flight is the bound: the raw body and the parsed one while it is read,
the parsed body and the upstream's encoding while it is sent."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from nitroproxy.config import ServerLimits
from nitroproxy.web.server import start
from tests.conftest import CLIENT_KEY
from tests.realproc import ProxyProcess, status_kb

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "big",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3_750_000, "completion_tokens": 1, "total_tokens": 3_750_001},
}
BODY_BYTES = 15_000_000
CONCURRENT = 20
MB = 1024 * 1024


async def _upstream() -> tuple[web.AppRunner, int]:
    """A provider that takes big bodies (the bundled mock keeps aiohttp's 1 MiB cap)."""

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(ANSWER)

    app = web.Application(client_max_size=64 * MB)
    app.router.add_post("/v1/chat/completions", chat)
    return await start(app, "127.0.0.1", 0)


async def test_twenty_15_mb_bodies_stay_within_twice_the_bytes_in_flight(tmp_path: Path) -> None:
    runner, port = await _upstream()
    cfg = {
        "providers": {
            "up": {"kind": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "api_key": "k"}
        },
        "models": {"gpt-test": {"deployments": [{"provider": "up", "model": "gpt-4o"}]}},
        "storage": {"path": str(tmp_path / "np.db")},
        "keys": [{"name": "test", "key": CLIENT_KEY}],
        "logging": {"access_log": False},
    }
    content = "x" * (BODY_BYTES - 80)
    body = orjson.dumps({"model": "gpt-test", "messages": [{"role": "user", "content": content}]})
    headers = {"Authorization": f"Bearer {CLIENT_KEY}", "Content-Type": "application/json"}
    try:
        async with ProxyProcess(cfg, tmp_path) as proxy, aiohttp.ClientSession() as session:
            base = status_kb(proxy.pid, "VmRSS") * 1024

            async def send() -> tuple[int, dict[str, object]]:
                async with session.post(
                    proxy.url + "/v1/chat/completions", data=body, headers=headers
                ) as r:
                    return r.status, await r.json()

            answers = await asyncio.gather(*(send() for _ in range(CONCURRENT)))
            peak = status_kb(proxy.pid, "VmHWM") * 1024
            await asyncio.sleep(1.0)
            after = status_kb(proxy.pid, "VmRSS") * 1024
    finally:
        await runner.cleanup()
    served = [a for a in answers if a[0] == 200]
    refused = [a for a in answers if a[0] != 200]
    cap = ServerLimits().body_bytes_in_flight
    assert len(served) == cap // len(body)  # as many as fit under the cap, the rest refused
    assert all(
        status == 503 and answer["error"]["code"] == "too_many_request_bytes"  # type: ignore[index]
        for status, answer in refused
    )
    in_flight = len(served) * len(body)
    assert peak - base <= 2.3 * in_flight, (base / MB, peak / MB, in_flight / MB)
    assert after - base <= 64 * MB, (base / MB, after / MB)  # given back afterwards
