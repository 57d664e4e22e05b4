"""``nitroproxy serve --workers N`` as a user runs it: refused with memory state, N workers
on one port with Redis, a killed worker replaced, SIGTERM drains all and exits 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.services import REDIS_MISSING, SHARED_REDIS, free_port, redis_answers


def _two_free_ports() -> int:
    """A port P with P + 1 free too (worker i serves its metrics on metrics.port + i)."""
    while True:
        port = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port


def _config(tmp_path: Path, port: int, backend: str, metrics_port: int | None = None) -> Path:
    mock_port = free_port()
    cfg: dict[str, Any] = {
        "server": {
            "port": port,
            "shutdown_grace": 2,
            "mock_provider": {"port": mock_port, "tokens": 4},
        },
        "providers": {"mock": {"kind": "openai", "base_url": f"http://127.0.0.1:{mock_port}/v1"}},
        "models": {"demo": {"deployments": [{"provider": "mock", "model": "mock-gpt"}]}},
        "storage": {"path": str(tmp_path / "usage.db")},
        "auth": {"required": False},
        "logging": {"format": "json"},
        "state": {"backend": backend, "url": SHARED_REDIS, "prefix": f"nptest-{uuid.uuid4().hex}"},
    }
    if metrics_port is not None:
        cfg["metrics"] = {"port": metrics_port}
    path = tmp_path / "workers.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _serve(path: Path, workers: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "nitroproxy", "serve", "-c", str(path), "--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NITROPROXY_LOG_LEVEL": "info"},
    )


def _chat(port: int) -> int:
    body = json.dumps({"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=body.encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        return int(r.status)


def _events(proc: subprocess.Popen[bytes], until: str, timeout: float) -> list[dict[str, Any]]:
    """Log lines read from the supervisor's output up to the first ``until`` event."""
    assert proc.stdout is not None
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        try:
            event = json.loads(line)
        except ValueError:
            continue
        seen.append(event)
        if event.get("event") == until:
            return seen
    raise AssertionError(f"no {until!r} in {seen}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_more_than_one_worker_with_memory_state_is_refused_in_one_line(tmp_path: Path) -> None:
    proc = _serve(_config(tmp_path, free_port(), "memory"), 4)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = out.decode().strip().splitlines()
    assert lines == [
        "nitroproxy: --workers 4 needs state.backend: redis: with memory each worker keeps its "
        "own limits and budgets, so a 100 requests/min key would get 400"
    ]


def test_workers_share_a_port_a_dead_one_is_replaced_and_sigterm_drains_all(
    tmp_path: Path,
) -> None:
    if not redis_answers():
        pytest.skip(REDIS_MISSING)
    port, metrics = free_port(), _two_free_ports()
    proc = _serve(_config(tmp_path, port, "redis", metrics), 2)
    try:
        started = _events(proc, "workers started", 90)[-1]
        pids = started["pids"]
        assert len(pids) == 2 and started["port"] == port
        assert all(_chat(port) == 200 for _ in range(10))
        for worker_metrics in (metrics, metrics + 1):  # each worker's own
            with urllib.request.urlopen(f"http://127.0.0.1:{worker_metrics}/metrics") as r:
                assert b"nitroproxy_state_up 1.0" in r.read()

        os.kill(pids[0], signal.SIGKILL)
        restarted = _events(proc, "started", 90)
        assert any(e.get("event") == "worker exited; restarting" for e in restarted)
        assert all(_chat(port) == 200 for _ in range(10))

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert not _alive(pids[1])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
