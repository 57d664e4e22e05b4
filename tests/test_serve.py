"""`nitroproxy serve` as a real process: the demo config, and graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, port: int, mock_port: int) -> Path:
    text = (ROOT / "config" / "demo.yaml").read_text()
    text = text.replace("port: 8080", f"port: {port}").replace("8081", str(mock_port))
    text = text.replace("path: data/demo.db", f"path: {tmp_path / 'demo.db'}")
    text = text.replace("delay_ms: 20", "delay_ms: 100")
    path = tmp_path / "demo.yaml"
    path.write_text(text)
    return path


async def wait_up(session: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            async with session.get(url + "/healthz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the proxy did not come up")


async def test_demo_config_serves_and_sigterm_lets_streams_finish(tmp_path: Path) -> None:
    port, mock_port = free_port(), free_port()
    cfg = write_config(tmp_path, port, mock_port)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nitroproxy",
        "serve",
        "--config",
        str(cfg),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NITROPROXY_LOG_LEVEL": "info"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_up(session, url)
            body = {"model": "demo", "stream": True, "messages": [{"role": "user", "content": "x"}]}
            async with session.post(
                url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer any"}
            ) as resp:
                assert resp.status == 200
                first = await resp.content.readline()
                assert first.startswith(b"data: ")
                proc.send_signal(signal.SIGTERM)  # mid-stream: 24 tokens, 100 ms apart
                rest = await resp.read()
            assert rest.endswith(b"data: [DONE]\n\n")
            assert rest.count(b'"content":" ') >= 20
        code = await asyncio.wait_for(proc.wait(), 15)
        assert code == 0
        output = (await proc.stdout.read()).decode() if proc.stdout else ""
        assert "Traceback" not in output
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
