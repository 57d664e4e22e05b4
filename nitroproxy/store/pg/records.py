"""``PgRecords``: the usage writer's ``RecordStore`` on PostgreSQL (``storage.backend:
postgres``).

One connection, opened lazily and opened again after any failure, so a PostgreSQL that goes
away and comes back needs no restart: while it is away every insert and probe raises one of
``db_errors``, the writer retries and then journals, and when it answers again the journal
is replayed through the same idempotent ``COPY`` insert (nothing lost, nothing twice). The
schema is migrated on the first connection.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from nitroproxy.core.types import UsageRecord
from nitroproxy.store.pg.schema import migrate
from nitroproxy.store.pg.usage import insert_many

__all__ = ["PgRecords"]

CONNECT_TIMEOUT_S = 5.0


class PgRecords:
    data_errors: tuple[type[BaseException], ...] = (
        asyncpg.exceptions.DataError,  # the server's class 22
        asyncpg.exceptions.IntegrityConstraintViolationError,
        asyncpg.DataError,  # the client's: a value it cannot encode
        OverflowError,
    )
    db_errors: tuple[type[BaseException], ...] = (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        OSError,
        TimeoutError,
    )

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: asyncpg.Connection | None = None
        self._migrated = False

    async def open(self) -> None:
        """Connect now if PostgreSQL answers; if not, the first write will (the writer
        journals meanwhile), so a start with PostgreSQL down loses nothing either."""
        try:
            await self._connection()
        except self.db_errors:
            self._conn = None

    async def _connection(self) -> asyncpg.Connection:
        conn = self._conn
        if conn is None or conn.is_closed():
            conn = await asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT_S)
            try:
                if not self._migrated:
                    await migrate(conn)
                    self._migrated = True
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
        return conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def insert(self, records: Sequence[UsageRecord]) -> None:
        conn = await self._connection()
        try:
            await insert_many(conn, records)
        except self.data_errors:
            raise
        except BaseException:
            await self._drop()  # a broken connection is not reused
            raise

    async def probe(self) -> None:
        conn = await self._connection()
        try:
            # A real write that touches no record: a row lock on the schema version.
            await conn.execute("UPDATE schema_version SET version = version")
        except BaseException:
            await self._drop()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
