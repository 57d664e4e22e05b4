"""The benchmark upstream: the project's mock provider with recording off, on uvloop.

``python -m benchmarks.upstream --port P [--tokens N]``. ``nitroproxy mock-provider`` keeps a
record of every request (``MockSettings.record``) and runs on the default loop; a soak of
100,000 requests would grow its memory and slow it down, so the harness runs this instead.
Each request is scripted through its model name (``mock+tokens=50+delay=5``).
"""

from __future__ import annotations

import argparse

from aiohttp import web

from benchmarks.loop import new_loop
from nitroproxy.mock import MockSettings, create_mock_app


async def _otlp_sink(request: web.Request) -> web.Response:
    """An OTLP/HTTP traces endpoint that reads and drops what it gets (the traced variant
    exports here, so its cost includes encoding and sending the spans)."""
    await request.read()
    return web.Response(body=b"", content_type="application/x-protobuf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args()
    app = create_mock_app(MockSettings(tokens=args.tokens, record=False))
    app.router.add_post("/v1/traces", _otlp_sink)
    web.run_app(
        app,
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
