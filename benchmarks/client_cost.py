"""CPU per upstream call of each transport: ``python -m benchmarks.client_cost [--calls N]``.

Starts the benchmark upstream on the load core and, pinned to the proxy core, sends N
sequential non-streamed calls through ``UpstreamClient`` with aiohttp's ``ClientSession``
transport and with the lean ``upstream.http1`` one (the same code path the gateway takes),
then N streamed calls read chunk by chunk. Prints process CPU per call; the best of three
rounds, interleaved, so both see the same machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import orjson

from benchmarks.loop import new_loop
from benchmarks.targets import PROXY_CPU, Processes, start_upstream
from nitroproxy.config import ProviderSettings, Timeouts, UpstreamSettings
from nitroproxy.core.types import ApiFormat, Endpoint
from nitroproxy.upstream.client import AiohttpTransport, Transport, UpstreamClient
from nitroproxy.upstream.http1 import Http1Transport
from nitroproxy.upstream.provider import Provider

_CHAT = orjson.dumps({"model": "mock+tokens=16", "messages": [{"role": "user", "content": "hi"}]})
_STREAM = orjson.dumps(
    {
        "model": "mock+tokens=50",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
)


async def _round(transport: Transport, provider: Provider, calls: int, body: bytes) -> float:
    client = UpstreamClient(transport)
    stream = b'"stream":true' in body
    for warm in (True, False):
        started = time.process_time()
        for _ in range(50 if warm else calls):
            resp = await client.send(provider, Endpoint.CHAT, body)
            if stream:
                while await client.next_chunk(provider, resp):
                    pass
            else:
                await client.read(provider, resp)
            resp.release()
    return (time.process_time() - started) / calls * 1e6


async def _measure(base_url: str, calls: int) -> dict[str, dict[str, float]]:
    settings = ProviderSettings(
        name="bench",
        kind=ApiFormat.OPENAI,
        base_url=base_url + "/v1",
        api_key="x",
        timeouts=Timeouts(connect=10, first_byte=60, idle=60, total=300),
    )
    provider = Provider(settings)
    transports: dict[str, Transport] = {
        "aiohttp": AiohttpTransport(UpstreamSettings(), [settings]),
        "lean": Http1Transport(UpstreamSettings(), [settings]),
    }
    for t in transports.values():
        await t.start()
    best: dict[str, dict[str, float]] = {n: {} for n in transports}
    try:
        for _ in range(3):
            for name, t in transports.items():
                for kind, body in (("chat", _CHAT), ("stream", _STREAM)):
                    us = await _round(t, provider, calls, body)
                    best[name][kind] = min(best[name].get(kind, us), us)
    finally:
        for t in transports.values():
            await t.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logs, Processes(Path(logs)) as procs:
        upstream = start_upstream(procs)
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {int(PROXY_CPU)})
        loop = new_loop()
        try:
            best = loop.run_until_complete(_measure(upstream.base_url, args.calls))
        finally:
            loop.close()
    for name, figures in best.items():
        print(
            f"{name:8} chat {figures['chat']:6.1f} us CPU/call   "
            f"stream (50 events) {figures['stream']:6.1f} us CPU/call"
        )


if __name__ == "__main__":
    main()
