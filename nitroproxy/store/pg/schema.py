"""Migrating a PostgreSQL database with the store's own migrations (``store.db.MIGRATIONS``,
through ``pg.dialect``), so both backends hold the same tables and columns.

The version lives in ``schema_version`` (SQLite keeps it in ``PRAGMA user_version``). Each
migration runs in one transaction with its version bump, under a transaction-scoped
advisory lock: instances starting together against one database migrate it once, the
others wait and then find it current.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from nitroproxy.store.db import MIGRATIONS, SchemaTooNewError
from nitroproxy.store.pg.dialect import ddl, statements
from nitroproxy.store.pg.locks import MIGRATE_LOCK

__all__ = ["migrate", "schema_version"]


async def schema_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT version FROM schema_version") or 0)


async def migrate(conn: asyncpg.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Apply the migrations this database lacks; return the resulting schema version."""
    target = len(migrations)
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATE_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)"
            )
            version = await conn.fetchval("SELECT version FROM schema_version")
            if version is None:
                await conn.execute("INSERT INTO schema_version (version) VALUES (0)")
                version = 0
            if version > target:
                raise SchemaTooNewError(int(version), target)
            if version == target:
                return int(version)
            for statement in statements(migrations[version]):
                await conn.execute(ddl(statement))
            await conn.execute("UPDATE schema_version SET version = $1", version + 1)
