"""Users' data rights across tables: export everything held about a user (or a key), and
erase a user while keeping billing totals under a pseudonym.

Rectification is ``users.update_user``; restriction is suspending the user.

What erase keeps, and why: the ``users`` row stays as a tombstone (id, tier, status
``erased``, times; no name or email) so the id is never reused and audit entries still
resolve; audit entries stay (they hold ids and field names only) until ``retention.audit``;
billing lines stay for the tax window (raw records are rolled up into them first), re-keyed
to a random *billing pseudonym* that the erase returns and records in its audit entry, so
the user's statements stay available under it; analytics aggregates stay re-keyed to another
random pseudonym that is recorded nowhere, so they cannot be linked back (and a user who
objected to analytics has none). Privacy choices are deleted. Ids are random and are not
personal data.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import aiosqlite

from nitroproxy.core.errors import NotFound
from nitroproxy.store import audit
from nitroproxy.store.accounts import AccountStore
from nitroproxy.store.billing import BILLING_COLUMNS, billing_lines, pseudonyms_of
from nitroproxy.store.db import transaction
from nitroproxy.store.keys import KEY_COLUMNS, key_from_row
from nitroproxy.store.preferences import (
    ANALYTICS_OBJECTORS_SQL,
    SUBJECT_SQL,
    read_preferences,
)
from nitroproxy.store.usage import BILLING_MERGE_SQL, list_records
from nitroproxy.store.usage import DAY_SQL as DAY_SQL
from nitroproxy.store.usage import ERROR_SQL as ERROR_SQL
from nitroproxy.store.usage import TOKEN_COLUMNS as TOKEN_COLUMNS
from nitroproxy.store.users import USER_COLUMNS, user_from_row

__all__ = [
    "EXPORT_FORMAT",
    "EraseResult",
    "erase_user",
    "erased_usage_step",
    "export_key",
    "export_user",
]

EXPORT_FORMAT = "nitroproxy.export.v2"
"""The export document's format; ``reports/export_schema.py`` is its JSON Schema."""
_NO_LIMIT = 2**62  # everything
_DAILY_COLUMNS = (
    "day, user_id, key_id, model, provider, requests, errors, prompt_tokens, "
    "completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, cost_nanos"
)
_SUMMED = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_nanos",
)
_BILLED = ("requests", *TOKEN_COLUMNS)
_OWNED = "(user_id = :user OR key_id IN (SELECT id FROM api_keys WHERE user_id = :user))"
_MERGE = f"""
ON CONFLICT (day, user_id, key_id, model, provider) DO UPDATE SET
    {", ".join(f"{c} = {c} + excluded.{c}" for c in _SUMMED)}
"""
# The user's raw records, rolled up per (day, model, provider) under the pseudonym exactly as
# the retention sweeper would roll them up (same day and error expressions); none of an
# objector's go to analytics.
_ROLL_UP_SQL = f"""
INSERT INTO usage_daily ({_DAILY_COLUMNS})
SELECT {DAY_SQL}, :alias, :alias, model, COALESCE(provider, ''), COUNT(*), SUM({ERROR_SQL}),
    {", ".join(f"SUM({c})" for c in TOKEN_COLUMNS)}
FROM usage WHERE {_OWNED} AND {SUBJECT_SQL} NOT IN ({ANALYTICS_OBJECTORS_SQL})
GROUP BY 1, 4, 5
{_MERGE}
"""
# Billing: the user's lines, then their raw records, summed per (day, model) under the
# billing pseudonym (the user's keys collapse into it, as for analytics).
_BILL_LINES_SQL = f"""
INSERT INTO billing_lines ({", ".join(BILLING_COLUMNS)})
SELECT day, :bill, :bill, model, {", ".join(f"SUM({c})" for c in _BILLED)}
FROM billing_lines WHERE {_OWNED}
GROUP BY day, model
{BILLING_MERGE_SQL}
"""
_BILL_RAW_SQL = f"""
INSERT INTO billing_lines ({", ".join(BILLING_COLUMNS)})
SELECT {DAY_SQL}, :bill, :bill, model, COUNT(*), {", ".join(f"SUM({c})" for c in TOKEN_COLUMNS)}
FROM usage WHERE {_OWNED}
GROUP BY 1, 4
{BILLING_MERGE_SQL}
"""
# Every aggregate of the user, summed per (day, model, provider) under the pseudonym: the
# user's keys collapse into one, so rows that would collide on the primary key merge.
_PSEUDONYMIZE_SQL = f"""
INSERT INTO usage_daily ({_DAILY_COLUMNS})
SELECT day, :alias, :alias, model, provider, {", ".join(f"SUM({c})" for c in _SUMMED)}
FROM usage_daily WHERE {_OWNED}
GROUP BY day, model, provider
{_MERGE}
"""


