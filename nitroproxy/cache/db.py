"""The response cache's own SQLite file: schema, file modes and the statements it runs.

Knows rows, not entries: every value here is already an HMAC or a sealed blob
(``nitroproxy.cache`` does the cryptography). Connections are autocommit, as in
``store.db``; the cache serializes its writes on one connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from nitroproxy.store.db import (
    create_private_file,
    migrate,
    restrict_sidecars,
    set_wal,
    transaction,
)

# Append-only, as store.db.MIGRATIONS: the cache file has its own user_version.
CACHE_MIGRATIONS: tuple[str, ...] = (
    # v1. Small columns first: eviction scans then never read a blob's overflow pages.
    """
    CREATE TABLE cache_meta (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );
    CREATE TABLE cache_entries (
        lookup TEXT PRIMARY KEY,  -- HMAC of scope + canonical request
        key_index TEXT NOT NULL,  -- HMAC of the key id that stored it
        user_index TEXT,          -- HMAC of that key's user id
        endpoint TEXT NOT NULL,
        size INTEGER NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL,
        last_used REAL NOT NULL,
        blob BLOB NOT NULL        -- the sealed entry
    );
    CREATE INDEX cache_entries_expires ON cache_entries (expires);
    CREATE INDEX cache_entries_last_used ON cache_entries (last_used);
    CREATE INDEX cache_entries_key ON cache_entries (key_index);
    CREATE INDEX cache_entries_user ON cache_entries (user_index);
    """,
)

OWNER_COLUMNS = frozenset({"key_index", "user_index"})
_EVICT_PAGE = 512
_UPSERT = """
INSERT INTO cache_entries
    (lookup, key_index, user_index, endpoint, size, created, expires, last_used, blob)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (lookup) DO UPDATE SET
    key_index = excluded.key_index, user_index = excluded.user_index,
    endpoint = excluded.endpoint, size = excluded.size, created = excluded.created,
    expires = excluded.expires, last_used = excluded.last_used, blob = excluded.blob
"""

Row = tuple[str, str, str | None, str, int, float, float, float, bytes]
"""lookup, key_index, user_index, endpoint, size, created, expires, last_used, blob"""


async def open_cache_db(path: Path, *, writer: bool) -> aiosqlite.Connection:
    """The writer connection creates the file (0600, in a 0700 directory if that is new)
    and migrates it; a reader is query-only."""
    if writer:
        await asyncio.to_thread(create_private_file, path)
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute("PRAGMA busy_timeout = 5000")
        if writer:
            await set_wal(conn)
            await conn.execute("PRAGMA synchronous = NORMAL")
            # Deleted entries are overwritten with zeros, not left in free pages.
            await conn.execute("PRAGMA secure_delete = ON")
            await migrate(conn, CACHE_MIGRATIONS)
        else:
            await conn.execute("PRAGMA query_only = ON")
    except BaseException:
        await conn.close()
        raise
    await asyncio.to_thread(restrict_sidecars, path)
    return conn


async def select(conn: aiosqlite.Connection, lookups: Sequence[str]) -> dict[str, Any]:
    """lookup -> (lookup, blob, created, expires, last_used) for the rows that exist."""
    marks = ",".join("?" * len(lookups))
    rows = await conn.execute_fetchall(
        "SELECT lookup, blob, created, expires, last_used FROM cache_entries"
        f" WHERE lookup IN ({marks})",
        lookups,
    )
    return {row[0]: tuple(row) for row in rows}


async def write(
    conn: aiosqlite.Connection,
    rows: Sequence[Row],
    touches: Sequence[tuple[str, float]],
    *,
    max_entries: int,
    max_bytes: int,
) -> int:
    """Upsert ``rows``, move ``touches`` (lookup, when) forward, then evict least recently
    used entries until both limits hold; one transaction. Returns the number evicted."""
    async with transaction(conn):
        if rows:
            await conn.executemany(_UPSERT, rows)
        if touches:
            await conn.executemany(
                "UPDATE cache_entries SET last_used = ?2 WHERE lookup = ?1 AND last_used < ?2",
                touches,
            )
        return await _evict(conn, max_entries, max_bytes) if rows else 0


async def _evict(conn: aiosqlite.Connection, max_entries: int, max_bytes: int) -> int:
    ((count, total),) = await conn.execute_fetchall(
        "SELECT count(*), coalesce(sum(size), 0) FROM cache_entries"
    )
    over_n, over_b = count - max_entries, total - max_bytes
    evicted = 0
    while over_n > 0 or over_b > 0:
        page = await conn.execute_fetchall(
            "SELECT rowid, size FROM cache_entries ORDER BY last_used, created LIMIT ?",
            (max(over_n, 0) + _EVICT_PAGE,),
        )
        victims = []
        for rowid, size in page:
            if over_n <= 0 and over_b <= 0:
                break
            victims.append(rowid)
            over_n, over_b = over_n - 1, over_b - size
        if not victims:
            break
        marks = ",".join("?" * len(victims))
        await conn.execute(f"DELETE FROM cache_entries WHERE rowid IN ({marks})", victims)
        evicted += len(victims)
    return evicted


async def delete_expired(conn: aiosqlite.Connection, now: float, limit: int) -> int:
    sql = (
        "DELETE FROM cache_entries WHERE rowid IN"
        " (SELECT rowid FROM cache_entries WHERE expires <= ? LIMIT ?)"
    )
    async with conn.execute(sql, (now, limit)) as cursor:
        return max(cursor.rowcount, 0)


async def delete_owned(conn: aiosqlite.Connection, column: str, indexes: Sequence[str]) -> int:
    """Delete the entries whose owner ``column`` is one of ``indexes``, then truncate the
    WAL so no old page image of them stays behind (best effort: a busy reader only
    delays that to a later checkpoint)."""
    if column not in OWNER_COLUMNS:
        raise ValueError(f"not an owner column: {column!r}")
    marks = ",".join("?" * len(indexes))
    sql = f"DELETE FROM cache_entries WHERE {column} IN ({marks})"
    async with conn.execute(sql, indexes) as cursor:
        deleted = max(cursor.rowcount, 0)
    await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return deleted


async def read_meta(conn: aiosqlite.Connection, name: str) -> bytes | None:
    rows = list(await conn.execute_fetchall("SELECT value FROM cache_meta WHERE name = ?", (name,)))
    return bytes(rows[0][0]) if rows else None


async def write_meta(conn: aiosqlite.Connection, name: str, value: bytes) -> None:
    await conn.execute("INSERT OR REPLACE INTO cache_meta VALUES (?, ?)", (name, value))


async def delete_sealed_except(conn: aiosqlite.Connection, key_ids: Sequence[str]) -> int:
    """Delete the entries sealed under a data key not in ``key_ids`` (the key id is bytes
    3-10 of a sealed blob); one statement."""
    marks = ",".join("?" * len(key_ids))
    sql = f"DELETE FROM cache_entries WHERE CAST(substr(blob, 3, 8) AS TEXT) NOT IN ({marks})"
    async with conn.execute(sql, list(key_ids)) as cursor:
        return max(cursor.rowcount, 0)
