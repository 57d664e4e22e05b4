"""Throughput of ``nitroproxy serve --workers 2`` against one worker:
``python -m benchmarks.bench_workers [--seconds S] [--connections C] [--repeats R]``.

Both runs use the scale-out configuration (``state.backend: redis``, records to SQLite, a
key with requests/min, tokens/min and a budget, so every request reserves and settles in
Redis), the fast benchmark upstream (``benchmarks.upstream``) in its own process, and
``wrk`` posting non-streamed chat completions. Runs alternate (1, 2, 1, 2, ...) so a change
in the machine's load hits both; the ratio is of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import yaml

KEY = "np-bench-workers-key-abcdefghijklmnopqrstuvwxyz01234567"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
_LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _config(tmp: Path, port: int, upstream: int, prefix: str) -> Path:
    cfg = {
        "server": {"port": port, "shutdown_grace": 2},
        "providers": {"up": {"kind": "openai", "base_url": f"http://127.0.0.1:{upstream}/v1"}},
        "models": {"m": {"deployments": [{"provider": "up", "model": "mock-gpt"}]}},
        "storage": {"path": str(tmp / f"{prefix}.db")},
        "logging": {"format": "json", "access_log": False, "level": "warning"},
        # A saturated loop delays every await; the bench measures throughput, not timeouts.
        "state": {"backend": "redis", "prefix": prefix, "timeout": 2.0},
        "keys": [
            {
                "name": "bench",
                "key": KEY,
                "rpm": 100_000_000,
                "tpm": 10**12,
                "max_concurrent": 10_000,
                "budget_day_usd": 1e6,
            }
        ],
    }
    path = tmp / f"{prefix}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _wrk(port: int, seconds: int, connections: int, script: Path) -> tuple[float, int]:
    out = subprocess.run(
        [
            "wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "-s", str(script),
            f"http://127.0.0.1:{port}/v1/chat/completions",
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, int(bad.group(1)) if bad else 0


def run_once(tmp: Path, upstream: int, workers: int, args: argparse.Namespace) -> float:
    port = _free_port()
    prefix = f"npbench-w{workers}-{uuid.uuid4().hex[:6]}"
    cfg = _config(tmp, port, upstream, prefix)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nitroproxy", "serve", "-c", str(cfg), "--workers", str(workers)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(f"http://127.0.0.1:{port}/healthz")
        time.sleep(2.0 if workers > 1 else 0.5)  # every worker listening
        script = tmp / "post.lua"
        script.write_text(_LUA.format(body=json.dumps(json.dumps(BODY)), key=KEY))
        _wrk(port, 2, args.connections, script)  # warm-up
        rps, bad = _wrk(port, args.seconds, args.connections, script)
        if bad:
            raise RuntimeError(f"{bad} responses were not 200")
        return rps
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        subprocess.run(
            ["redis-cli", "--scan", "--pattern", f"{prefix}:*"], capture_output=True, check=False
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    upstream_port = _free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.upstream", "--port", str(upstream_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    results: dict[int, list[float]] = {1: [], 2: []}
    try:
        _wait(f"http://127.0.0.1:{upstream_port}/v1/models")
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.repeats):
                for workers in (1, 2):
                    rps = run_once(Path(tmp), upstream_port, workers, args)
                    results[workers].append(rps)
                    print(f"workers={workers}: {rps:,.0f} requests/s", flush=True)
    finally:
        upstream.send_signal(signal.SIGTERM)
        upstream.wait(10)
    one, two = statistics.median(results[1]), statistics.median(results[2])
    print(f"median: 1 worker {one:,.0f}/s, 2 workers {two:,.0f}/s, ratio {two / one:.2f}x")


if __name__ == "__main__":
    main()