@dataclass(frozen=True, slots=True)
class EraseResult:
    user_id: str
    keys_deleted: int
    usage_records_deleted: int
    daily_aggregates_pseudonymized: int
    wal_truncated: bool
    """False if another connection kept the WAL busy: old page images may remain in the
    ``-wal`` file until the next checkpoint."""
    billing_pseudonym: str = ""
    """The id the user's billing lines (and statements) are kept under from now on."""
    billing_lines_pseudonymized: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.asynccontextmanager
async def _snapshot(store: AccountStore) -> AsyncIterator[aiosqlite.Connection]:
    """The store's connection, alone, in one read transaction: a consistent export."""
    async with store.lock:
        await store.conn.execute("BEGIN")
        try:
            yield store.conn
        finally:
            await store.conn.execute("COMMIT")


def _daily(row: Any) -> dict[str, Any]:
    names = [c.strip() for c in _DAILY_COLUMNS.split(",")]
    return dict(zip(names, row, strict=True))


async def export_user(store: AccountStore, user_id: str, *, actor: str) -> dict[str, Any]:
    """One portable JSON document with everything held about ``user_id``, nothing else;
    the export itself is audited (``user.export`` by ``actor``)."""
    async with _snapshot(store) as conn:
        rows = list(
            await conn.execute_fetchall(
                f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", (user_id,)
            )
        )
        if not rows:
            raise NotFound(f"no user with id {user_id!r}", code="user_not_found")
        user = user_from_row(store, rows[0])
        keys = await conn.execute_fetchall(
            f"SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = ? ORDER BY rowid", (user_id,)
        )
        records = await list_records(conn, user_id=user_id, limit=_NO_LIMIT)
        daily = await conn.execute_fetchall(
            f"SELECT {_DAILY_COLUMNS} FROM usage_daily WHERE user_id = ? ORDER BY day, rowid",
            (user_id,),
        )
        lines = await billing_lines(conn, user_id=user_id)
        entries = await audit.list_entries(conn, user_id=user_id, limit=_NO_LIMIT)
    if store.remote_records is not None:  # records kept in PostgreSQL
        key_ids = [key_from_row(k).id for k in keys]
        records = [*records, *await store.remote_records.records_of(user_id, key_ids)]
    await store.note(actor=actor, action="user.export", target=user_id, user_id=user_id)
    return {
        "format": EXPORT_FORMAT,
        "exported_at": store.clock(),
        "user": user.to_json(),
        "preferences": {"analytics": user.analytics, "cache": user.cache},
        "keys": [key_from_row(k).to_json() for k in keys],
        "usage_records": [asdict(r) for r in records],
        "daily_aggregates": [_daily(d) for d in daily],
        "billing_lines": lines,
        "audit": [e.to_json() for e in reversed(entries)],
    }


async def export_key(
    store: AccountStore,
    key_id: str,
    *,
    actor: str,
    key: dict[str, Any] | None = None,
    subject: str | None = None,
) -> dict[str, Any]:
    """What is held about one key: its metadata (``key`` for keys not in the store, such as
    config keys), its usage records, aggregates and billing lines, the privacy choices of
    ``subject`` (its user, or the key itself) and audit entries about it. Audited
    (``key.export`` by ``actor``)."""
    async with _snapshot(store) as conn:
        if key is None:
            rows = list(
                await conn.execute_fetchall(
                    f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)
                )
            )
            if not rows:
                raise NotFound(f"no key with id {key_id!r}", code="key_not_found")
            key = key_from_row(rows[0]).to_json()
        records = await list_records(conn, key_id=key_id, limit=_NO_LIMIT)
        daily = await conn.execute_fetchall(
            f"SELECT {_DAILY_COLUMNS} FROM usage_daily WHERE key_id = ? ORDER BY day, rowid",
            (key_id,),
        )
        lines = await billing_lines(conn, key_id=key_id)
        subject = subject or key.get("user_id") or key_id
        choices = await read_preferences(conn, subject)
        entries = await audit.list_entries(conn, target=key_id, limit=_NO_LIMIT)
    if store.remote_records is not None:  # records kept in PostgreSQL
        records = [*records, *await store.remote_records.records_of(None, [key_id])]
    await store.note(actor=actor, action="key.export", target=key_id, user_id=subject)
    return {
        "format": EXPORT_FORMAT,
        "exported_at": store.clock(),
        "key": key,
        "preferences": choices.to_json(),
        "usage_records": [asdict(r) for r in records],
        "daily_aggregates": [_daily(d) for d in daily],
        "billing_lines": lines,
        "audit": [e.to_json() for e in reversed(entries)],
    }


