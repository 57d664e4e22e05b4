import asyncio
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from nitroproxy.store.db import open_db
from nitroproxy.store.writer import UsageWriter
from tests.records import make_record


class Calls:
    """Records callback arguments and lets a test await a running total."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self._changed = asyncio.Event()

    def __call__(self, n: int) -> None:
        self.calls.append(n)
        self._changed.set()

    async def until_total(self, total: int, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while sum(self.calls) < total:
                self._changed.clear()
                await self._changed.wait()


async def stored_ids(path: Path) -> list[str]:
    conn = await open_db(path)
    try:
        rows = await conn.execute_fetchall("SELECT id FROM usage ORDER BY ts")
    finally:
        await conn.close()
    return [r[0] for r in rows]


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    # Polls: the writer deliberately exposes no event for "batch taken".
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "usage.db"


async def test_many_records_are_written_in_few_batches(db_path):
    written = Calls()
    writer = UsageWriter(db_path, batch_size=250, flush_interval=60, on_written=written)
    await writer.start()
    for n in range(1000):
        assert writer.put(make_record(n))
    await written.until_total(1000)
    await writer.close()
    assert written.calls == [250, 250, 250, 250]
    assert writer.written == 1000
    assert writer.dropped == 0
    assert len(await stored_ids(db_path)) == 1000


async def test_a_partial_batch_is_flushed_after_the_interval(db_path):
    written = Calls()
    writer = UsageWriter(db_path, batch_size=500, flush_interval=0.05, on_written=written)
    await writer.start()
    try:
        writer.put(make_record(1))
        writer.put(make_record(2))
        await written.until_total(2, within=2.0)
        assert written.calls == [2]
        assert writer.queue_depth == 0
    finally:
        await writer.close()


async def test_close_flushes_everything_queued(db_path):
    writer = UsageWriter(db_path, batch_size=1000, flush_interval=60)
    await writer.start()
    for n in range(10):
        writer.put(make_record(n))
    await writer.close()
    assert writer.written == 10
    assert await stored_ids(db_path) == [f"rec-{n}" for n in range(10)]
    assert not writer.put(make_record(99))
    assert writer.dropped == 1


async def test_put_never_blocks_and_drops_when_the_queue_is_full_while_the_db_is_locked(
    db_path, caplog
):
    dropped = Calls()
    writer = UsageWriter(db_path, batch_size=5, flush_interval=0, max_queue=10, on_dropped=dropped)
    await writer.start()
    holder = await open_db(db_path)
    try:
        await holder.execute("BEGIN IMMEDIATE")  # the writer stalls on busy_timeout
        for n in range(5):
            writer.put(make_record(n))
        await until(lambda: writer.queue_depth == 0)  # that batch is now stuck in flight

        with caplog.at_level(logging.WARNING, logger="nitroproxy.writer"):
            accepted = [writer.put(make_record(n)) for n in range(5, 18)]
        assert accepted == [True] * 10 + [False] * 3
        assert writer.queue_depth == 10
        assert writer.dropped == 3
        assert dropped.calls == [1, 1, 1]
        warnings = [r for r in caplog.records if r.name == "nitroproxy.writer"]
        assert len(warnings) == 1  # rate-limited to one per log_interval
        assert "rec-" not in warnings[0].getMessage()

        await holder.execute("ROLLBACK")
        await writer.close()
    finally:
        await holder.close()
    assert writer.written == 15
    assert len(await stored_ids(db_path)) == 15


async def test_a_failing_batch_is_dropped_and_the_writer_keeps_going(db_path):
    written, dropped = Calls(), Calls()
    writer = UsageWriter(
        db_path, batch_size=2, flush_interval=0, on_written=written, on_dropped=dropped
    )
    await writer.start()
    try:
        # NOT NULL violation: the whole batch's transaction fails.
        writer.put(dataclasses.replace(make_record(1), model=cast(Any, None)))
        writer.put(make_record(2))
        await dropped.until_total(2)
        writer.put(make_record(3))
        writer.put(make_record(4))
        await written.until_total(2)
    finally:
        await writer.close()
    assert (writer.written, writer.dropped) == (2, 2)
    assert dropped.calls == [2]
    assert await stored_ids(db_path) == ["rec-3", "rec-4"]


async def test_records_still_queued_at_the_close_deadline_are_counted_as_dropped(
    db_path,
):
    writer = UsageWriter(db_path, batch_size=5, flush_interval=0)
    await writer.start()
    holder = await open_db(db_path)
    try:
        await holder.execute("BEGIN IMMEDIATE")
        for n in range(12):
            writer.put(make_record(n))
        await until(lambda: writer.queue_depth == 7)

        async def release_later() -> None:
            await asyncio.sleep(0.3)
            await holder.execute("ROLLBACK")

        release = asyncio.create_task(release_later())
        await writer.close(timeout=0.1)
        await release
    finally:
        await holder.close()
    # The batch in flight at the deadline finished; the 7 behind it did not get a turn.
    assert (writer.written, writer.dropped) == (5, 7)
    assert len(await stored_ids(db_path)) == 5


async def test_records_put_before_start_are_written(db_path):
    writer = UsageWriter(db_path, flush_interval=60)
    writer.put(make_record(1))
    await writer.start()
    with pytest.raises(RuntimeError):
        await writer.start()
    await writer.close()
    await writer.close()  # idempotent
    assert await stored_ids(db_path) == ["rec-1"]


async def test_flush_returns_once_every_record_put_before_it_is_committed(tmp_path) -> None:
    path = tmp_path / "u.db"
    # A long flush interval: without flush() these records would wait a minute.
    writer = UsageWriter(path, batch_size=500, flush_interval=60.0)
    await writer.start()
    try:
        for i in range(3):
            assert writer.put(make_record(i))
        assert await writer.flush(timeout=5.0)
        assert len(await stored_ids(path)) == 3
        assert await writer.flush(timeout=0.01)  # nothing pending: at once
    finally:
        await writer.close()
