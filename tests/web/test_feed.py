"""The live feed's broadcast: bounded per viewer and in viewers, filtered by key, closed at
shutdown, and free while nobody watches."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from nitroproxy.core.errors import Overloaded
from nitroproxy.web.feed import FIELDS, QUEUE_SIZE, CallFeed
from tests.records import make_record


async def test_a_slow_viewer_is_told_how_many_calls_it_missed() -> None:
    feed = CallFeed()
    async with feed.subscribe(None) as sub:
        for n in range(QUEUE_SIZE + 5):
            feed.publish(make_record(n))
        data, missed = await sub.next() or (b"", -1)
        assert missed == 5
        assert orjson.loads(data)["request_id"] == "req-0"
        for _ in range(QUEUE_SIZE - 1):
            assert (await sub.next() or (b"", -1))[1] == 0
        assert sub.queue.empty()
    assert feed.subscribers == 0


async def test_a_key_viewer_gets_its_own_calls_and_only_metadata() -> None:
    feed = CallFeed()
    async with feed.subscribe("key-b") as mine, feed.subscribe(None) as everything:
        feed.publish(make_record(1, key_id="key-a", client_ip="203.0.113.0", user_agent="ua/1"))
        feed.publish(make_record(2, key_id="key-b"))
        assert mine.queue.qsize() == 1 and everything.queue.qsize() == 2
        event = orjson.loads((await mine.next() or (b"", 0))[0])
        assert event["request_id"] == "req-2"
        assert set(event) == {*FIELDS, "cost_usd"}
        assert "client_ip" not in event and "user_agent" not in event


async def test_viewers_are_bounded_and_closing_ends_every_subscription() -> None:
    feed = CallFeed(max_subscribers=2)
    async with feed.subscribe(None) as a, feed.subscribe(None) as b:
        with pytest.raises(Overloaded):
            async with feed.subscribe(None):
                pass
        for n in range(QUEUE_SIZE):
            feed.publish(make_record(n))  # a's queue is full when the feed closes
        waiter = asyncio.ensure_future(b.next())
        feed.close()
        drained = [await a.next() for _ in range(QUEUE_SIZE)]
        assert drained[-1] is None
        assert (await waiter) is not None  # b had events queued before the end marker
    with pytest.raises(Overloaded):
        async with feed.subscribe(None):
            pass


def test_publishing_with_nobody_watching_encodes_nothing() -> None:
    feed = CallFeed()
    record = make_record(0)
    record.model = object()  # type: ignore[assignment]  # would not encode
    feed.publish(record)
