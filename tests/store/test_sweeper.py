import asyncio
from typing import Any

import aiosqlite
import pytest

from nitroproxy.core.retention import RetentionPolicy
from nitroproxy.core.types import UsageRecord
from nitroproxy.store.db import open_db
from nitroproxy.store.sweeper import RetentionSweeper, SweepResult
from nitroproxy.store.usage import (
    GROUP_BY_OPTIONS,
    UsageRow,
    insert_many,
    list_records,
    query_usage,
)
from tests.records import make_record as usage_record

DAY = 86_400.0
MAR10 = 1_710_028_800.0  # 2024-03-10 00:00:00 UTC
DAYS = 10


def make_record(n: int, ts: float, **overrides: Any) -> UsageRecord:
    """Records that differ by ``n`` in every dimension the roll-up groups or sums."""
    varied: dict[str, Any] = {
        "ts": ts,
        "key_id": f"key-{n % 3}",
        "user_id": f"user-{n % 2}" if n % 5 else None,
        "model": ("gpt-4o", "claude")[n % 2],
        "provider": ("openai", "anthropic", None)[n % 3],
        "deployment": None,
        "upstream_model": None,
        "stream": bool(n % 2),
        "status": 500 if n % 7 == 0 else 200,
        "outcome": "upstream_error" if n % 7 == 0 else "ok",
        "prompt_tokens": n,
        "completion_tokens": 2 * n,
        "cached_tokens": n % 4,
        "cache_write_tokens": n % 3,
        "reasoning_tokens": n % 5,
        "cost_nanos": 1_000 * n,
        "latency_ms": 10.0,
    }
    return usage_record(n, **{**varied, **overrides})


def dataset(per_day: int = 6) -> list[UsageRecord]:
    """``per_day`` records on each of DAYS days from MAR10, spread over the day."""
    return [
        make_record(d * per_day + i, MAR10 + d * DAY + i * (DAY / per_day) + 0.5)
        for d in range(DAYS)
        for i in range(per_day)
    ]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def conn(tmp_path):
    db = await open_db(tmp_path / "usage.db")
    yield db
    await db.close()


async def snapshot(conn: aiosqlite.Connection) -> dict[str, list[UsageRow]]:
    result = {}
    for group_by in GROUP_BY_OPTIONS:
        result[group_by] = await query_usage(
            conn, start=MAR10, end=MAR10 + DAYS * DAY, group_by=group_by
        )
        result[f"all-{group_by}"] = await query_usage(conn, group_by=group_by, start=None, end=None)
    return result


async def count(conn: aiosqlite.Connection, table: str) -> int:
    rows = await conn.execute_fetchall(f"SELECT COUNT(*) FROM {table}")
    return int(next(iter(rows))[0])


async def test_roll_up_keeps_totals_and_touches_nothing_younger_than_the_window(conn):
    records = dataset()
    await insert_many(conn, records)
    before = await snapshot(conn)
    # now = day 5 12:00, raw window 2 days -> cutoff day 3 00:00: days 0..2 are rolled up.
    clock = Clock(MAR10 + 5 * DAY + 12 * 3600)
    sweeper = RetentionSweeper(conn, RetentionPolicy(requests_s=2 * DAY), clock=clock)

    result = await sweeper.run_once()

    assert result.deleted_raw == 18
    assert result.rolled_up > 0
    assert result.deleted_aggregates == 0
    assert await snapshot(conn) == before
    young = [r for r in records if r.ts >= MAR10 + 3 * DAY]
    assert await list_records(conn) == young
    await sweeper.close()
    assert await count(conn, "usage") == len(young)  # a borrowed connection stays open


async def test_running_twice_never_double_counts(conn):
    await insert_many(conn, dataset())
    before = await snapshot(conn)
    sweeper = RetentionSweeper(conn, RetentionPolicy(requests_s=DAY), clock=Clock(0))
    now = MAR10 + 6 * DAY
    first = await sweeper.run_once(now)
    assert first.deleted_raw == 30
    assert await sweeper.run_once(now) == SweepResult(0, 0, 0)
    assert await snapshot(conn) == before


async def test_rolling_up_day_by_day_matches_rolling_up_at_once(tmp_path):
    totals = []
    for step in (DAY, 10 * DAY):
        db = await open_db(tmp_path / f"{step}.db")
        try:
            await insert_many(db, dataset())
            sweeper = RetentionSweeper(db, RetentionPolicy(requests_s=DAY))
            now = MAR10 + DAY
            while now <= MAR10 + (DAYS + 1) * DAY:
                await sweeper.run_once(now)
                now += step
            assert await count(db, "usage") == 0
            totals.append(await snapshot(db))
        finally:
            await db.close()
    assert totals[0] == totals[1]


