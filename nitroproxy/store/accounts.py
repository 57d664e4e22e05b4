"""The accounts store: users (``store/users.py``) and API keys (``store/keys.py``) in SQLite,
shared by the admin API and the CLI through one :class:`AccountStore` handle.

Every write runs in one transaction with its audit entry and a bump of the
``accounts_version`` counter in ``meta`` (:meth:`AccountStore.writing`), so a server (this
process or another) notices the change on its next poll and reloads its in-memory key table.

One :class:`AccountStore` owns one connection. Its lock serialises every use of it, so a
transaction never interleaves with another task's statements (see ``store/db.py``); admin
traffic is small, and the request path never reads the database.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from nitroproxy.core.errors import InvalidRequest, NotFound
from nitroproxy.security.crypto import Keyring
from nitroproxy.store import audit
from nitroproxy.store.datakey import load_keyring, rotate_batch
from nitroproxy.store.db import open_db, transaction
from nitroproxy.store.records import RemoteRecords

__all__ = ["AccountStore"]


class AccountStore:
    def __init__(
        self,
        conn: aiosqlite.Connection,
        keyring: Keyring | None,
        *,
        tiers: Collection[str] = (),
        models: Collection[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``tiers`` and ``models`` are the names the config knows (``models=None``: any)."""
        self.conn = conn
        self.keyring = keyring
        self.tiers = frozenset(tiers) | {"default"}
        self.models = frozenset(models) if models is not None else None
        self.clock = clock
        self.lock = asyncio.Lock()
        self.remote_records: RemoteRecords | None = None
        """Usage records kept in another database (PostgreSQL): erasures and exports
        reach them too."""
        self.on_write: list[Callable[[], None]] = []
        """Called after each committed accounts write (propagation to other processes)."""

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        env: Mapping[str, str] | None = None,
        tiers: Collection[str] = (),
        models: Collection[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> AccountStore:
        """Open the database and the data key; raises ``DataKeyError`` (one line) when sealed
        data exists that the key in ``env`` cannot open."""
        conn = await open_db(path)
        try:
            # Freed pages are zeroed, so erased rows leave no copy in the file.
            await conn.execute("PRAGMA secure_delete = ON")
            keyring = await load_keyring(conn, os.environ if env is None else env)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, keyring, tiers=tiers, models=models, clock=clock)

    async def close(self) -> None:
        await self.conn.close()

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[aiosqlite.Connection]:
        """The lock, one transaction, and the version bump every accounts write makes."""
        async with self.lock, transaction(self.conn):
            yield self.conn
            await self.conn.execute(
                "INSERT INTO meta (name, value) VALUES ('accounts_version', 1) "
                "ON CONFLICT (name) DO UPDATE SET value = value + 1"
            )
        for hook in self.on_write:
            hook()

    async def read(self, sql: str, params: Any = ()) -> list[Any]:
        """One query, alone on the connection."""
        async with self.lock:
            return list(await self.conn.execute_fetchall(sql, params))

    def now(self) -> int:
        return int(self.clock())

    async def version(self) -> int:
        rows = await self.read("SELECT value FROM meta WHERE name = 'accounts_version'")
        return int(rows[0][0]) if rows else 0

    async def user_status(self, user_id: str, *, param: str | None = None) -> str:
        """Inside a transaction: the user's status, or not found (a 400 naming ``param``
        when the user is referred to by a field rather than the URL)."""
        rows = await self.conn.execute_fetchall("SELECT status FROM users WHERE id = ?", (user_id,))
        if not rows:
            message = f"no user with id {user_id!r}"
            if param is not None:
                raise InvalidRequest(message, param=param, code="user_not_found")
            raise NotFound(message, code="user_not_found")
        return str(next(iter(rows))[0])

    def check_tier(self, tier: str) -> None:
        if tier not in self.tiers:
            known = ", ".join(sorted(self.tiers))
            raise InvalidRequest(f"unknown tier {tier!r} (known: {known})", param="tier")

    def check_models(self, models: tuple[str, ...] | None) -> None:
        if models is None or self.models is None:
            return
        for model in models:
            if model not in self.models:
                raise InvalidRequest(f"unknown model {model!r}", param="models")

    async def note(
        self,
        *,
        actor: str,
        action: str,
        target: str | None,
        user_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Audit an action that changes nothing stored (an export, a statement read): one
        statement, no accounts-version bump (no key table needs reloading)."""
        async with self.lock:
            await audit.append(
                self.conn,
                ts=self.clock(),
                actor=actor,
                action=action,
                target=target,
                user_id=user_id,
                detail=detail,
            )

    async def audit_entries(self, **filters: Any) -> list[audit.AuditEntry]:
        async with self.lock:
            return await audit.list_entries(self.conn, **filters)

    async def rotate_data_key(
        self, *, actor: str, batch_size: int = 100, on_batch: Callable[[int], object] | None = None
    ) -> int:
        """Re-seal every row under the primary data key, one short transaction per batch;
        returns the rows re-sealed."""
        keyring = self.keyring
        if keyring is None:
            raise InvalidRequest("no data key to rotate to: set NITROPROXY_DATA_KEY")
        done = 0
        while True:
            async with self.lock:
                n = await rotate_batch(self.conn, keyring, limit=batch_size)
            done += n
            if n and on_batch is not None:
                on_batch(done)
            if n < batch_size:
                break
        async with self.writing() as conn:
            await audit.append(
                conn,
                ts=self.clock(),
                actor=actor,
                action="data_key.rotate",
                target=None,
                detail={"key_id": keyring.primary_id, "rows": done},
            )
        return done
