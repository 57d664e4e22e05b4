"""Running the application: the event loop, the listener, signals and graceful shutdown."""

from __future__ import annotations

import asyncio
import signal
import ssl

from aiohttp import web

from nitroproxy.config import ServerSettings, Settings
from nitroproxy.security import tls
from nitroproxy.telemetry import logs
from nitroproxy.web.app import create_app
from nitroproxy.web.appkeys import SETTINGS, TRACKER
from nitroproxy.web.connections import ListenSite, Tracker

# A client that hangs up cancels its handler at once, so the upstream request is closed
# instead of running on into the void. The access line is ours (with tokens and latency),
# written by the gateway, so aiohttp's is off.
HANDLER_CANCELLATION = True
LINGERING_S = 1.0


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


async def start(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_grace: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    backlog: int = 1024,
) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host:port`` (0 picks a free port) the way ``serve`` does; returns the
    runner and the bound port. Tests use this to run the real server. With ``ssl_context``
    (``tls.server_context_for(settings)``) the listener speaks HTTPS. The client timeouts
    and the connection limit come from the app's settings (``web.connections``).

    If any component fails to start, those already started are stopped again before the
    error propagates, so a failed start leaves no thread or connection behind."""
    settings = app.get(SETTINGS)
    server = settings.server if settings is not None else ServerSettings()
    tracker = app.get(TRACKER) or Tracker()
    runner = web.AppRunner(
        app,
        shutdown_timeout=shutdown_grace,
        handler_cancellation=HANDLER_CANCELLATION,
        access_log=None,
    )
    try:
        await runner.setup()
        # A burst of new connections (1,000 clients opening streams at once) overflows the
        # default backlog of 128; the kernel then drops SYNs and clients retry a second later.
        site = ListenSite(
            runner,
            host,
            port,
            tracker=tracker,
            limit=server.limits.connections,
            header_timeout=server.timeouts.header,
            ssl_context=ssl_context,
            backlog=backlog,
            # aiohttp's own timer: an idle connection between requests.
            keepalive_timeout=server.timeouts.keepalive,
            # After an answer given before the body was read (413, 408, 503), the rest of
            # the body is read and discarded so the client sees the answer; for 1 s, not
            # aiohttp's 10 s that a slow client could fill a byte at a time.
            lingering_time=LINGERING_S,
            access_log=None,
        )
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = port
    for address in runner.addresses:
        bound = int(address[1])
        break
    return runner, bound


async def _serve(settings: Settings) -> None:
    log = logs.get_logger("nitroproxy")
    ssl_context = tls.server_context_for(settings)
    server = settings.server
    runner, port = await start(
        create_app(settings),
        server.host,
        server.port,
        shutdown_grace=server.shutdown_grace,
        ssl_context=ssl_context,
        backlog=server.backlog,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "started",
        host=server.host,
        port=port,
        tls=ssl_context is not None,
        models=sorted(settings.models),
    )
    try:
        await stop.wait()
        log.info("stopping", grace_s=server.shutdown_grace)
    finally:
        # Stop accepting, let in-flight requests and streams finish within the grace period,
        # then close the components in reverse order (the writer drains last).
        await runner.cleanup()
        logs.flush()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def serve(settings: Settings) -> None:
    logs.configure_logging(level=settings.logging.level, fmt=settings.logging.format)
    loop = new_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(settings))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)
    logs.get_logger("nitroproxy").info("stopped")
