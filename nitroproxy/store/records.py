"""Where the usage writer puts records: one seam, two backends.

``UsageWriter`` (queue, retries, journal, replay) is the same for both; a ``RecordStore``
is only "open, insert a batch, prove a write works, close" and which errors mean "this
record is bad" (dropped alone) against "the database is down" (retried, then journaled).
SQLite here; PostgreSQL in ``store.pg.records``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import aiosqlite

from nitroproxy.core.types import UsageRecord
from nitroproxy.store.db import DEFAULT_BUSY_TIMEOUT_S, open_db, probe_write
from nitroproxy.store.usage import insert_many

__all__ = ["RecordStore", "RemoteRecords", "SqliteRecords"]


class RecordStore(Protocol):
    data_errors: tuple[type[BaseException], ...]
    """Raised for what a record holds: the same on every retry."""
    db_errors: tuple[type[BaseException], ...]
    """Raised while the database cannot take writes: retry, then journal."""

    async def open(self) -> None: ...

    async def insert(self, records: Sequence[UsageRecord]) -> None:
        """All or nothing; a record whose id is stored already is skipped, not doubled."""
        ...

    async def probe(self) -> None:
        """A real, tiny write: raises one of ``db_errors`` while writes fail."""
        ...

    async def close(self) -> None: ...


class RemoteRecords(Protocol):
    """Usage records kept in another database than the accounts (``store.pg.rights``): the
    data-rights operations reach them too."""

    async def erase_user(
        self, user_id: str, key_ids: Sequence[str], *, alias: str, bill: str, objector: bool
    ) -> int: ...

    async def erase_end_user(self, recorded: str) -> int: ...

    async def records_of(
        self, user_id: str | None, key_ids: Sequence[str]
    ) -> list[UsageRecord]: ...

    async def records_of_end_user(self, recorded: str) -> list[UsageRecord]: ...


class SqliteRecords:
    data_errors: tuple[type[BaseException], ...] = (
        sqlite3.IntegrityError,
        sqlite3.InterfaceError,
        sqlite3.ProgrammingError,
        sqlite3.DataError,
        OverflowError,
    )
    # ValueError: aiosqlite's closed connection.
    db_errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError, ValueError)

    def __init__(self, path: str | Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self._conn = await open_db(self._path, busy_timeout=self._busy_timeout)

    async def insert(self, records: Sequence[UsageRecord]) -> None:
        assert self._conn is not None
        await insert_many(self._conn, records)

    async def probe(self) -> None:
        assert self._conn is not None
        await probe_write(self._conn)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
