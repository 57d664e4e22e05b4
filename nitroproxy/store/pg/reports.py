"""Usage reports on records kept in PostgreSQL: the store's own report statements
(``store.usage``, ``store.timeline``), written once in SQLite's dialect, turned into
PostgreSQL's here, so a total or a chart reads the same from either backend."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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

__all__ = ["PgQueries", "PgReports", "to_postgres"]

_DAY = "to_char(to_timestamp(floor(ts)) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
_REWRITES = (
    (DAY_SQL, _DAY),
    (f"SUM({ERROR_SQL})", f"SUM(({ERROR_SQL})::int)"),  # no SUM of a boolean there
    (") GROUP BY grp ORDER BY grp", ") AS u GROUP BY grp ORDER BY grp"),  # a named subquery
    ("ORDER BY ts, rowid", "ORDER BY ts, id"),
)
_CONSTANT_WHERE = re.compile(r"\bWHERE ([01])\b")
# SQLite's CAST(real AS INTEGER) truncates, PostgreSQL's rounds: floor it first (the values
# cast are non-negative: timestamps and their buckets).
_CAST_INTEGER = re.compile(r"CAST\(([^()]*)\s+AS\s+INTEGER\)")
_RANKED = re.compile(r"\)\s*WHERE (rn = )")  # a subquery in FROM needs a name there
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def to_postgres(sql: str, params: Mapping[str, Any] | Sequence[Any] = ()) -> tuple[str, list[Any]]:
    """SQLite's statement and parameters (``?`` positional or ``:name`` named) as
    PostgreSQL's (``$1``...)."""
    for sqlite, postgres in _REWRITES:
        sql = sql.replace(sqlite, postgres)
    sql = _CONSTANT_WHERE.sub(lambda m: "WHERE " + ("true" if m.group(1) == "1" else "false"), sql)
    sql = _CAST_INTEGER.sub(lambda m: f"CAST(floor({m.group(1)}) AS BIGINT)", sql)
    sql = _RANKED.sub(r") AS ranked WHERE \1", sql)
    if isinstance(params, Mapping):
        order: list[str] = []

        def number(m: re.Match[str]) -> str:
            if m.group(1) not in order:
                order.append(m.group(1))
            return f"${order.index(m.group(1)) + 1}"

        return _NAMED.sub(number, sql), [params[name] for name in order]
    return placeholders(sql), list(params)


class PgQueries:
    """A read-only stand-in for a SQLite connection over records kept in PostgreSQL, for
    the report functions written against one (``execute_fetchall``): each statement goes
    through :func:`to_postgres`."""

    def __init__(self, url: str) -> None:
        self._url = url

    async def execute_fetchall(
        self, sql: str, parameters: Mapping[str, Any] | Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        statement, args = to_postgres(sql, parameters)
        conn = await asyncpg.connect(self._url, timeout=10)
        try:
            return [tuple(r) for r in await conn.fetch(statement, *args)]
        finally:
            await conn.close()


class PgReports:
    def __init__(self, url: str) -> None:
        self._url = url

        self.queries = PgQueries(url)

    async def query_usage(self, **filters: Any) -> list[UsageRow]:
        sql, params = usage_query(**filters)
        return usage_rows(await self.queries.execute_fetchall(sql, params))

    async def list_records(self, **filters: Any) -> list[UsageRecord]:
        sql, params = records_query(**filters)
        return [row_to_record(r) for r in await self.queries.execute_fetchall(sql, params)]
