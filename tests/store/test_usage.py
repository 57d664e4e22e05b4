import dataclasses

import pytest

from nitroproxy.core.types import UsageRecord
from nitroproxy.store.db import open_db
from nitroproxy.store.usage import (
    GROUP_BY_OPTIONS,
    UsageRow,
    delete_daily_before,
    insert_many,
    list_records,
    query_usage,
    record_to_row,
    roll_up,
    row_to_record,
)
from tests.records import MAR10, make_record

DAY = 86_400.0


@pytest.fixture
async def conn(tmp_path):
    db = await open_db(tmp_path / "usage.db")
    yield db
    await db.close()


async def test_every_field_round_trips(conn):
    full = make_record(
        1,
        stream=True,
        status=502,
        outcome="upstream_error",
        error_class="UpstreamError",
        ttft_ms=33.25,
        output_tps=81.5,
        attempts=3,
        client_ip="203.0.113.9",
        user_agent="openai-python/1.40",
        cache_hit=True,
        usage_source="estimated",
        cost_nanos=9_876_543_210,
    )
    sparse = make_record(
        2,
        key_id=None,
        user_id=None,
        provider=None,
        deployment=None,
        upstream_model=None,
    )
    await insert_many(conn, [full, sparse])
    assert await list_records(conn) == [full, sparse]
    assert row_to_record(record_to_row(full)) == full


async def test_inserting_nothing_is_a_no_op_and_duplicate_ids_are_stored_once(conn):
    await insert_many(conn, [])
    record = make_record(1)
    await insert_many(conn, [record])
    await insert_many(conn, [record, dataclasses.replace(record, status=500)])
    assert await list_records(conn) == [record]


def _dataset() -> list[UsageRecord]:
    return [
        make_record(1, model="gpt-4o", provider="openai", key_id="k1", user_id="u1"),
        make_record(2, model="gpt-4o", provider="azure", key_id="k2", user_id="u1"),
        make_record(3, model="claude", provider="anthropic", key_id="k3", user_id="u2"),
        make_record(4, ts=MAR10 + DAY + 5, model="claude", provider=None, key_id=None),
    ]


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        ("day", {"2024-03-10": 3, "2024-03-11": 1}),
        ("model", {"gpt-4o": 2, "claude": 2}),
        ("provider", {"openai": 1, "azure": 1, "anthropic": 1, "": 1}),
        ("key", {"k1": 1, "k2": 1, "k3": 1, "": 1}),
        ("user", {"u1": 2, "u2": 1, "user-a": 1}),
    ],
)
async def test_group_by_counts_requests_per_group(conn, group_by, expected):
    assert group_by in GROUP_BY_OPTIONS
    await insert_many(conn, _dataset())
    rows = await query_usage(conn, start=None, end=None, group_by=group_by)
    assert {r.group: r.requests for r in rows} == expected
    assert [r.group for r in rows] == sorted(expected)


async def test_unknown_group_by_is_rejected(conn):
    with pytest.raises(ValueError, match="group_by"):
        await query_usage(conn, start=None, end=None, group_by="deployment")


async def test_query_sums_tokens_cost_and_errors(conn):
    records = [
        make_record(1, cost_nanos=1_500_000_000),
        make_record(2, status=500, outcome="upstream_error"),
        make_record(3, status=200, outcome="client_disconnected"),
        make_record(4, status=429, outcome="rate_limited"),
        make_record(5, outcome="cache_hit", cache_hit=True),
    ]
    await insert_many(conn, records)
    [row] = await query_usage(conn, start=None, end=None, group_by="model")
    assert row == UsageRow(
        group="gpt-4o",
        requests=5,
        errors=3,
        prompt_tokens=50,
        completion_tokens=25,
        cached_tokens=10,
        cache_write_tokens=5,
        reasoning_tokens=15,
        cost_nanos=1_500_004_000,
    )
    assert row.cost_usd == pytest.approx(1.500004)


async def test_query_filters_by_half_open_range_key_and_user(conn):
    await insert_many(conn, _dataset())

    async def requests(
        start: float | None = None,
        end: float | None = None,
        key_id: str | None = None,
        user_id: str | None = None,
    ) -> int:
        rows = await query_usage(
            conn, start=start, end=end, group_by="model", key_id=key_id, user_id=user_id
        )
        return sum(r.requests for r in rows)

    assert await requests(start=MAR10 + 2, end=MAR10 + 3) == 1
    assert await requests(start=MAR10 + DAY) == 1
    assert await requests(end=MAR10 + DAY) == 3
    assert await requests(key_id="k2") == 1
    assert await requests(user_id="u1") == 2
    assert await requests(user_id="u1", key_id="k3") == 0


async def test_list_records_filters_orders_oldest_first_and_limits(conn):
    records = _dataset()
    await insert_many(conn, list(reversed(records)))
    assert await list_records(conn) == records
    assert await list_records(conn, user_id="u1") == records[:2]
    assert await list_records(conn, key_id="k3") == [records[2]]
    assert await list_records(conn, start=MAR10 + 2, end=MAR10 + 4) == records[1:3]
    assert await list_records(conn, limit=2) == records[:2]
    with pytest.raises(ValueError, match="limit"):
        await list_records(conn, limit=-1)


async def test_query_totals_are_unchanged_by_a_roll_up(conn):
    await insert_many(conn, _dataset())
    start, end = MAR10, MAR10 + 2 * DAY
    before = {
        g: await query_usage(conn, start=start, end=end, group_by=g) for g in GROUP_BY_OPTIONS
    }

    assert await roll_up(conn, before=MAR10 + DAY, limit=100) == (3, 3)

    assert len(await list_records(conn)) == 1
    for group_by, rows in before.items():
        assert await query_usage(conn, start=start, end=end, group_by=group_by) == rows
    # Ranges that begin after a rolled-up day's start exclude that day entirely.
    late = await query_usage(conn, group_by="day", start=MAR10 + 1, end=MAR10 + 2 * DAY)
    assert [r.group for r in late] == ["2024-03-11"]


async def test_a_late_row_for_a_rolled_up_day_is_added_to_its_aggregate(conn):
    await insert_many(conn, [make_record(1), make_record(2)])
    await roll_up(conn, before=MAR10 + DAY, limit=100)
    await insert_many(conn, [make_record(3, status=503, outcome="upstream_error")])
    assert await roll_up(conn, before=MAR10 + DAY, limit=100) == (1, 1)

    rows = await conn.execute_fetchall("SELECT day, requests, errors, cost_nanos FROM usage_daily")
    assert list(rows) == [("2024-03-10", 3, 1, 3_000)]


async def test_roll_up_takes_the_oldest_rows_first_and_respects_the_limit(conn):
    await insert_many(conn, [make_record(n) for n in range(5)])
    assert await roll_up(conn, before=MAR10 + DAY, limit=2) == (1, 2)
    assert [r.id for r in await list_records(conn)] == ["rec-2", "rec-3", "rec-4"]


async def test_delete_daily_before_deletes_only_older_days_up_to_the_limit(conn):
    await insert_many(conn, [make_record(n, ts=MAR10 + n * DAY) for n in range(4)])
    await roll_up(conn, before=MAR10 + 10 * DAY, limit=100)
    assert await delete_daily_before(conn, day="2024-03-12", limit=1) == 1
    assert await delete_daily_before(conn, day="2024-03-12", limit=5) == 1
    rows = await query_usage(conn, start=None, end=None, group_by="day")
    assert [r.group for r in rows] == ["2024-03-12", "2024-03-13"]
