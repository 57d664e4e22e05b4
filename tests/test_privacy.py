"""Prompts, completions, tool arguments and credentials never reach the disk or the logs.

A canary string goes into every kind of request; the mock echoes it back in completions and
tool arguments. Afterwards the database file, its WAL and the log output must not hold it.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

from nitroproxy.telemetry import logs
from tests.conftest import CLIENT_KEY, UPSTREAM_KEY, ProxyFactory, Upstream, wait_records

CANARY = "zebracanary4f1d9"
TOOLS = [
    {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
]


def echo_models(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg["models"]["echo"] = {"deployments": [{"provider": "mock-openai", "model": "m+echo"}]}
    cfg["models"]["echo-slow"] = {
        "deployments": [{"provider": "mock-openai", "model": "m+echo+delay=50"}]
    }
    cfg["models"]["echo-drop"] = {
        "deployments": [{"provider": "mock-openai", "model": "m+echo+drop"}]
    }
    cfg["models"]["echo-claude"] = {
        "deployments": [{"provider": "mock-anthropic", "model": "c+echo"}]
    }
    cfg["models"]["echo-quiet"] = {
        "deployments": [{"provider": "mock-openai", "model": "m+echo+nousage"}]
    }
    cfg["providers"]["mock-responses"] = {**cfg["providers"]["mock-openai"], "responses": True}
    cfg["models"]["echo-responses"] = {
        "deployments": [{"provider": "mock-responses", "model": "m+echo"}]
    }
    return cfg


def files_of(db: Path) -> list[Path]:
    return [p for p in db.parent.iterdir() if p.name.startswith(db.name)]


async def test_canary_never_reaches_database_wal_or_logs(
    make_proxy: ProxyFactory, proxy_config: dict[str, Any], upstream: Upstream
) -> None:
    out = io.StringIO()
    logs.configure_logging(level="debug", fmt="json", stream=out)
    try:
        proxy = await make_proxy(echo_models(proxy_config))
        words = f"please repeat {CANARY} now"
        chat = [{"role": "user", "content": words}]
        requests: list[tuple[str, dict[str, Any]]] = [
            ("/v1/chat/completions", {"model": "echo", "messages": chat}),
            ("/v1/chat/completions", {"model": "echo", "messages": chat, "stream": True}),
            ("/v1/chat/completions", {"model": "echo", "messages": chat, "tools": TOOLS}),
            (
                "/v1/chat/completions",
                {"model": "echo", "messages": chat, "tools": TOOLS, "stream": True},
            ),
            ("/v1/chat/completions", {"model": "echo-quiet", "messages": chat, "stream": True}),
            ("/v1/chat/completions", {"model": "echo-drop", "messages": chat, "stream": True}),
            ("/v1/chat/completions", {"model": "echo-claude", "messages": chat}),
            ("/v1/chat/completions", {"model": "echo-claude", "messages": chat, "stream": True}),
            ("/v1/completions", {"model": "echo", "prompt": words}),
            ("/v1/embeddings", {"model": "embed-test", "input": words}),
            ("/v1/messages", {"model": "echo", "max_tokens": 50, "messages": chat}),
            (
                "/v1/messages",
                {"model": "echo-claude", "max_tokens": 50, "messages": chat, "stream": True},
            ),
            ("/v1/responses", {"model": "echo", "input": words}),
            ("/v1/responses", {"model": "echo-claude", "input": words, "stream": True}),
            ("/v1/responses", {"model": "echo-responses", "input": words, "stream": True}),
            ("/v1/responses/input_tokens", {"model": "echo", "input": words}),
            ("/v1/messages/count_tokens", {"model": "echo-claude", "messages": chat}),
            ("/v1/chat/completions", {"model": "nope", "messages": chat}),  # an error
        ]
        echoed = 0
        for path, body in requests:
            async with await proxy.post(path, body) as resp:
                echoed += CANARY.encode() in await resp.read()
        assert echoed >= 10  # the canary really travelled through the completions

        # A client that hangs up mid-stream, and a wrong key carrying the canary.
        resp = await proxy.post(
            "/v1/chat/completions", {"model": "echo-slow", "messages": chat, "stream": True}
        )
        await resp.content.readline()
        resp.close()
        await upstream.state.wait_disconnect(timeout=2)
        bad_key = f"sk-{CANARY}-0123456789abcdef0123456789"
        async with await proxy.post("/v1/chat/completions", {"model": "echo"}, key=bad_key):
            pass

        # 17 routed requests + the disconnect; the unknown model and the 401 never reach routing.
        await wait_records(proxy, len(requests))
        await asyncio.sleep(0.1)
        db = Path(proxy.settings.storage.path)
        stored = b"".join(p.read_bytes() for p in files_of(db))
        assert stored  # the files exist and hold records
        for secret in (CANARY, CLIENT_KEY, UPSTREAM_KEY):
            assert secret.encode() not in stored, secret
        logs.flush()
        text = out.getvalue()
        assert '"event":"request"' in text
        for secret in (CANARY, CLIENT_KEY, UPSTREAM_KEY):
            assert secret not in text, secret
    finally:
        logs.configure_logging(level="info", fmt="json")