async def erase_user(
    store: AccountStore,
    user_id: str,
    *,
    actor: str,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> EraseResult:
    """Wipe the profile and delete the keys; move the user's daily aggregates and raw
    records (rolled up per day, as the sweeper would) under a fresh pseudonym and delete the
    originals, so billing totals do not change. One transaction with its audit entry; then
    truncate the WAL so no old page image of the erased rows survives there.

    ``settle`` runs after that transaction: the server uses it to drop the keys from memory
    and flush its usage queue, and the user's raw records that arrive meanwhile are deleted
    too. Later stragglers (a stream that outlives its key) go at the next retention sweep
    (:func:`erased_usage_step`) or by erasing again, which is idempotent."""
    params = {
        "user": user_id,
        "alias": "erased-" + secrets.token_hex(8),
        "bill": "erased-" + secrets.token_hex(8),
    }
    async with store.writing() as conn:
        if not await conn.execute_fetchall("SELECT 1 FROM users WHERE id = ?", (user_id,)):
            raise NotFound(f"no user with id {user_id!r}", code="user_not_found")
        # For records kept elsewhere (PostgreSQL): whose they are, before the keys go.
        key_ids = [
            str(r[0])
            for r in await conn.execute_fetchall(
                "SELECT id FROM api_keys WHERE user_id = ?", (user_id,)
            )
        ]
        objector = bool(
            await conn.execute_fetchall(
                "SELECT 1 FROM preferences WHERE subject = ? AND analytics = 0", (user_id,)
            )
        )
        await conn.execute(_PSEUDONYMIZE_SQL, params)  # before the roll-up adds alias rows
        await conn.execute(_BILL_LINES_SQL, params)  # before the raw rows add alias lines
        records = await _move_raw(conn, params)
        async with conn.execute(f"DELETE FROM billing_lines WHERE {_OWNED}", params) as cursor:
            lines = max(cursor.rowcount, 0)
        async with conn.execute(f"DELETE FROM usage_daily WHERE {_OWNED}", params) as cursor:
            aggregates = cursor.rowcount
        async with conn.execute("DELETE FROM api_keys WHERE user_id = ?", (user_id,)) as cursor:
            keys = cursor.rowcount
        await conn.execute("DELETE FROM preferences WHERE subject = ?", (user_id,))
        await conn.execute(
            "UPDATE users SET name = NULL, email = NULL, email_index = NULL, "
            "status = 'erased', closed_at = NULL, updated = ? WHERE id = ?",
            (store.now(), user_id),
        )
        await audit.append(
            conn,
            ts=store.clock(),
            actor=actor,
            action="user.erase",
            target=user_id,
            user_id=user_id,
            detail={
                "keys_deleted": keys,
                "usage_records_deleted": records,
                "daily_aggregates_pseudonymized": aggregates,
                "billing_lines_pseudonymized": lines,
                "billing_pseudonym": params["bill"],
            },
        )
    if settle is not None:
        await settle()
        async with store.lock, transaction(store.conn):
            records += await _move_raw(store.conn, params)
    if store.remote_records is not None:  # after settle: the queue is in PostgreSQL now
        records += await store.remote_records.erase_user(
            user_id, key_ids, alias=params["alias"], bill=params["bill"], objector=objector
        )
    truncated = await truncate_wal(store)
    return EraseResult(user_id, keys, records, aggregates, truncated, params["bill"], lines)


async def _move_raw(conn: aiosqlite.Connection, params: Mapping[str, str]) -> int:
    """Inside a transaction: roll the user's raw records into analytics (unless they
    object) and billing under the pseudonyms, then delete them. Returns the rows deleted."""
    await conn.execute(_ROLL_UP_SQL, params)
    await conn.execute(_BILL_RAW_SQL, params)
    async with conn.execute(f"DELETE FROM usage WHERE {_OWNED}", params) as cursor:
        return max(cursor.rowcount, 0)


async def truncate_wal(store: AccountStore, attempts: int = 20) -> bool:
    """Checkpoint every frame into the database and empty the ``-wal`` file. A reader in
    another connection can block it for a moment: retry briefly."""
    for _ in range(attempts):
        async with store.lock:
            rows = list(await store.conn.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)"))
        if rows and int(rows[0][0]) == 0:
            return True
        await asyncio.sleep(0.05)
    return False


async def erased_usage_step(conn: aiosqlite.Connection, _now: float, limit: int) -> int:
    """A retention-sweeper step: move raw usage of erased users that arrived after the
    erase (a stream still running when its key was deleted) into billing lines under the
    user's billing pseudonym (a fresh one once the audit log no longer names it), then
    delete it. What is owed is kept; nothing of it goes to analytics."""
    await conn.execute("PRAGMA secure_delete = ON")
    found = await conn.execute_fetchall(
        "SELECT DISTINCT u.user_id FROM usage u JOIN users s ON s.id = u.user_id "
        "WHERE s.status = 'erased' LIMIT ?",
        (limit,),
    )
    moved = 0
    for (user_id,) in found:
        known = await pseudonyms_of(conn, str(user_id))
        bill = known[-1] if known else "erased-" + secrets.token_hex(8)
        params = {"user": str(user_id), "bill": bill}
        async with transaction(conn):
            await conn.execute(_BILL_RAW_SQL, params)
            async with conn.execute(f"DELETE FROM usage WHERE {_OWNED}", params) as cursor:
                moved += max(cursor.rowcount, 0)
    return moved  # a full batch makes the sweeper ask again; the next finds fewer or none
