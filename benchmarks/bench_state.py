"""What the shared state costs a request: ``python -m benchmarks.bench_state [-n N]``.

1. The limiter alone, one call at a time (one connection): ``reserve`` + ``settle`` with
   ``InMemoryLimiter``, with ``RedisLimiter`` (one script per step: the shipped design), and
   with a *local lease* prototype that claims ``B`` admissions from Redis per round trip and
   hands them out from memory (the alternative the issue asks to measure).
2. End to end, one connection: the same proxy and mock upstream, ``state.backend`` memory
   against redis, on a key with requests/min, tokens/min and a budget (every check runs);
   the added latency is the difference of the medians.

Needs Redis on 127.0.0.1:6379 (its own key prefix, deleted afterwards).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as redis

from benchmarks.loop import new_loop
from nitroproxy import config
from nitroproxy.config import FailPolicy, StateSettings
from nitroproxy.core.limits import KeyLimits
from nitroproxy.mock import MockSettings, create_mock_app
from nitroproxy.proxy.clock import Clock
from nitroproxy.proxy.limiter import InMemoryLimiter, Limiter, Reservation, Scope
from nitroproxy.state.limiter import RedisLimiter
from nitroproxy.state.link import RedisLink
from nitroproxy.web.app import create_app
from nitroproxy.web.server import start

URL = "redis://127.0.0.1:6379/0"
LIMITS = KeyLimits(rpm=10_000_000, tpm=10**12, max_concurrent=1000, budget_day_usd=1e6)
KEY = "np-bench-state-key-abcdefghijklmnopqrstuvwxyz0123456789"

# The lease prototype: claim up to B request slots in the window in one script.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rq, rpm, want = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', rq, '-inf', now - 60000)
local free = rpm - redis.call('ZCARD', rq)
local got = math.max(0, math.min(free, want))
for i = 1, got do redis.call('ZADD', rq, now, ARGV[3]..':'..i) end
redis.call('PEXPIRE', rq, 61000)
return got
"""


class LeaseLimiter:
    """Admissions handed out from a local batch claimed in one round trip."""

    def __init__(self, client: redis.Redis, prefix: str, batch: int) -> None:
        self._claim = client.register_script(_CLAIM)
        self._key = f"{prefix}:lease:rq"
        self._batch = batch
        self._left = 0
        self._n = 0

    async def admit(self) -> bool:
        if self._left == 0:
            self._n += 1
            self._left = int(
                await self._claim(keys=[self._key], args=[10**9, self._batch, f"b{self._n}"])
            )
        if self._left == 0:
            return False
        self._left -= 1
        return True


def _summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "median_us": statistics.median(samples) * 1e6,
        "p99_us": samples[int(len(samples) * 0.99) - 1] * 1e6,
    }


