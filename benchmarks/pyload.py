"""The Python load generator: the fallback when wrk is missing, and what the test suite uses.

``python -m benchmarks.pyload --spec FILE --connections C --duration S [--requests N]``.
It reads a ``loadgen.Spec`` (JSON), keeps C connections busy with a closed loop, checks every
response as wrk's Lua script does, and prints one ``LOADJSON {...}`` line with the same
fields. It is slower than wrk (one Python process), so rates it measures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from typing import Any

import aiohttp

from benchmarks.loop import new_loop


class _Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.ok = 0
        self.kinds: dict[str, int] = {}

    def error(self, kind: str) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def _worker(
    session: aiohttp.ClientSession,
    spec: dict[str, Any],
    order: itertools.cycle[int],
    budget: list[int],
    deadline: float,
    tally: _Tally,
) -> None:
    expect = [e.encode() for e in spec["expect"]]
    reject = spec["reject"].encode()
    headers = {"Content-Type": "application/json", **spec["headers"]}
    while time.monotonic() < deadline and budget[0] != 0:
        budget[0] -= 1
        req = spec["requests"][next(order)]
        began = time.perf_counter()
        try:
            async with session.post(
                spec["base_url"] + req["path"], data=req["body"].encode(), headers=headers
            ) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            tally.error("read")
            continue
        tally.latencies.append(time.perf_counter() - began)
        if status != 200:
            tally.error("bad_status")
        elif (expect and not any(e in body for e in expect)) or reject in body:
            tally.error("bad_body")
        else:
            tally.ok += 1


async def run(spec: dict[str, Any], connections: int, duration: float, requests: int) -> str:
    tally = _Tally()
    budget = [requests if requests > 0 else -1]
    order = itertools.cycle(spec["pattern"])
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = time.monotonic()
        deadline = began + duration
        workers = [
            _worker(session, spec, order, budget, deadline, tally) for _ in range(connections)
        ]
        await asyncio.gather(*workers)
        elapsed = time.monotonic() - began
    lat = tally.latencies
    out = {
        "requests": len(lat) + tally.kinds.get("read", 0),
        "duration_s": elapsed,
        "ok": tally.ok,
        **{k: tally.kinds.get(k, 0) for k in ("bad_status", "bad_body", "read")},
        "connect": 0,
        "write": 0,
        "timeout": 0,
        "p50_ms": _percentile(lat, 50) * 1000,
        "p90_ms": _percentile(lat, 90) * 1000,
        "p99_ms": _percentile(lat, 99) * 1000,
        "max_ms": max(lat, default=0.0) * 1000,
    }
    return "LOADJSON " + json.dumps(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=0)
    args = parser.parse_args()
    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)
    loop = new_loop()
    try:
        line = loop.run_until_complete(run(spec, args.connections, args.duration, args.requests))
    finally:
        loop.close()
    print(line, flush=True)


if __name__ == "__main__":
    main()
