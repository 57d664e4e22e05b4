"""The dashboard's time series on a real SQLite file: buckets, totals, nearest-rank
percentiles, the key filter, and the deployment grouping of the usage tables."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from nitroproxy.store.db import open_db
from nitroproxy.store.timeline import (
    MAX_BUCKETS,
    STEPS,
    Point,
    query_timeline,
    step_for,
    usage_by_deployment,
)
from nitroproxy.store.usage import UsageRow, insert_many
from tests.records import MAR10, make_record

HOUR = 3600


@pytest.fixture
async def conn(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    db = await open_db(tmp_path / "usage.db")
    yield db
    await db.close()


def nearest_rank(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


async def test_each_bucket_has_totals_and_nearest_rank_percentiles(
    conn: aiosqlite.Connection,
) -> None:
    first = [float(v) for v in range(1, 201)]  # 200 latencies in the first hour
    records = [make_record(i, ts=MAR10 + i, latency_ms=v) for i, v in enumerate(first)]
    records += [
        make_record(1000 + i, ts=MAR10 + HOUR + i, latency_ms=50.0, ttft_ms=float(10 + i),
                    stream=True, status=502 if i == 0 else 200,
                    outcome="upstream_error" if i == 0 else "ok")
        for i in range(3)
    ]  # fmt: skip
    records.append(make_record(2000, ts=MAR10 + 5 * HOUR, key_id="key-b"))
    await insert_many(conn, records)

    points = await query_timeline(conn, start=MAR10, end=MAR10 + 6 * HOUR, step=HOUR)
    assert [p.ts for p in points] == [MAR10, MAR10 + HOUR, MAR10 + 5 * HOUR]
    one, two, _ = points
    assert (one.requests, one.errors, one.prompt_tokens, one.completion_tokens) == (
        200,
        0,
        2000,
        1000,
    )
    assert one.cost_nanos == 200 * 1000
    assert (
        (one.latency_p50_ms, one.latency_p99_ms)
        == (
            nearest_rank(first, 50),
            nearest_rank(first, 99),
        )
        == (100.0, 198.0)
    )
    assert one.ttft_p50_ms is None  # no streams in that hour
    assert (two.requests, two.errors) == (3, 1)
    assert (two.ttft_p50_ms, two.ttft_p99_ms) == (11.0, 12.0)
    assert two.to_json()["cost_usd"] == 3e-6

    only_b = await query_timeline(
        conn, start=MAR10, end=MAR10 + 6 * HOUR, step=HOUR, key_id="key-b"
    )
    assert [(p.ts, p.requests) for p in only_b] == [(MAR10 + 5 * HOUR, 1)]
    minute = Point(ts=int(MAR10), requests=60, errors=0, prompt_tokens=600,
                   completion_tokens=300, cost_nanos=60_000, latency_p50_ms=30.0,
                   latency_p99_ms=60.0)  # fmt: skip
    assert await query_timeline(conn, start=MAR10, end=MAR10 + 60, step=60) == [minute]


async def test_a_single_value_is_every_percentile(conn: aiosqlite.Connection) -> None:
    await insert_many(conn, [make_record(0, latency_ms=7.25, ttft_ms=3.5, stream=True)])
    [p] = await query_timeline(conn, start=MAR10, end=MAR10 + 60, step=60)
    assert (p.latency_p50_ms, p.latency_p99_ms, p.ttft_p50_ms, p.ttft_p99_ms) == (
        7.25, 7.25, 3.5, 3.5,
    )  # fmt: skip


def test_step_keeps_charts_under_the_bucket_cap() -> None:
    assert step_for(0, 3600) == 60
    assert step_for(0, 86400) == 900
    assert step_for(0, 30 * 86400) == 21600
    for span in (1, 59, 7200, 86400 * 7, 86400 * 365):
        step = step_for(0, span)
        assert span / step <= MAX_BUCKETS or step == STEPS[-1]


async def test_usage_by_deployment_reads_the_raw_rows(conn: aiosqlite.Connection) -> None:
    await insert_many(
        conn,
        [
            make_record(0, deployment="oai-east"),
            make_record(1, deployment="oai-west", status=500, outcome="upstream_error"),
            make_record(2, ts=MAR10 + 86400, deployment="oai-east", key_id="key-b"),
            make_record(3, deployment=None, attempts=0),
        ],
    )
    rows = await usage_by_deployment(conn, start=None, end=None)
    assert [(r.group, r.requests, r.errors) for r in rows] == [
        ("", 1, 0),
        ("oai-east", 2, 0),
        ("oai-west", 1, 1),
    ]
    assert rows[1] == UsageRow("oai-east", 2, 0, 20, 10, 4, 2, 6, 2000)
    only_b = await usage_by_deployment(conn, start=MAR10 + 1, end=None, key_id="key-b")
    assert [(r.group, r.requests) for r in only_b] == [("oai-east", 1)]
