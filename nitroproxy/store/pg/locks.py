"""Advisory locks: one instance of many does a job (the retention sweep), and instances
starting together migrate once. Keys are fixed 64-bit numbers, one per job."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

__all__ = ["MIGRATE_LOCK", "SWEEP_LOCK", "exclusive"]

# "NPmigrat" and "NPsweep" as big-endian integers: stable and unlikely to meet another
# application's keys in a shared database.
MIGRATE_LOCK = int.from_bytes(b"NPmigrat", "big") - 2**63
SWEEP_LOCK = int.from_bytes(b"NPsweep\0", "big") - 2**63


@contextlib.asynccontextmanager
async def exclusive(conn: asyncpg.Connection, key: int) -> AsyncIterator[bool]:
    """Yields True when this session holds ``key`` (the job is ours this time), False when
    another session does (skip the job); the lock is released on exit. A session that
    dies releases it with its connection, so a crashed sweeper blocks nobody."""
    held = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
    try:
        yield held
    finally:
        if held:
            await conn.execute("SELECT pg_advisory_unlock($1)", key)
