"""Usage records in SQLite: insert, query, list, and the daily roll-up used by retention.

Raw rows live in ``usage``; the sweeper moves whole UTC days of old rows into ``usage_daily``
(analytics) and ``billing_lines`` (what is owed) and deletes them in the same transaction,
so a table never holds a request twice and queries simply add raw rows and one kind of
aggregate up. Timestamps are Unix seconds (non-negative).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Protocol

import aiosqlite

from nitroproxy.core.days import day_ceil, day_of, day_start
from nitroproxy.core.types import Outcome, UsageRecord
from nitroproxy.store.db import transaction
from nitroproxy.store.preferences import ANALYTICS_OBJECTORS_SQL, SUBJECT_SQL

GROUP_BY_OPTIONS: tuple[str, ...] = ("day", "model", "provider", "key", "user", "end_user")

_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(UsageRecord))
_COLUMN_LIST = ", ".join(_COLUMNS)
_STREAM = _COLUMNS.index("stream")
_CACHE_HIT = _COLUMNS.index("cache_hit")
# Duplicate ids are ignored: the same record offered twice is stored once.
_INSERT_SQL = (
    f"INSERT INTO usage ({_COLUMN_LIST}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (id) DO NOTHING"
)
_get_row = attrgetter(*_COLUMNS)

# Integer arithmetic so SQL and core.retention.day_of agree to the second (date(ts) rounds
# to milliseconds and could move 23:59:59.9999 into the next day).
DAY_SQL = "date((CAST(ts AS INTEGER) / 86400) * 86400, 'unixepoch')"
ERROR_SQL = f"(status >= 400 OR outcome NOT IN ('{Outcome.OK.value}', '{Outcome.CACHE_HIT.value}'))"
TOKEN_COLUMNS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_nanos",
)

# group_by -> (expression over usage, column of usage_daily)
_GROUP_SQL: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "day": (DAY_SQL, "day"),
        "model": ("model", "model"),
        "provider": ("COALESCE(provider, '')", "provider"),
        "key": ("COALESCE(key_id, '')", "key_id"),
        "user": ("COALESCE(user_id, '')", "user_id"),
        # End users are kept on raw records only: rolled-up days group under ''.
        "end_user": ("COALESCE(end_user, '')", "''"),
    }
)

# The oldest rows first, in index order (ts, rowid): deterministic, so the INSERT and the
# DELETE of one roll-up transaction select exactly the same rows.
_BATCH_SQL = "SELECT rowid FROM usage WHERE ts < :before ORDER BY ts, rowid LIMIT :limit"
_ROLLUP_SQL = f"""
INSERT INTO usage_daily (day, user_id, key_id, model, provider, requests, errors,
    {", ".join(TOKEN_COLUMNS)})
SELECT {DAY_SQL}, COALESCE(user_id, ''), COALESCE(key_id, ''), model,
    COALESCE(provider, ''), COUNT(*), SUM({ERROR_SQL}),
    {", ".join(f"SUM({c})" for c in TOKEN_COLUMNS)}
FROM usage WHERE rowid IN ({_BATCH_SQL})
    AND {SUBJECT_SQL} NOT IN ({ANALYTICS_OBJECTORS_SQL})
GROUP BY 1, 2, 3, 4, 5
ON CONFLICT (day, user_id, key_id, model, provider) DO UPDATE SET
    requests = requests + excluded.requests,
    errors = errors + excluded.errors,
    {", ".join(f"{c} = {c} + excluded.{c}" for c in TOKEN_COLUMNS)}
"""
# Every raw row, objectors' too, becomes part of a billing line (what is owed is kept).
BILLING_MERGE_SQL = f"""
ON CONFLICT (day, user_id, key_id, model) DO UPDATE SET
    requests = requests + excluded.requests,
    {", ".join(f"{c} = {c} + excluded.{c}" for c in TOKEN_COLUMNS)}
"""
_BILLING_SQL = f"""
INSERT INTO billing_lines (day, user_id, key_id, model, requests, {", ".join(TOKEN_COLUMNS)})
SELECT {DAY_SQL}, COALESCE(user_id, ''), COALESCE(key_id, ''), model, COUNT(*),
    {", ".join(f"SUM({c})" for c in TOKEN_COLUMNS)}
