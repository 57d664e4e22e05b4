"""Propagation: what one process changes is in force on every process within a second.

``announce(kind)`` publishes on the prefix's channel (``P:events``); every other process's
listener runs the handlers registered for that kind: ``accounts`` (a key revoked or
changed, a user suspended or erased) reloads the key table from the database, so the next
request is judged by it; ``config`` (a SIGHUP reload) reloads each process's own config
file. Publishing is best effort and never delays the caller: a message lost to an outage
or a reconnect is healed by the periodic full resync (every ``state.resync_interval``),
which runs every handler registered with ``resync=True`` whatever was received, and by one
resync each time the listener (re)subscribes. A config reload is not repeated by resyncs
(it is an operator's act, not a state to converge to); its handler runs on messages only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable

import orjson
from redis.exceptions import RedisError

from nitroproxy.state.link import RedisLink, StateUnavailable
from nitroproxy.telemetry import logs

__all__ = ["Bus"]

Handler = Callable[[], Awaitable[None]]


class Bus:
    def __init__(self, link: RedisLink, *, resync_interval: float) -> None:
        self._link = link
        self._channel = link.key("events")
        self._resync_interval = resync_interval
        self._handlers: dict[str, list[Handler]] = {}
        self._resync: list[Handler] = []
        self._me = os.urandom(8).hex()
        self._tasks: list[asyncio.Task[None]] = []
        self._sends: set[asyncio.Task[None]] = set()
        self._log = logs.get_logger("nitroproxy.state")
        self.received = 0
        self.subscribed = asyncio.Event()

    def on(self, kind: str, handler: Handler, *, resync: bool = True) -> None:
        self._handlers.setdefault(kind, []).append(handler)
        if resync:
            self._resync.append(handler)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listen(), name="nitroproxy-state-listen"),
            loop.create_task(self._resync_loop(), name="nitroproxy-state-resync"),
        ]

    async def close(self) -> None:
        for task in (*self._tasks, *self._sends):
            task.cancel()
        for task in (*self._tasks, *self._sends):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def announce(self, kind: str) -> None:
        """Publish ``kind`` to every process (this one included), without waiting."""
        task = asyncio.get_running_loop().create_task(self._publish(kind))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _publish(self, kind: str) -> None:
        message = orjson.dumps({"kind": kind, "from": self._me})
        with contextlib.suppress(StateUnavailable):
            await self._link.background(lambda: self._link.client.publish(self._channel, message))

    async def _listen(self) -> None:
        while True:
            try:
                async with self._link.client.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    self.subscribed.set()
                    await self.resync()  # whatever was published while we were away
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self._dispatch(message.get("data"))
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                self._log.debug("state listener reconnecting", error=type(exc).__name__)
                await asyncio.sleep(self._link.settings.retry_interval)

    async def _dispatch(self, data: object) -> None:
        try:
            message = orjson.loads(data)  # type: ignore[arg-type]
            kind, sender = message["kind"], message.get("from")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if sender == self._me:
            return  # this process already did what it announced
        self.received += 1
        await self._run(self._handlers.get(str(kind), []))

    async def resync(self) -> None:
        """Run every handler: the full resync that heals a missed message."""
        await self._run(list(self._resync))

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self._resync_interval)
            await self.resync()

    async def _run(self, handlers: list[Handler]) -> None:
        for handler in handlers:
            try:
                await handler()
            except StateUnavailable:
                continue
            except Exception:
                self._log.exception("state propagation handler failed")
