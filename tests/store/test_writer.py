import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from nitroproxy.store.db import open_db
from nitroproxy.store.journal import SPILL, WAL, Journal, decode
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


async def test_a_database_locked_past_busy_timeout_loses_nothing_and_says_so(db_path):
    failed = Calls()
    writer = UsageWriter(
        db_path, batch_size=5, flush_interval=0, busy_timeout=0.05, on_failed=failed
    )
    await writer.start()
    holder = await open_db(db_path)
    try:
        await holder.execute("BEGIN IMMEDIATE")  # another process, holding the write lock
        for n in range(12):
            assert writer.put(make_record(n))
        await failed.until_total(3)  # retried with backoff, not dropped
        status = writer.status()
        assert not status.writable and "locked" in (status.error or "")
        assert not status.ready
        assert writer.queue_depth == 12
        assert writer.accepting  # below max_queue: memory still takes records
        await holder.execute("ROLLBACK")
        assert await writer.flush(timeout=5.0)
    finally:
        await holder.close()
        await writer.close()
    assert (writer.written, writer.dropped) == (12, 0)
    assert writer.status().writable
    assert len(await stored_ids(db_path)) == 12


async def test_records_wait_in_memory_then_move_to_the_journal_and_are_replayed(db_path, tmp_path):
    journal = tmp_path / "journal"
    journaled, replayed = Calls(), Calls()
    writer = UsageWriter(
        db_path,
        batch_size=4,
        flush_interval=0,
        busy_timeout=0.02,
        journal_dir=journal,
        journal_after=0.1,
        retry_max=0.1,
        on_journaled=journaled,
        on_replayed=replayed,
    )
    await writer.start()
    holder = await open_db(db_path)
    try:
        await holder.execute("BEGIN IMMEDIATE")
        for n in range(20):
            writer.put(make_record(n))
        await journaled.until_total(16)  # all but the batch being retried
        assert writer.journal_pending >= 16
        assert writer.queue_depth <= 4
        assert [p.name.split("-")[0] for p in journal.iterdir()] == ["spill"]
        await holder.execute("ROLLBACK")
        assert await writer.flush(timeout=5.0)
        await replayed.until_total(writer.journaled)
        assert writer.journal_pending == 0
    finally:
        await holder.close()
        await writer.close()
    assert sorted(await stored_ids(db_path)) == sorted(f"rec-{n}" for n in range(20))
    assert list(journal.iterdir()) == []
    assert writer.dropped == 0


async def test_the_journal_is_replayed_at_start_up_and_a_replay_never_bills_twice(
    db_path, tmp_path
):
    journal_dir = tmp_path / "journal"
    writer = UsageWriter(db_path, journal_dir=journal_dir)
    await writer.start()
    writer.put(make_record(1))
    await writer.close()
    # What a crashed process left: two segments, one repeating a record already stored.
    left = Journal(journal_dir)
    left.append(SPILL, [make_record(1), make_record(2)])
    left.append(WAL, [make_record(3)])
    left.close()
    again = UsageWriter(db_path, journal_dir=journal_dir)
    await again.start()
    await again.close()
    assert sorted(await stored_ids(db_path)) == ["rec-1", "rec-2", "rec-3"]
    assert list(journal_dir.iterdir()) == []


async def test_at_the_close_deadline_what_is_left_goes_to_the_journal(db_path, tmp_path):
    journal = tmp_path / "journal"
    writer = UsageWriter(
        db_path, batch_size=5, flush_interval=0, busy_timeout=0.05, journal_dir=journal
    )
    await writer.start()
    holder = await open_db(db_path)
    try:
        await holder.execute("BEGIN IMMEDIATE")
        for n in range(12):
            writer.put(make_record(n))
        await writer.close(timeout=0.2)
        await holder.execute("ROLLBACK")
    finally:
        await holder.close()
    assert (writer.written, writer.dropped, writer.journaled) == (0, 0, 12)
    again = UsageWriter(db_path, journal_dir=journal)
    await again.start()
    await again.close()
    assert len(await stored_ids(db_path)) == 12


async def test_without_memory_or_journal_left_new_records_are_refused_or_dropped(db_path):
    refuse = UsageWriter(db_path, batch_size=2, flush_interval=0, max_queue=4, busy_timeout=0.02)
    serve = UsageWriter(
        db_path, batch_size=2, flush_interval=0, max_queue=4, busy_timeout=0.02, on_failure="serve"
    )
    await refuse.start()
    await serve.start()
    holder = await open_db(db_path)
    await holder.execute("BEGIN IMMEDIATE")
    try:
        for n in range(6):
            refuse.put(make_record(n))
            serve.put(make_record(100 + n))
        # refuse: the gateway stops admitting; records of requests already answered stay.
        assert not refuse.accepting
        assert (refuse.queue_depth, refuse.dropped) == (6, 0)
        # serve: answered anyway, so what memory cannot hold is dropped (and counted).
        assert (serve.queue_depth, serve.dropped) == (4, 2)
        await holder.execute("ROLLBACK")
        assert await refuse.flush(timeout=5.0)
        assert refuse.accepting
    finally:
        await holder.close()
        await refuse.close()
        await serve.close()
    assert len(await stored_ids(db_path)) == 10


async def test_an_idle_writer_notices_the_database_works_again(db_path):
    writer = UsageWriter(db_path, flush_interval=0, busy_timeout=0.02, retry_max=0.05)
    await writer.start()
    holder = await open_db(db_path)
    try:
        await holder.execute("BEGIN IMMEDIATE")
        writer.put(make_record(1))
        await until(lambda: not writer.status().writable)
        await holder.execute("ROLLBACK")
        await until(lambda: writer.status().writable)
    finally:
        await holder.close()
        await writer.close()


async def test_put_durable_returns_once_the_record_is_fsynced_in_the_journal(db_path, tmp_path):
    journal = tmp_path / "journal"
    writer = UsageWriter(db_path, flush_interval=60, journal_dir=journal)
    await writer.start()
    try:
        results = await asyncio.gather(*(writer.put_durable(make_record(n)) for n in range(3)))
        assert results == [True, True, True]
        # Not in the database yet (flush_interval), but on disk: a crash now loses nothing.
        (segment,) = journal.iterdir()
        assert segment.name.startswith("wal-")
        # (Journal.read skips a segment a live writer holds; a crash releases that lock.)
        found = decode(segment.read_bytes())
        assert [r.id for r in found.records] == ["rec-0", "rec-1", "rec-2"]
        assert await writer.flush(timeout=5.0)
    finally:
        await writer.close()
    assert list(journal.iterdir()) == []  # the database holds it all: the copy is gone
    assert len(await stored_ids(db_path)) == 3


async def test_a_record_the_database_refuses_is_dropped_alone(db_path):
    written, dropped = Calls(), Calls()
    writer = UsageWriter(
        db_path, batch_size=2, flush_interval=0, on_written=written, on_dropped=dropped
    )
    await writer.start()
    try:
        # NOT NULL violation: the batch fails, then each record is tried on its own.
        writer.put(dataclasses.replace(make_record(1), model=cast(Any, None)))
        writer.put(make_record(2))
        await dropped.until_total(1)
        writer.put(make_record(3))
        writer.put(make_record(4))
        await written.until_total(3)
    finally:
        await writer.close()
    assert (writer.written, writer.dropped) == (3, 1)
    assert await stored_ids(db_path) == ["rec-2", "rec-3", "rec-4"]


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
