"""Retention for usage records kept in PostgreSQL: the same roll-up as SQLite's
(``store.usage.roll_up``: old raw rows into ``usage_daily``, objectors left out, and into
``billing_lines``, everything, then deleted, in one transaction) and the same expiry of
aggregates and billing lines, in PostgreSQL's dialect (``to_char`` for the UTC day, a
boolean cast to count errors, ``ctid`` for "this batch").

It runs as a step of the retention sweeper (``RetentionSweeper.add_step``), under the sweep
advisory lock: of several instances sharing the database, one sweeps at a time and the
others skip. Who objects to analytics comes from the accounts database the sweeper holds.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import aiosqlite
import asyncpg

from nitroproxy.core.retention import RetentionPolicy, cutoffs
from nitroproxy.store.billing import pseudonyms_of
from nitroproxy.store.pg.locks import SWEEP_LOCK, exclusive
from nitroproxy.store.pg.rights import PgRights
from nitroproxy.store.preferences import ANALYTICS_OBJECTORS_SQL
from nitroproxy.store.usage import ERROR_SQL, TOKEN_COLUMNS

__all__ = ["PgRetention"]

_DAY = "to_char(to_timestamp(floor(ts)) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
_SUMS = ", ".join(f"SUM({c})" for c in TOKEN_COLUMNS)
_BATCH = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS usage_batch (id TEXT PRIMARY KEY) ON COMMIT DELETE ROWS"
)
_PICK = (
    "INSERT INTO usage_batch (id) SELECT id FROM usage WHERE ts < $1 "
    "ORDER BY ts LIMIT $2 FOR UPDATE SKIP LOCKED"
)
_ROLLUP = f"""
INSERT INTO usage_daily AS d (day, user_id, key_id, model, provider, requests, errors,
    {", ".join(TOKEN_COLUMNS)})
SELECT {_DAY}, COALESCE(user_id, ''), COALESCE(key_id, ''), model, COALESCE(provider, ''),
    COUNT(*), SUM(({ERROR_SQL})::int), {_SUMS}
FROM usage WHERE id IN (SELECT id FROM usage_batch)
    AND NOT (COALESCE(user_id, key_id, '') = ANY($1::text[]))
GROUP BY 1, 2, 3, 4, 5
ON CONFLICT (day, user_id, key_id, model, provider) DO UPDATE SET
    requests = d.requests + excluded.requests,
    errors = d.errors + excluded.errors,
    {", ".join(f"{c} = d.{c} + excluded.{c}" for c in TOKEN_COLUMNS)}
"""
_BILLING = f"""
INSERT INTO billing_lines AS b (day, user_id, key_id, model, requests,
    {", ".join(TOKEN_COLUMNS)})
SELECT {_DAY}, COALESCE(user_id, ''), COALESCE(key_id, ''), model, COUNT(*), {_SUMS}
FROM usage WHERE id IN (SELECT id FROM usage_batch)
GROUP BY 1, 2, 3, 4
ON CONFLICT (day, user_id, key_id, model) DO UPDATE SET
    requests = b.requests + excluded.requests,
    {", ".join(f"{c} = b.{c} + excluded.{c}" for c in TOKEN_COLUMNS)}
"""
_DELETE = "DELETE FROM usage WHERE id IN (SELECT id FROM usage_batch)"
_EXPIRE = (
    "DELETE FROM {table} WHERE ctid IN "
    "(SELECT ctid FROM {table} WHERE day < $1 ORDER BY day LIMIT $2)"
)


class PgRetention:
    def __init__(self, url: str, policy: RetentionPolicy) -> None:
        self._url = url
        self._policy = policy

    async def step(self, accounts: aiosqlite.Connection, now: float, limit: int) -> int:
        """One batch of every PostgreSQL retention job; 0 when another instance sweeps."""
        objectors = [str(r[0]) for r in await accounts.execute_fetchall(ANALYTICS_OBJECTORS_SQL)]
        erased = [
            str(r[0])
            for r in await accounts.execute_fetchall("SELECT id FROM users WHERE status = 'erased'")
        ]
        conn = await asyncpg.connect(self._url, timeout=10)
        try:
            async with exclusive(conn, SWEEP_LOCK) as mine:
                if not mine:
                    return 0
                moved = await self._stragglers(conn, accounts, erased, limit)
                return moved + await self.sweep_batch(conn, now, limit, objectors)
        finally:
            await conn.close()

    async def _stragglers(
        self,
        conn: asyncpg.Connection,
        accounts: aiosqlite.Connection,
        erased: Sequence[str],
        limit: int,
    ) -> int:
        """As ``store.rights.erased_usage_step``: records of erased users that arrived after
        the erase go to billing under the user's billing pseudonym, then away."""
        found = await conn.fetch(
            "SELECT DISTINCT user_id FROM usage WHERE user_id = ANY($1::text[]) LIMIT $2",
            list(erased),
            limit,
        )
        moved = 0
        for row in found:
            user_id = str(row["user_id"])
            known = await pseudonyms_of(accounts, user_id)
            bill = known[-1] if known else "erased-" + secrets.token_hex(8)
            moved += await PgRights(self._url).bill_stragglers(conn, user_id, bill)
        return moved

    async def sweep_batch(
        self, conn: asyncpg.Connection, now: float, limit: int, objectors: Sequence[str]
    ) -> int:
        cut = cutoffs(self._policy, now)
        async with conn.transaction():
            await conn.execute(_BATCH)
            await conn.execute(_PICK, cut.raw_before, limit)
            await conn.execute(_ROLLUP, list(objectors))
            await conn.execute(_BILLING)
            rolled = _count(await conn.execute(_DELETE))
        expired = 0
        for table, day in (
            ("usage_daily", cut.aggregates_before_day),
            ("billing_lines", cut.billing_before_day),
        ):
            expired += _count(await conn.execute(_EXPIRE.format(table=table), day, limit))
        return rolled + expired


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])
