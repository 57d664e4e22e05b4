"""RetentionSweeper: periodic retention work in small, short transactions.

One sweep enforces every window of ``core.retention``, in this order: raw records rolled
up into analytics aggregates and billing lines; accounts closed longer than the grace
erased (as an admin erase would, actor ``retention``); keys revoked or expired longer than
the grace deleted; analytics aggregates, billing lines and audit entries past their windows
deleted; then the steps added by other components (the response cache's expiry).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiosqlite

from nitroproxy.config import RetentionSettings
from nitroproxy.core.retention import RetentionPolicy, cutoffs
from nitroproxy.store import audit
from nitroproxy.store.accounts import AccountStore
from nitroproxy.store.db import open_db
from nitroproxy.store.keys import delete_dead_keys
from nitroproxy.store.rights import erase_user
from nitroproxy.store.usage import delete_billing_before, delete_daily_before, roll_up

# One bounded batch of a retention job: (conn, now, limit) -> rows deleted (<= limit).
# The sweeper repeats it until a batch deletes fewer than ``limit`` rows.
SweepStep = Callable[[aiosqlite.Connection, float, int], Awaitable[int]]


def retention_policy(r: RetentionSettings) -> RetentionPolicy:
    """The configured windows as the pure policy (``retention:`` in the config)."""
    return RetentionPolicy(
        requests_s=r.requests,
        billing_s=r.billing,
        analytics_s=r.analytics,
        audit_s=r.audit,
        closed_accounts_s=r.closed_accounts,
    )


# Built-in step names (``on_deleted`` labels): the table each one deletes from.
BUILT_IN = ("usage", "users", "api_keys", "usage_daily", "billing_lines", "audit")


@dataclass(frozen=True, slots=True)
class SweepResult:
    """``rolled_up``: daily aggregate rows inserted or updated; ``deleted_raw``: raw usage
    rows removed (all of them rolled up first); ``deleted_aggregates``: analytics aggregates
    expired; ``deleted_billing``: billing lines expired; ``deleted_audit``: audit entries
    expired; ``erased_accounts``: closed accounts erased; ``deleted_keys``: dead keys
    deleted; ``extra``: rows deleted by added steps."""

    rolled_up: int
    deleted_raw: int
    deleted_aggregates: int
    extra: Mapping[str, int] = field(default_factory=dict)
    deleted_billing: int = 0
    deleted_audit: int = 0
    erased_accounts: int = 0
    deleted_keys: int = 0


class RetentionSweeper:
    """Rolls old usage into daily aggregates and enforces retention windows.

    Given a path, it opens and owns its own connection (recommended: its transactions then
    never interleave with other users of a shared connection). Given a connection, it uses
    it and leaves closing it to the caller. ``on_deleted(table, n)`` is called per batch with
    a name of :data:`BUILT_IN` (``"usage"``: raw rows rolled up and deleted; ``"users"``:
    closed accounts erased; the others: rows expired) or an added step's name.
    ``on_erased(user_id)`` runs after each automatic erase (the server purges the user's
    cache entries with it).
    """

    def __init__(
        self,
        db: aiosqlite.Connection | str | Path,
        policy: RetentionPolicy,
        *,
        interval: float = 3600.0,
        batch_size: int = 1000,
        clock: Callable[[], float] = time.time,
        on_deleted: Callable[[str, int], None] | None = None,
        on_erased: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self._conn = db if isinstance(db, aiosqlite.Connection) else None
        self._path = None if isinstance(db, aiosqlite.Connection) else db
        self._policy = policy
        self._interval = interval
        self._batch_size = batch_size
        self._clock = clock
        self._on_deleted = on_deleted
        self._on_erased = on_erased
        self._steps: dict[str, SweepStep] = {}
        self._lock = asyncio.Lock()  # one sweep at a time on the connection
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._log = logging.getLogger("nitroproxy.sweeper")

    def add_step(self, name: str, step: SweepStep) -> None:
        """Run ``step`` in batches after the usage steps of every sweep; ``name`` labels its
        count in ``SweepResult.extra`` and ``on_deleted``."""
        if name in self._steps or name in BUILT_IN:
            raise ValueError(f"sweep step {name!r} already exists")
        self._steps[name] = step

    async def run_once(self, now: float | None = None) -> SweepResult:
        now = self._clock() if now is None else now
        cut = cutoffs(self._policy, now)
        async with self._lock:
            conn = await self._connection()
            upserted = 0

            async def roll_batch(conn: aiosqlite.Connection, _now: float, limit: int) -> int:
                nonlocal upserted
                aggregates, deleted = await roll_up(conn, before=cut.raw_before, limit=limit)
                upserted += aggregates
                return deleted

            # The accounts code runs on this connection, stamped with this sweep's ``now``.
            accounts = AccountStore(conn, None, clock=lambda: now)

            async def close_batch(conn: aiosqlite.Connection, _now: float, limit: int) -> int:
                rows = await conn.execute_fetchall(
                    "SELECT id FROM users WHERE closed_at IS NOT NULL AND closed_at < ? "
                    "AND status != 'erased' ORDER BY closed_at LIMIT ?",
                    (cut.closed_before, limit),
                )
                erased = [str(r[0]) for r in rows]
                if erased:  # freed pages are zeroed, as in every erase
                    await conn.execute("PRAGMA secure_delete = ON")
                for user_id in erased:
                    await erase_user(accounts, user_id, actor="retention")
                    if self._on_erased is not None:
                        await self._on_erased(user_id)
                return len(erased)

            async def keys_batch(_conn: aiosqlite.Connection, _now: float, limit: int) -> int:
                return await delete_dead_keys(accounts, before=cut.closed_before, limit=limit)

            async def expire_batch(conn: aiosqlite.Connection, _now: float, limit: int) -> int:
                return await delete_daily_before(conn, day=cut.aggregates_before_day, limit=limit)

            async def billing_batch(conn: aiosqlite.Connection, _now: float, limit: int) -> int:
                return await delete_billing_before(conn, day=cut.billing_before_day, limit=limit)

            async def audit_batch(conn: aiosqlite.Connection, _now: float, limit: int) -> int:
                return await audit.delete_before(conn, ts=cut.audit_before, limit=limit)

            deleted_raw = await self._drain(conn, "usage", roll_batch, now)
            erased = await self._drain(conn, "users", close_batch, now)
            deleted_keys = await self._drain(conn, "api_keys", keys_batch, now)
            deleted_aggregates = await self._drain(conn, "usage_daily", expire_batch, now)
            deleted_billing = await self._drain(conn, "billing_lines", billing_batch, now)
            deleted_audit = await self._drain(conn, "audit", audit_batch, now)
            extra = {name: await self._drain(conn, name, s, now) for name, s in self._steps.items()}
        return SweepResult(
            upserted,
            deleted_raw,
            deleted_aggregates,
            extra,
            deleted_billing=deleted_billing,
            deleted_audit=deleted_audit,
            erased_accounts=erased,
            deleted_keys=deleted_keys,
        )

    def start(self) -> None:
        """Sweep now and then every ``interval`` seconds in a task owned by this object."""
        if self._task is not None or self._closed:
            raise RuntimeError("RetentionSweeper.start() called twice or after close()")
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="nitroproxy-retention-sweeper"
        )

    async def close(self) -> None:
        """Stop the periodic task (a batch in progress rolls back) and close an owned
        connection."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        if self._path is not None and self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def _run(self) -> None:
        while True:
            try:
                result = await self.run_once()
            except Exception:
                # A failed sweep (e.g. the database locked past busy_timeout) is retried at
                # the next interval; retention must not stop for good.
                self._log.exception("retention sweep failed")
            else:
                self._log.info(
                    "retention sweep: %d raw rows rolled into %d aggregates, "
                    "%d aggregates, %d billing lines and %d audit entries expired, "
                    "%d closed accounts erased, %d dead keys deleted, other: %s",
                    result.deleted_raw,
                    result.rolled_up,
                    result.deleted_aggregates,
                    result.deleted_billing,
                    result.deleted_audit,
                    result.erased_accounts,
                    result.deleted_keys,
                    dict(result.extra),
                )
            await asyncio.sleep(self._interval)

    async def _connection(self) -> aiosqlite.Connection:
        if self._closed:
            raise RuntimeError("RetentionSweeper is closed")
        if self._conn is None:
            assert self._path is not None  # __init__ sets one of the two
            self._conn = await open_db(self._path)
        return self._conn

    async def _drain(
        self, conn: aiosqlite.Connection, name: str, step: SweepStep, now: float
    ) -> int:
        total = 0
        while True:
            n = await step(conn, now, self._batch_size)
            total += n
            if n and self._on_deleted is not None:
                self._on_deleted(name, n)
            if n < self._batch_size:
                return total
