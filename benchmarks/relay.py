"""The floor for any aiohttp gateway: a relay that does nothing but forward.

``python -m benchmarks.relay --upstream URL --port P``. One shared ``ClientSession``; the
request body is forwarded as it came; the response is streamed back chunk by chunk as the
upstream's bytes arrive. No auth, no parsing, no records: whatever a real gateway costs on top
of this is the price of its features.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from benchmarks.loop import new_loop

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)
# Hop-by-hop and length headers are the relay's own business, not the upstream's.
_DROP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "host"})


async def forward(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP}
    url = request.app[UPSTREAM] + request.path_qs
    session = request.app[SESSION]
    async with session.request(request.method, url, data=body, headers=headers) as upstream:
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROP}
        response = web.StreamResponse(status=upstream.status, headers=out)
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        try:
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away (a load generator stopping): nothing to answer
        return response


async def _session(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        app[SESSION] = session
        yield


def create_relay(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")
    app.cleanup_ctx.append(_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8081")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(
        create_relay(args.upstream),
        host=args.host,
        port=args.port,
        handler_cancellation=True,
        access_log=None,
        print=None,
        # aiohttp's default of 128 drops SYNs when 1,000 streams connect at once.
        backlog=4096,
        loop=new_loop(),
    )


if __name__ == "__main__":
    main()
