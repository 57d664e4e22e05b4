"""The live feed of finished calls: a bounded broadcast from the usage-record sink to the
dashboard's SSE subscribers.

``publish`` runs on the hot path for every record. With nobody watching it returns at once;
with subscribers it encodes the record's metadata once and offers it to each queue without
waiting. A subscriber that reads too slowly loses the events its full queue cannot take and
is told how many (``missed``) with the next one it gets: the feed is a view, the record
itself still goes to the writer, so nothing billable is lost. Subscribers are bounded too.

Only metadata goes out, the same fields as the usage record minus the client's address and
user agent; a key's own session sees its key's calls only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

from nitroproxy.core.errors import Overloaded
from nitroproxy.core.types import UsageRecord

MAX_SUBSCRIBERS = 32
QUEUE_SIZE = 256
FIELDS = (
    "request_id",
    "ts",
    "key_id",
    "user_id",
    "model",
    "provider",
    "deployment",
    "upstream_model",
    "endpoint",
    "stream",
    "status",
    "outcome",
    "error_class",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "usage_source",
    "latency_ms",
    "ttft_ms",
    "output_tps",
    "attempts",
    "cache_hit",
)


def event_of(record: UsageRecord) -> dict[str, Any]:
    """The feed's view of a record: metadata only, and cost in dollars."""
    event = {name: getattr(record, name) for name in FIELDS}
    event["cost_usd"] = round(record.cost_nanos / 1e9, 9)
    return event


class Subscription:
    __slots__ = ("key_id", "missed", "queue")

    def __init__(self, key_id: str | None) -> None:
        self.key_id = key_id
        """None: every call (an admin); else only this key's calls."""
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_SIZE)
        self.missed = 0

    async def next(self) -> tuple[bytes, int] | None:
        """The next event's JSON and how many were missed before it; None once the feed
        closes."""
        data = await self.queue.get()
        if data is None:
            return None
        missed, self.missed = self.missed, 0
        return data, missed


class CallFeed:
    def __init__(self, *, max_subscribers: int = MAX_SUBSCRIBERS) -> None:
        self._max = max_subscribers
        self._subs: list[Subscription] = []
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, record: UsageRecord) -> None:
        if not self._subs:
            return
        data: bytes | None = None
        for sub in self._subs:
            if sub.key_id is not None and sub.key_id != record.key_id:
                continue
            if data is None:
                data = orjson.dumps(event_of(record))
            try:
                sub.queue.put_nowait(data)
            except asyncio.QueueFull:
                sub.missed += 1

    @contextlib.asynccontextmanager
    async def subscribe(self, key_id: str | None) -> AsyncIterator[Subscription]:
        if self._closed:
            raise Overloaded("the server is stopping")
        if len(self._subs) >= self._max:
            raise Overloaded(
                f"the live feed already has {self._max} viewers; try again later",
                code="feed_full",
            )
        sub = Subscription(key_id)
        self._subs.append(sub)
        try:
            yield sub
        finally:
            self._subs.remove(sub)

    def close(self) -> None:
        """End every subscription (at shutdown, so open streams do not hold it up)."""
        self._closed = True
        for sub in self._subs:
            if sub.queue.full():  # make room for the end marker
                sub.queue.get_nowait()
            sub.queue.put_nowait(None)
