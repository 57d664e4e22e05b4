"""The event loop every benchmark process runs on: uvloop, as ``nitroproxy serve`` uses.

Kept apart from ``nitroproxy.web.server.new_loop`` because importing that module imports the
whole proxy (about 0.6 s), which the short-lived load clients should not pay for.
"""

from __future__ import annotations

import asyncio


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