async def _time(n: int, step: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
    for i in range(min(500, n)):  # warm-up: connections, script cache
        await step(i)
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        await step(i)
        samples.append(time.perf_counter() - t0)
    return _summary(samples)


async def limiter_figures(n: int, prefix: str) -> dict[str, dict[str, float]]:
    scope = Scope("key:bench", LIMITS)
    reservation = Reservation((scope,), tokens=100, cost_nanos=1000, wall=time.time())

    def cycle(limiter: Limiter) -> Callable[[int], Awaitable[None]]:
        async def step(_: int) -> None:
            ticket = await limiter.reserve(reservation)
            await limiter.settle(ticket, tokens=90, cost_nanos=900)

        return step

    out = {"memory": await _time(n, cycle(InMemoryLimiter()))}
    link = RedisLink(StateSettings(backend="redis", url=URL, prefix=prefix, timeout=1.0))
    try:
        out["redis (settle rides with next reserve)"] = await _time(
            n, cycle(RedisLimiter(link, Clock(), FailPolicy()))
        )
        for batch in (10, 100):
            lease = LeaseLimiter(link.client, prefix, batch)

            async def admit(_: int, lease: LeaseLimiter = lease) -> None:
                await lease.admit()

            out[f"lease, batch {batch} (rpm only)"] = await _time(n, admit)
    finally:
        await link.close()
    return out


def _proxy_config(upstream: str, tmp: Path, backend: str, prefix: str) -> config.Settings:
    return config.parse(
        {
            "providers": {"mock": {"kind": "openai", "base_url": upstream + "/v1"}},
            "models": {
                "m": {"deployments": [{"provider": "mock", "model": "mock-gpt", "price": {}}]}
            },
            "storage": {"path": str(tmp / f"{backend}.db")},
            "logging": {"format": "json", "access_log": False},
            "metrics": {"enabled": True},
            "keys": [
                {
                    "name": "bench",
                    "key": KEY,
                    "rpm": LIMITS.rpm,
                    "tpm": LIMITS.tpm,
                    "max_concurrent": LIMITS.max_concurrent,
                    "budget_day_usd": LIMITS.budget_day_usd,
                }
            ],
            "state": {"backend": backend, "url": URL, "prefix": prefix, "timeout": 1.0},
        }
    )


async def end_to_end(n: int, prefix: str) -> dict[str, dict[str, float]]:
    up_runner, up_port = await start(
        create_mock_app(MockSettings(tokens=16, record=False)), "127.0.0.1", 0
    )
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
    headers = {"Authorization": f"Bearer {KEY}"}
    out: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for backend in ("memory", "redis", "memory ", "redis "):  # interleaved twice
                settings = _proxy_config(
                    f"http://127.0.0.1:{up_port}", Path(tmp), backend.strip(), prefix
                )
                runner, port = await start(create_app(settings), "127.0.0.1", 0)
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                connector = aiohttp.TCPConnector(limit=1)
                try:
                    async with aiohttp.ClientSession(connector=connector) as session:

                        async def call(
                            _: int, session: aiohttp.ClientSession = session, url: str = url
                        ) -> None:
                            async with session.post(url, json=body, headers=headers) as r:
                                assert r.status == 200, await r.text()
                                await r.read()

                        out[backend] = await _time(n, call)
                finally:
                    await runner.cleanup()
    finally:
        await up_runner.cleanup()
    return out


async def _clean(prefix: str) -> None:
    client = redis.Redis.from_url(URL)
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def _rtt() -> float:
    client = redis.Redis.from_url(URL)
    try:
        samples = []
        for _ in range(2000):
            t0 = time.perf_counter()
            await client.ping()
            samples.append(time.perf_counter() - t0)
    finally:
        await client.aclose()
    return statistics.median(samples[200:]) * 1e6


async def main(n: int) -> None:
    prefix = f"npbench-{uuid.uuid4().hex[:8]}"
    try:
        print(f"Redis PING round trip now: median {await _rtt():.1f} us")
        print(f"limiter alone, one call at a time, n={n}")
        for name, fig in (await limiter_figures(n, prefix)).items():
            print(f"  {name:30s} median {fig['median_us']:7.1f} us   p99 {fig['p99_us']:7.1f} us")
        print(f"end to end, 1 connection, n={n // 2} per run")
        e2e = await end_to_end(n // 2, prefix)
        for name, fig in e2e.items():
            print(f"  {name:30s} median {fig['median_us']:7.1f} us   p99 {fig['p99_us']:7.1f} us")
        memory = statistics.mean(e2e[k]["median_us"] for k in ("memory", "memory "))
        shared = statistics.mean(e2e[k]["median_us"] for k in ("redis", "redis "))
        print(f"  added by the Redis state path: {(shared - memory) / 1000:.3f} ms (median)")
    finally:
        await _clean(prefix)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000)
    args = parser.parse_args()
    loop = new_loop()
    try:
        loop.run_until_complete(main(args.n))
    finally:
        loop.close()
