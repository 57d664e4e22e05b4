"""The data-rights operations on usage records kept in PostgreSQL (``storage.backend:
postgres``), run by ``store.rights`` and ``store.end_users`` beside their SQLite work
(``AccountStore.remote_records``): an erased user's records and aggregates move under the
same pseudonyms, exactly as in SQLite (analytics per day, model and provider, unless they
object; billing per day and model), then the originals are deleted; an erased end user is
cleared from every record; an export reads the user's records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from nitroproxy.config import StorageSettings
from nitroproxy.core.types import UsageRecord
from nitroproxy.store.pg.usage import COLUMNS
from nitroproxy.store.usage import ERROR_SQL, TOKEN_COLUMNS

__all__ = ["PgRights", "remote_records"]

_DAY = "to_char(to_timestamp(floor(ts)) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
_OWNED = "(user_id = $1 OR key_id = ANY($2::text[]))"
_SUMMED = ("requests", "errors", *TOKEN_COLUMNS)
_BILLED = ("requests", *TOKEN_COLUMNS)
_DAILY_MERGE = "ON CONFLICT (day, user_id, key_id, model, provider) DO UPDATE SET " + ", ".join(
    f"{c} = d.{c} + excluded.{c}" for c in _SUMMED
)
_BILLING_MERGE = "ON CONFLICT (day, user_id, key_id, model) DO UPDATE SET " + ", ".join(
    f"{c} = b.{c} + excluded.{c}" for c in _BILLED
)
_DAILY_INTO = (
    f"INSERT INTO usage_daily AS d (day, user_id, key_id, model, provider, {', '.join(_SUMMED)})"
)
_BILLING_INTO = (
    f"INSERT INTO billing_lines AS b (day, user_id, key_id, model, {', '.join(_BILLED)})"
)
# $3 is the analytics pseudonym in what goes to usage_daily, the billing one in
# billing_lines. Aggregates first (before the roll-up adds rows under the pseudonym).
_STEPS = (
    f"{_DAILY_INTO} SELECT day, $3, $3, model, provider, "
    f"{', '.join(f'SUM({c})' for c in _SUMMED)} FROM usage_daily WHERE {_OWNED} "
    f"GROUP BY day, model, provider {_DAILY_MERGE}",
    f"{_BILLING_INTO} SELECT day, $3, $3, model, {', '.join(f'SUM({c})' for c in _BILLED)} "
    f"FROM billing_lines WHERE {_OWNED} GROUP BY day, model {_BILLING_MERGE}",
)
_RAW_DAILY = (
    f"{_DAILY_INTO} SELECT {_DAY}, $3, $3, model, COALESCE(provider, ''), COUNT(*), "
    f"SUM(({ERROR_SQL})::int), {', '.join(f'SUM({c})' for c in TOKEN_COLUMNS)} "
    f"FROM usage WHERE {_OWNED} GROUP BY 1, 4, 5 {_DAILY_MERGE}"
)
_RAW_BILLING = (
    f"{_BILLING_INTO} SELECT {_DAY}, $3, $3, model, COUNT(*), "
    f"{', '.join(f'SUM({c})' for c in TOKEN_COLUMNS)} "
    f"FROM usage WHERE {_OWNED} GROUP BY 1, 4 {_BILLING_MERGE}"
)
_BOOLS = frozenset({"stream", "cache_hit"})


class PgRights:
    def __init__(self, url: str) -> None:
        self._url = url

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self._url, timeout=10)

    async def erase_user(
        self, user_id: str, key_ids: Sequence[str], *, alias: str, bill: str, objector: bool
    ) -> int:
        """Move the user's records and aggregates under ``alias`` (analytics) and ``bill``
        (billing), delete the originals; the raw records deleted."""
        keys = list(key_ids)
        conn = await self._connect()
        try:
            async with conn.transaction():
                await conn.execute(_STEPS[0], user_id, keys, alias)
                await conn.execute(_STEPS[1], user_id, keys, bill)
                if not objector:
                    await conn.execute(_RAW_DAILY, user_id, keys, alias)
                await conn.execute(_RAW_BILLING, user_id, keys, bill)
                deleted = await conn.execute(f"DELETE FROM usage WHERE {_OWNED}", user_id, keys)
                for table in ("billing_lines", "usage_daily"):
                    await conn.execute(f"DELETE FROM {table} WHERE {_OWNED}", user_id, keys)
        finally:
            await conn.close()
        return int(deleted.rsplit(" ", 1)[-1])

    async def bill_stragglers(self, conn: asyncpg.Connection, user_id: str, bill: str) -> int:
        """Raw records of an erased user that arrived after the erase (a stream that
        outlived its key): billed under ``bill``, nothing to analytics, then deleted."""
        async with conn.transaction():
            await conn.execute(_RAW_BILLING, user_id, [], bill)
            status = await conn.execute(f"DELETE FROM usage WHERE {_OWNED}", user_id, [])
        return int(status.rsplit(" ", 1)[-1])

    async def erase_end_user(self, recorded: str) -> int:
        conn = await self._connect()
        try:
            status = await conn.execute(
                "UPDATE usage SET end_user = NULL WHERE end_user = $1", recorded
            )
        finally:
            await conn.close()
        return int(status.rsplit(" ", 1)[-1])

    async def records_of(self, user_id: str | None, key_ids: Sequence[str]) -> list[UsageRecord]:
        """The records of ``user_id`` or of any of ``key_ids`` (``None``: keys only)."""
        return await self._records(
            f"SELECT {', '.join(COLUMNS)} FROM usage WHERE {_OWNED} ORDER BY ts, id",
            user_id,
            list(key_ids),
        )

    async def records_of_end_user(self, recorded: str) -> list[UsageRecord]:
        return await self._records(
            f"SELECT {', '.join(COLUMNS)} FROM usage WHERE end_user = $1 ORDER BY ts, id",
            recorded,
        )

    async def _records(self, sql: str, *args: object) -> list[UsageRecord]:
        conn = await self._connect()
        try:
            rows = await conn.fetch(sql, *args)
        finally:
            await conn.close()
        return [_record(row) for row in rows]


def _record(row: asyncpg.Record) -> UsageRecord:
    values: dict[str, Any] = {c: bool(row[c]) if c in _BOOLS else row[c] for c in COLUMNS}
    return UsageRecord(**values)


def remote_records(storage: StorageSettings) -> PgRights | None:
    """What an accounts store opened under ``storage`` must also reach, if anything."""
    return PgRights(storage.url) if storage.backend == "postgres" else None