async def test_aggregates_older_than_the_analytics_window_are_deleted(conn):
    records = dataset()
    await insert_many(conn, records)
    sweeper = RetentionSweeper(conn, RetentionPolicy(requests_s=DAY, analytics_s=5 * DAY))
    first = await sweeper.run_once(MAR10 + 5 * DAY)  # days 0..3 rolled up, none expired yet
    assert (first.deleted_raw, first.deleted_aggregates) == (24, 0)
    all_days = [f"2024-03-{10 + d}" for d in range(DAYS)]
    assert [r.group for r in await query_usage(conn, group_by="day", start=None, end=None)] == (
        all_days
    )

    # Analytics cutoff day 3 01:00: days 0..2 lie wholly before it and go; day 3 stays.
    second = await sweeper.run_once(MAR10 + 8 * DAY + 3600)
    assert second.deleted_raw == 18  # days 4..6
    rows = await query_usage(conn, group_by="day", start=None, end=None)
    assert [r.group for r in rows] == all_days[3:]
    groups = {
        (r.ts // DAY, r.user_id, r.key_id, r.model, r.provider)
        for r in records
        if r.ts < MAR10 + 3 * DAY
    }
    assert second.deleted_aggregates == len(groups)
    assert await count(conn, "usage_daily") == first.rolled_up + second.rolled_up - len(groups)


async def test_batch_size_is_respected(conn):
    await insert_many(conn, dataset(per_day=5))
    deleted: list[tuple[str, int]] = []
    sweeper = RetentionSweeper(
        conn,
        RetentionPolicy(requests_s=DAY, analytics_s=2.5 * DAY),
        batch_size=10,
        on_deleted=lambda table, n: deleted.append((table, n)),
    )
    result = await sweeper.run_once(MAR10 + 6 * DAY)  # rolls 25 rows (days 0..4)
    assert [n for table, n in deleted if table == "usage"] == [10, 10, 5]
    assert result.deleted_raw == 25
    # Days 0..2 expire: 3 days x 5 distinct groups each.
    assert [n for table, n in deleted if table == "usage_daily"] == [10, 5]
    assert result.deleted_aggregates == 15


async def test_a_failed_batch_changes_nothing(conn):
    await insert_many(conn, dataset())
    before = await snapshot(conn)
    await conn.execute(
        "CREATE TRIGGER no_delete BEFORE DELETE ON usage BEGIN SELECT RAISE(ABORT, 'no'); END"
    )
    sweeper = RetentionSweeper(conn, RetentionPolicy(requests_s=DAY))
    with pytest.raises(aiosqlite.IntegrityError):
        await sweeper.run_once(MAR10 + 5 * DAY)
    assert await count(conn, "usage_daily") == await count(conn, "billing_lines") == 0
    assert await count(conn, "usage") == len(dataset())
    await conn.execute("DROP TRIGGER no_delete")
    await sweeper.run_once(MAR10 + 5 * DAY)
    assert await snapshot(conn) == before


async def test_added_steps_run_in_batches_after_the_usage_steps(conn):
    remaining = {"n": 7}
    seen: list[tuple[float, int]] = []

    async def expire_cache(db: aiosqlite.Connection, now: float, limit: int) -> int:
        assert db is conn
        seen.append((now, limit))
        n = min(limit, remaining["n"])
        remaining["n"] -= n
        return n

    sweeper = RetentionSweeper(conn, RetentionPolicy(), batch_size=3)
    sweeper.add_step("cache", expire_cache)
    with pytest.raises(ValueError, match="already exists"):
        sweeper.add_step("cache", expire_cache)
    result = await sweeper.run_once(MAR10)
    assert result.extra == {"cache": 7}
    assert seen == [(MAR10, 3)] * 3


async def test_background_task_sweeps_with_its_own_connection_and_closes_cleanly(
    tmp_path,
):
    path = tmp_path / "usage.db"
    setup = await open_db(path)
    await insert_many(setup, dataset())
    await setup.close()

    done = asyncio.Event()
    sweeper = RetentionSweeper(
        path,
        RetentionPolicy(requests_s=DAY),
        interval=3600,
        clock=Clock(MAR10 + 3 * DAY),
        on_deleted=lambda table, n: done.set(),
    )
    sweeper.start()
    with pytest.raises(RuntimeError):
        sweeper.start()
    async with asyncio.timeout(5):
        await done.wait()
    await sweeper.close()
    with pytest.raises(RuntimeError, match="closed"):
        await sweeper.run_once()

    check = await open_db(path)
    try:
        assert await count(check, "usage") == (DAYS - 2) * 6
    finally:
        await check.close()
