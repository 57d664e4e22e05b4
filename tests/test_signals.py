"""Signals to a real ``nitroproxy serve``: SIGHUP reloads the config (a good file, then a bad
one) without dropping a stream; SIGTERM past the grace ends streams in-band."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.conftest import CLIENT_KEY, Upstream, add_model, base_config
from tests.realproc import ProxyProcess

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="needs POSIX signals")
HEADERS = {"Authorization": f"Bearer {CLIENT_KEY}"}
NEW_KEY = "np-reloaded-key-0123456789abcdef"


def config(upstream: Upstream, tmp_path: Path) -> dict[str, Any]:
    cfg = base_config(upstream.url, tmp_path)
    cfg["storage"]["flush_interval"] = 0.05
    cfg["logging"] = {"format": "json", "access_log": False}
    # A stream of 40 tokens, 50 ms apart: two seconds.
    return add_model(cfg, "slow", "mock+tokens=40+delay=50")


def records(db: str) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM usage ORDER BY ts")]


async def models(session: aiohttp.ClientSession, url: str) -> set[str]:
    async with session.get(url + "/v1/models", headers=HEADERS) as r:
        return {m["id"] for m in (await r.json())["data"]}


async def test_sighup_reloads_a_good_file_keeps_streams_and_refuses_a_bad_one(
    upstream: Upstream, tmp_path: Path
) -> None:
    cfg = config(upstream, tmp_path)
    async with ProxyProcess(cfg, tmp_path) as proxy, aiohttp.ClientSession() as session:
        assert "gpt-new" not in await models(session, proxy.url)
        body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        async with session.post(
            proxy.url + "/v1/chat/completions", json=body, headers=HEADERS
        ) as stream:
            assert (await stream.content.readline()).startswith(b"data: ")

            good = json.loads(json.dumps(cfg))
            good.setdefault("server", {})["port"] = proxy.port
            add_model(good, "gpt-new", "mock-new")
            good["models"]["gpt-test"]["deployments"][0]["price"] = {"input": 100, "output": 200}
            good["tiers"] = {"pro": {"rpm": 5}}
            good["keys"].append({"name": "new", "key": NEW_KEY, "tier": "pro"})
            proxy.config_path.write_text(yaml.safe_dump(good))
            proxy.signal(signal.SIGHUP)
            async with asyncio.timeout(5):
                while "gpt-new" not in await models(session, proxy.url):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            rest = await stream.read()  # the stream that was running goes on to the end
        assert rest.endswith(b"data: [DONE]\n\n")

        chat = {"model": "gpt-new", "messages": [{"role": "user", "content": "hi"}]}
        new_key = {"Authorization": f"Bearer {NEW_KEY}"}
        url = proxy.url + "/v1/chat/completions"
        async with session.post(url, json=chat, headers=new_key) as r:
            assert r.status == 200  # a model, a key and its tier from the reloaded file
            assert r.headers["x-ratelimit-limit-requests"] == "5"
        chat["model"] = "gpt-test"
        async with session.post(url, json=chat, headers=HEADERS) as r:
            assert r.status == 200
            request_id = r.headers["x-request-id"]

        proxy.config_path.write_text("models: [\n")  # a bad file
        proxy.signal(signal.SIGHUP)
        async with asyncio.timeout(5):
            while "config reload refused" not in proxy.output():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert "gpt-new" in await models(session, proxy.url)  # the running config is kept
        assert proxy.proc is not None and proxy.proc.returncode is None
    assert proxy.output().count("config reload refused") == 1
    refused = next(
        json.loads(line) for line in proxy.output().splitlines() if "reload refused" in line
    )
    assert "invalid YAML" in refused["error"]
    (priced,) = [r for r in records(cfg["storage"]["path"]) if r["request_id"] == request_id]
    usage = (priced["prompt_tokens"], priced["completion_tokens"])
    assert priced["cost_nanos"] == usage[0] * 100_000 + usage[1] * 200_000  # the new price


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_sigterm_past_the_grace_ends_streams_in_band_and_records_say_so(
    upstream: Upstream, tmp_path: Path, path: str
) -> None:
    cfg = config(upstream, tmp_path)
    cfg["server"] = {"shutdown_grace": 0.5}
    anthropic = path == "/v1/messages"
    if anthropic:
        add_model(cfg, "slow", "mock+tokens=40+delay=50", provider="mock-anthropic")
    body: dict[str, Any] = {"model": "slow", "stream": True, "max_tokens": 100}
    body["messages"] = [{"role": "user", "content": "x"}]
    async with ProxyProcess(cfg, tmp_path) as proxy, aiohttp.ClientSession() as session:
        async with session.post(proxy.url + path, json=body, headers=HEADERS) as stream:
            await stream.content.readline()
            proxy.signal(signal.SIGTERM)
            began = time.monotonic()
            rest = await stream.read()
            cut_after = time.monotonic() - began
        assert await proxy.wait() == 0
    assert 0.4 < cut_after < 1.5  # at the grace, not at twice the grace
    if anthropic:
        assert b"event: error\n" in rest
        payload = rest.split(b"event: error\ndata: ")[1].split(b"\n")[0]
        assert json.loads(payload)["error"]["type"] == "overloaded_error"
    else:
        last = [line for line in rest.split(b"\n") if line.startswith(b"data: ")][-1]
        assert json.loads(last[6:])["error"]["code"] == "server_shutting_down"
    assert b"[DONE]" not in rest
    (record,) = records(cfg["storage"]["path"])
    assert (record["outcome"], record["status"]) == ("server_shutdown", 503)
    assert record["completion_tokens"] > 0  # what was delivered is billed
    assert "Traceback" not in proxy.output()
