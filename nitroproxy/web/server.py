"""Running the application: the event loop, the listener, signals and graceful shutdown."""

from __future__ import annotations

import asyncio

from aiohttp import web

from nitroproxy import logs
from nitroproxy.config import Settings
from nitroproxy.web.app import create_app

# A client that hangs up cancels its handler at once, so the upstream request is closed
# instead of running on into the void. The access line is ours (with tokens and latency),
# written by the gateway, so aiohttp's is off.
HANDLER_CANCELLATION = True


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


async def start(
    app: web.Application, host: str, port: int, *, shutdown_grace: float = 5.0
) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host:port`` (0 picks a free port) the way ``serve`` does; returns the
    runner and the bound port. Tests use this to run the real server."""
    runner = web.AppRunner(
        app,
        shutdown_timeout=shutdown_grace,
        handler_cancellation=HANDLER_CANCELLATION,
        access_log=None,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port
    for address in runner.addresses:
        bound = int(address[1])
        break
    return runner, bound


def serve(settings: Settings) -> None:
    logs.configure_logging(level=settings.logging.level, fmt=settings.logging.format)
    log = logs.get_logger("nitroproxy")
    log.info(
        "starting",
        host=settings.server.host,
        port=settings.server.port,
        models=sorted(settings.models),
    )
    web.run_app(
        create_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        shutdown_timeout=settings.server.shutdown_grace,
        print=None,
        loop=new_loop(),
        handler_cancellation=HANDLER_CANCELLATION,
        access_log=None,
    )
    log.info("stopped")
