"""What durability costs and what a crash loses, on real processes:
``python -m benchmarks.bench_durability {answer,crash,bodies} [options]``.

- ``answer``: the per-request cost of ``storage.journal_before_answer`` (each record
  fsync-ed in the journal before its answer completes): the same non-streamed load through
  two proxies, option off and on; latency percentiles and requests/s at each concurrency.
- ``crash``: requests at a steady rate, then SIGKILL; which answered requests are missing
  from the database, and how long before the kill the oldest of them was answered (the
  promise: at most one flush interval). Repeated ``--trials`` times, then once with
  ``journal_before_answer`` (the promise: nothing).
- ``bodies``: resident memory of the proxy under 20 concurrent 15 MB bodies (peak from
  ``VmHWM``, and one second after), against the bytes of the bodies it admitted.

The upstream is ``benchmarks.upstream`` (a process of its own) for ``answer`` and
``crash``, and for ``bodies`` a small aiohttp app in this process that takes 64 MiB bodies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from aiohttp import web

from benchmarks.targets import API_KEY, Processes, free_port, start_upstream, wait_http
from nitroproxy.web.server import start

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
CHAT = {"model": "mock+tokens=16", "messages": [{"role": "user", "content": "hi"}]}


def _config(port: int, upstream: str, db: Path, **storage: Any) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": port},
        "providers": {"up": {"kind": "openai", "base_url": upstream + "/v1", "api_key": "k"}},
        "models": {
            CHAT["model"]: {"deployments": [{"provider": "up", "model": CHAT["model"]}]},
            "big": {"deployments": [{"provider": "up", "model": "gpt-4o"}]},
        },
        "storage": {"path": str(db), "journal_dir": str(db.parent / "journal"), **storage},
        "logging": {"level": "warning", "format": "json", "access_log": False},
        "keys": [{"name": "bench", "key": API_KEY}],
    }


@contextlib.contextmanager
def _proxy(procs: Processes, name: str, config: dict[str, Any], run: Path) -> Any:
    path = run / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "nitroproxy", "serve", "--config", str(path)]
    proc = procs.start(name, argv)
    port = config["server"]["port"]
    wait_http(f"http://127.0.0.1:{port}/healthz", 60, proc)
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        procs.stop(proc)


async def _load(
    url: str, concurrency: int, seconds: float, answered: list[tuple[str, float]] | None = None
) -> list[float]:
    """``concurrency`` clients in a loop for ``seconds``; latencies in ms."""
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            while time.monotonic() < stop:
                began = time.perf_counter()
                try:
                    async with session.post(
                        url + "/v1/chat/completions", json=CHAT, headers=HEADERS
                    ) as r:
                        await r.read()
                        if r.status != 200:
                            continue
                        if answered is not None:
                            answered.append((r.headers["x-request-id"], time.monotonic()))
                except aiohttp.ClientError:
                    return  # the proxy was killed
                latencies.append((time.perf_counter() - began) * 1000)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_answer(run: Path, seconds: float, concurrencies: list[int]) -> None:
    with Processes(run) as procs:
        upstream = start_upstream(procs)
        for durable in (False, True):
            port = free_port()
            cfg = _config(port, upstream.base_url, run / f"a{int(durable)}" / "np.db")
            cfg["storage"]["journal_before_answer"] = durable
            with _proxy(procs, f"proxy-durable-{durable}", cfg, run) as (_, url):
                asyncio.run(_load(url, 4, 2.0))  # warm up: connections, caches
                for c in concurrencies:
                    lat = asyncio.run(_load(url, c, seconds))
                    p50, p99 = _percentile(lat, 0.5), _percentile(lat, 0.99)
                    print(
                        f"answer journal_before_answer={str(durable).lower():5s} c={c:3d}: "
                        f"{len(lat) / seconds:7.0f} req/s, p50 {p50:6.2f} ms, "
                        f"p99 {p99:6.2f} ms, mean {statistics.fmean(lat):6.2f} ms"
                    )


def _stored(db: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {r[0] for r in conn.execute("SELECT request_id FROM usage")}


async def _until_killed(url: str, proc: subprocess.Popen[bytes], after: float) -> tuple[Any, ...]:
    answered: list[tuple[str, float]] = []
    load = asyncio.ensure_future(_load(url, 8, after + 5, answered))
    await asyncio.sleep(after)
    os.kill(proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    await load
    return answered, killed_at


def bench_crash(run: Path, trials: int, flush: float) -> None:
    with Processes(run) as procs:
        upstream = start_upstream(procs)
        for durable in [False] * trials + [True]:
            db = run / f"crash-{time.monotonic_ns()}" / "np.db"
            cfg = _config(free_port(), upstream.base_url, db, flush_interval=flush)
            cfg["storage"]["journal_before_answer"] = durable
            with _proxy(procs, "proxy-crash", cfg, run) as (proc, url):
                answered, killed_at = asyncio.run(_until_killed(url, proc, 3.0))
                proc.wait()
            if durable:  # the journal is replayed at the next start
                with _proxy(procs, "proxy-replay", {**cfg, "server": {**cfg["server"]}}, run):
                    pass
            stored = _stored(db)
            before = [(rid, t) for rid, t in answered if t < killed_at]
            missing = [killed_at - t for rid, t in before if rid not in stored]
            oldest = f"{max(missing) * 1000:.0f} ms" if missing else "-"
            print(
                f"crash flush_interval={flush}s journal_before_answer={str(durable).lower()}: "
                f"{len(before)} answered before SIGKILL, {len(missing)} missing, the oldest "
                f"missing answered {oldest} before the kill"
            )


@contextlib.asynccontextmanager
async def _big_upstream() -> AsyncIterator[str]:
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "big",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    }

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(answer)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    runner, port = await start(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


async def _bodies(run: Path, cap: int | None, count: int, size: int) -> None:
    async with _big_upstream() as upstream:
        cfg = _config(free_port(), upstream, run / f"bodies-{cap}" / "np.db")
        if cap is not None:
            cfg["server"]["limits"] = {"body_bytes_in_flight": cap}
        content = "x" * (size - 80)
        body = orjson.dumps({"model": "big", "messages": [{"role": "user", "content": content}]})
        headers = {**HEADERS, "Content-Type": "application/json"}
        with Processes(run) as procs, _proxy(procs, "proxy-bodies", cfg, run) as (proc, url):
            base = _kb(proc.pid, "VmRSS")
            async with aiohttp.ClientSession() as session:

                async def send() -> int:
                    async with session.post(
                        url + "/v1/chat/completions", data=body, headers=headers
                    ) as r:
                        await r.read()
                        return r.status

                statuses = await asyncio.gather(*(send() for _ in range(count)))
            peak = _kb(proc.pid, "VmHWM")
            await asyncio.sleep(1.0)
            after = _kb(proc.pid, "VmRSS")
    admitted = statuses.count(200) * len(body) / 1024
    print(
        f"bodies {count} x {size / 1e6:.0f} MB, cap "
        f"{'default' if cap is None else f'{cap / 2**20:.0f} MiB'}: {statuses.count(200)} "
        f"served, {statuses.count(503)} refused 503; RSS {base / 1024:.0f} MiB before, peak "
        f"{peak / 1024:.0f} MiB (+{(peak - base) / 1024:.0f} MiB = "
        f"{(peak - base) / admitted:.2f}x the {admitted / 1024:.0f} MiB admitted), "
        f"{after / 1024:.0f} MiB one second after"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("answer")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, action="append")
    p = sub.add_parser("crash")
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--flush-interval", type=float, default=0.2)
    p = sub.add_parser("bodies")
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--size", type=int, default=15_000_000)
    p.add_argument("--cap", type=int, action="append", help="body_bytes_in_flight (repeat)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        if args.what == "answer":
            bench_answer(run, args.seconds, args.concurrency or [1, 32])
        elif args.what == "crash":
            bench_crash(run, args.trials, args.flush_interval)
        else:
            for cap in args.cap or [None]:
                asyncio.run(_bodies(run, cap, args.count, args.size))


if __name__ == "__main__":
    main()
