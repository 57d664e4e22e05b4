"""Usage records into PostgreSQL: a batch goes in by ``COPY`` (the fastest way in, one
round trip for the rows) into a temporary table, then into ``usage`` with ``ON CONFLICT
(id) DO NOTHING``, in one transaction. So a batch is all or nothing, and a record offered
twice (a retried batch, a journal replayed after an outage) is stored once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

import asyncpg

from nitroproxy.core.types import UsageRecord

__all__ = ["COLUMNS", "insert_many"]

COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(UsageRecord))
_BOOLS = frozenset({"stream", "cache_hit"})  # INTEGER 0/1 columns, as in SQLite
_FLOATS = frozenset({"ts", "latency_ms", "ttft_ms", "output_tps"})
_LIST = ", ".join(COLUMNS)


def _row(record: UsageRecord) -> tuple[object, ...]:
    values = []
    for name in COLUMNS:
        value = getattr(record, name)
        if name in _BOOLS:
            value = int(value)
        elif name in _FLOATS and value is not None:
            value = float(value)
        values.append(value)
    return tuple(values)


async def insert_many(conn: asyncpg.Connection, records: Sequence[UsageRecord]) -> int:
    """Store ``records``; returns how many were new (the rest were there already)."""
    if not records:
        return 0
    async with conn.transaction():
        await conn.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS usage_incoming "
            "(LIKE usage INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        await conn.copy_records_to_table(
            "usage_incoming", records=[_row(r) for r in records], columns=COLUMNS
        )
        status = await conn.execute(
            f"INSERT INTO usage ({_LIST}) SELECT {_LIST} FROM usage_incoming "
            "ON CONFLICT (id) DO NOTHING"
        )
    return int(status.rsplit(" ", 1)[-1])