FROM usage WHERE rowid IN ({_BATCH_SQL})
GROUP BY 1, 2, 3, 4
{BILLING_MERGE_SQL}
"""
_DELETE_BATCH_SQL = f"DELETE FROM usage WHERE rowid IN ({_BATCH_SQL})"
_DELETE_DAILY_SQL = (
    "DELETE FROM usage_daily WHERE rowid IN "
    "(SELECT rowid FROM usage_daily WHERE day < ? ORDER BY day LIMIT ?)"
)
_DELETE_BILLING_SQL = (
    "DELETE FROM billing_lines WHERE rowid IN "
    "(SELECT rowid FROM billing_lines WHERE day < ? ORDER BY day LIMIT ?)"
)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Totals for one group. ``group`` is '' for records without that attribute."""

    group: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_nanos: int

    @property
    def cost_usd(self) -> float:
        return self.cost_nanos / 1e9


def record_to_row(record: UsageRecord) -> tuple[Any, ...]:
    """Column values in ``usage`` column order (bools bind as 0/1)."""
    row: tuple[Any, ...] = _get_row(record)
    return row


def row_to_record(row: Sequence[Any]) -> UsageRecord:
    values = list(row)
    values[_STREAM] = bool(values[_STREAM])
    values[_CACHE_HIT] = bool(values[_CACHE_HIT])
    return UsageRecord(*values)


async def insert_many(conn: aiosqlite.Connection, records: Sequence[UsageRecord]) -> None:
    """Insert in one transaction with one ``executemany``."""
    if not records:
        return
    rows = [_get_row(r) for r in records]
    async with transaction(conn):
        await conn.executemany(_INSERT_SQL, rows)


async def query_usage(
    conn: aiosqlite.Connection,
    *,
    start: float | None,
    end: float | None,
    group_by: str,
    key_id: str | None = None,
    user_id: str | None = None,
    end_user: str | None = None,
) -> list[UsageRow]:
    """Totals per group over ``[start, end)``, raw rows and daily aggregates combined.

    A daily aggregate counts when its day starts inside the range, so totals are exact for
    ranges on UTC day boundaries and do not change when the sweeper rolls days up.
    """
    sql, params = usage_query(
        start=start, end=end, group_by=group_by, key_id=key_id, user_id=user_id, end_user=end_user
    )
    return usage_rows(await conn.execute_fetchall(sql, params))


def usage_query(
    *,
    start: float | None,
    end: float | None,
    group_by: str,
    key_id: str | None = None,
    user_id: str | None = None,
    end_user: str | None = None,
) -> tuple[str, list[Any]]:
    """The statement behind :func:`query_usage` (in SQLite's dialect; ``store.pg.reports``
    runs the same one on PostgreSQL)."""
    if group_by not in _GROUP_SQL:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY_OPTIONS)}")
    raw_group, daily_group = _GROUP_SQL[group_by]
    raw_where, raw_params = _filters("ts", start, end, key_id, user_id, end_user)
    daily_where, daily_params = _filters(
        "day",
        None if start is None else day_ceil(start),
        None if end is None else day_ceil(end),
        key_id,
        user_id,
    )
    if end_user is not None:
        daily_where = "0"  # aggregates keep no end user
    sums = ", ".join(f"SUM({c})" for c in TOKEN_COLUMNS)
    sql = f"""
    SELECT grp, SUM(requests), SUM(errors), {sums} FROM (
        SELECT {raw_group} AS grp, COUNT(*) AS requests, SUM({ERROR_SQL}) AS errors,
            {", ".join(f"SUM({c}) AS {c}" for c in TOKEN_COLUMNS)}
        FROM usage WHERE {raw_where} GROUP BY 1
        UNION ALL
        SELECT {daily_group} AS grp, SUM(requests), SUM(errors), {sums}
        FROM usage_daily WHERE {daily_where} GROUP BY 1
    ) GROUP BY grp ORDER BY grp
    """
    return sql, [*raw_params, *daily_params]


def usage_rows(rows: Iterable[Sequence[Any]]) -> list[UsageRow]:
    return [UsageRow(str(r[0]), *(int(v) for v in r[1:])) for r in rows]


async def list_records(
    conn: aiosqlite.Connection,
    *,
    user_id: str | None = None,
    key_id: str | None = None,
    start: float | None = None,
    end: float | None = None,
    limit: int = 1000,
    end_user: str | None = None,
) -> list[UsageRecord]:
    """Raw records in ``[start, end)``, oldest first (rolled-up records are gone)."""
    sql, params = records_query(
        user_id=user_id, key_id=key_id, start=start, end=end, limit=limit, end_user=end_user
    )
    rows = await conn.execute_fetchall(sql, params)
    return [row_to_record(r) for r in rows]


