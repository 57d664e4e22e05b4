"""Running the application: the event loop, the listener, signals and graceful shutdown.

SIGTERM / SIGINT stop the server gracefully (``drain``); SIGHUP reloads the config file
(``web.reload``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from nitroproxy.config import ServerSettings, Settings
from nitroproxy.security import tls
from nitroproxy.telemetry import logs
from nitroproxy.web.app import create_app
from nitroproxy.web.appkeys import GATEWAY, SETTINGS, STATE, TRACKER
from nitroproxy.web.connections import ListenSite, Tracker
from nitroproxy.web.reload import Reloader

# A client that hangs up cancels its handler at once, so the upstream request is closed
# instead of running on into the void. The access line is ours (with tokens and latency),
# written by the gateway, so aiohttp's is off.
HANDLER_CANCELLATION = True
LINGERING_S = 1.0
AFTER_GRACE_S = 2.0  # for the ended streams to write their error, after the grace


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
    reuse_port: bool = False,
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
            reuse_port=reuse_port,
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


async def drain(runner: web.AppRunner, app: web.Application, grace: float) -> None:
    """SIGTERM: stop listening, close idle connections, let calls finish for ``grace``
    seconds, then end the streams still running (an in-band error in the client's format;
    their records say ``server_shutdown``) and give them a moment to say so."""
    log = logs.get_logger("nitroproxy")
    for site in list(runner.sites):
        await site.stop()
    if runner.server is not None:
        runner.server.pre_shutdown()  # idle keep-alive connections now, busy ones when done
    # on_shutdown, as aiohttp runs it before waiting for handlers: the dashboard's live
    # feed ends now rather than holding the grace open (runner.cleanup runs it again).
    await app.shutdown()
    tracker = app[TRACKER]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(grace):
            await tracker.idle.wait()
    if tracker.requests and GATEWAY in app:
        ended = app[GATEWAY].end_streams()
        log.warning("shutdown grace over", requests=tracker.requests, streams_ended=ended)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(AFTER_GRACE_S):
                await tracker.idle.wait()


async def _serve(
    settings: Settings,
    config_path: str | Path | None,
    reuse_port: bool = False,
    on_ready: Callable[[], None] | None = None,
) -> None:
    log = logs.get_logger("nitroproxy")
    ssl_context = tls.server_context_for(settings)
    server = settings.server
    app = create_app(settings)
    # drain() runs the grace; the runner's own timeout only bounds what is left after it.
    runner, port = await start(
        app,
        server.host,
        server.port,
        shutdown_grace=AFTER_GRACE_S,
        ssl_context=ssl_context,
        backlog=server.backlog,
        reuse_port=reuse_port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # An SSH session that closes sends SIGHUP: reload the config file, never stop.
    reloader = Reloader(app, config_path) if config_path is not None else None
    on_hup = reloader.request if reloader is not None else lambda: log.warning("SIGHUP: no file")
    state = app.get(STATE)
    if state is not None and reloader is not None:  # and on every other instance
        on_hup = state.watch_config(reloader.request)
    loop.add_signal_handler(
        signal.SIGHUP,
        on_hup,
    )
    log.info(
        "started",
        host=server.host,
        port=port,
        tls=ssl_context is not None,
        models=sorted(settings.models),
    )
    if on_ready is not None:
        on_ready()
    try:
        await stop.wait()
        log.info("stopping", grace_s=server.shutdown_grace)
        if reloader is not None:
            await reloader.wait()
        await drain(runner, app, server.shutdown_grace)
    finally:
        # Close the components in reverse order (the writer drains last).
        await runner.cleanup()
        logs.flush()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def serve(
    settings: Settings,
    config_path: str | Path | None = None,
    *,
    reuse_port: bool = False,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run until SIGTERM or SIGINT; SIGHUP reloads ``config_path``. ``reuse_port``: one of
    several workers on one port (``web.workers``); ``on_ready`` runs once it listens."""
    logs.configure_logging(level=settings.logging.level, fmt=settings.logging.format)
    loop = new_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(settings, config_path, reuse_port, on_ready))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)
    logs.get_logger("nitroproxy").info("stopped")
