"""Usage reports on records kept in PostgreSQL: ``store.usage``'s own statements
(:func:`~nitroproxy.store.usage.usage_query`, :func:`~nitroproxy.store.usage.records_query`)
turned into PostgreSQL's dialect, so a total reads the same from either backend."""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from nitroproxy.core.types import UsageRecord
from nitroproxy.store.pg.dialect import placeholders
from nitroproxy.store.usage import (
    DAY_SQL,
    ERROR_SQL,
    UsageRow,
    records_query,
    row_to_record,
    usage_query,
    usage_rows,
)

__all__ = ["PgReports", "to_postgres"]

_DAY = "to_char(to_timestamp(floor(ts)) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
_REWRITES = (
    (DAY_SQL, _DAY),
    (f"SUM({ERROR_SQL})", f"SUM(({ERROR_SQL})::int)"),  # no SUM of a boolean there
    (") GROUP BY grp ORDER BY grp", ") AS u GROUP BY grp ORDER BY grp"),  # a named subquery
    ("ORDER BY ts, rowid", "ORDER BY ts, id"),
)
_CONSTANT_WHERE = re.compile(r"\bWHERE ([01])\b")


def to_postgres(sql: str) -> str:
    for sqlite, postgres in _REWRITES:
        sql = sql.replace(sqlite, postgres)
    sql = _CONSTANT_WHERE.sub(lambda m: "WHERE " + ("true" if m.group(1) == "1" else "false"), sql)
    return placeholders(sql)


class PgReports:
    def __init__(self, url: str) -> None:
        self._url = url

    async def _fetch(self, sql: str, params: list[Any]) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self._url, timeout=10)
        try:
            return list(await conn.fetch(to_postgres(sql), *params))
        finally:
            await conn.close()

    async def query_usage(self, **filters: Any) -> list[UsageRow]:
        sql, params = usage_query(**filters)
        return usage_rows(tuple(r) for r in await self._fetch(sql, params))

    async def list_records(self, **filters: Any) -> list[UsageRecord]:
        sql, params = records_query(**filters)
        return [row_to_record(tuple(r)) for r in await self._fetch(sql, params)]