def records_query(
    *,
    user_id: str | None = None,
    key_id: str | None = None,
    start: float | None = None,
    end: float | None = None,
    limit: int = 1000,
    end_user: str | None = None,
) -> tuple[str, list[Any]]:
    """The statement behind :func:`list_records` (SQLite's dialect)."""
    if limit < 0:
        raise ValueError("limit must be >= 0")
    where, params = _filters("ts", start, end, key_id, user_id, end_user)
    sql = f"SELECT {_COLUMN_LIST} FROM usage WHERE {where} ORDER BY ts, rowid LIMIT ?"
    return sql, [*params, limit]


async def roll_up(conn: aiosqlite.Connection, *, before: float, limit: int) -> tuple[int, int]:
    """Move up to ``limit`` of the oldest raw rows with ``ts < before`` into ``usage_daily``
    (analytics, without the rows of subjects who object) and ``billing_lines`` (all rows).

    One transaction: add the rows' totals to their day's aggregates and billing lines, then
    delete the same rows. Returns (aggregate rows inserted or updated, raw rows deleted).
    """
    params = {"before": before, "limit": limit}
    async with transaction(conn):
        async with conn.execute(_ROLLUP_SQL, params) as cursor:
            upserted = cursor.rowcount
        await conn.execute(_BILLING_SQL, params)
        async with conn.execute(_DELETE_BATCH_SQL, params) as cursor:
            deleted = cursor.rowcount
    return upserted, deleted


async def delete_daily_before(conn: aiosqlite.Connection, *, day: str, limit: int) -> int:
    """Delete up to ``limit`` aggregates of days before ``day`` (YYYY-MM-DD); one statement."""
    async with conn.execute(_DELETE_DAILY_SQL, (day, limit)) as cursor:
        return cursor.rowcount


async def delete_billing_before(conn: aiosqlite.Connection, *, day: str, limit: int) -> int:
    """Delete up to ``limit`` billing lines of days before ``day``; one statement."""
    async with conn.execute(_DELETE_BILLING_SQL, (day, limit)) as cursor:
        return cursor.rowcount


def _filters(
    column: str,
    start: float | str | None,
    end: float | str | None,
    key_id: str | None,
    user_id: str | None,
    end_user: str | None = None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in (
        (f"{column} >= ?", start),
        (f"{column} < ?", end),
        ("key_id = ?", key_id),
        ("user_id = ?", user_id),
        ("end_user = ?", end_user),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return " AND ".join(clauses) or "1", params


class SpendSink(Protocol):
    def seed(self, key: str, day: str, nanos: int) -> None: ...


async def seed_spend(conn: aiosqlite.Connection, book: SpendSink, now: float) -> int:
    """Load this UTC month's spend per key and day into ``book`` (budgets survive restarts).
    Returns the number of (key, day) totals loaded."""
    month_start = day_of(now)[:8] + "01"
    month_ts = datetime.strptime(month_start, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    sql = """
        SELECT key_id, day, SUM(cost) FROM (
            SELECT key_id, strftime('%Y-%m-%d', CAST(ts AS INTEGER), 'unixepoch') AS day,
                   cost_nanos AS cost
            FROM usage WHERE ts >= ? AND key_id IS NOT NULL
            UNION ALL
            SELECT key_id, day, cost_nanos FROM billing_lines WHERE day >= ? AND key_id != ''
        ) GROUP BY key_id, day
    """
    loaded = 0
    async with conn.execute(sql, (month_ts, month_start)) as cursor:
        async for key_id, day, cost in cursor:
            book.seed(str(key_id), str(day), int(cost))
            loaded += 1
    return loaded


async def end_user_month_spend(
    conn: aiosqlite.Connection, now: float
) -> list[tuple[str, str, str, int]]:
    """This UTC month's spend per (key, recorded end user, day), from the raw records
    (end users are kept only there), for end-user budgets that survive restarts."""
    month_ts = day_start(now) - (int(day_of(now)[8:]) - 1) * 86400
    sql = f"""
        SELECT key_id, end_user, {DAY_SQL} AS day, SUM(cost_nanos) FROM usage
        WHERE ts >= ? AND key_id IS NOT NULL AND end_user IS NOT NULL
        GROUP BY 1, 2, 3
    """
    rows = await conn.execute_fetchall(sql, (month_ts,))
    return [(str(k), str(e), str(d), int(c)) for k, e, d, c in rows]
